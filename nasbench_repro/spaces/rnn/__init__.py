"""The DARTS recurrent cell space: `cell` (the genotype's cell, the search cell that mixes every
activation and predecessor by weights a method supplies, and DARTS's derivation rule) and
`model` (the language model around either cell: embedding, dropouts, tied decoder)."""
