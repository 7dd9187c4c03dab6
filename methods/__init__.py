"""NAS methods, one module each; each reads like its paper's algorithm box. Protocols
(hyperparameters with their sources) live in `configs/<method>.toml`."""
