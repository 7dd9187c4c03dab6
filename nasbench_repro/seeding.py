"""Seeds and determinism, set in one place before any method code runs."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

DETERMINISTIC = "deterministic"
FAST = "fast"


def seed_everything(seed: int, device: torch.device) -> torch.Generator:
    """Seed python, numpy, torch (all devices) and return the generator handed to the method."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    return torch.Generator(device=device).manual_seed(seed)


def set_determinism(mode: str) -> dict:
    """`deterministic`: deterministic kernels, no autotuning. `fast`: cudnn autotuning and TF32.

    Deterministic mode warns (instead of failing) on the few CUDA kernels that have no
    deterministic version; the record says which mode ran.
    """
    deterministic = mode == DETERMINISTIC
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cuda.matmul.allow_tf32 = not deterministic
    torch.backends.cudnn.allow_tf32 = not deterministic
    return {"mode": mode, "cudnn_benchmark": not deterministic, "tf32": not deterministic}


def rng_state(generator: torch.Generator) -> dict:
    """Every random stream a run draws from, in a form `torch.load(weights_only=True)` accepts."""
    numpy_state = np.random.get_state()
    state = {
        "python": _to_lists(random.getstate()),
        "numpy": [numpy_state[0], numpy_state[1].tolist(), *numpy_state[2:]],
        "torch": torch.get_rng_state(),
        "generator": generator.get_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict, generator: torch.Generator) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    generator.set_state(state["generator"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_lists(value):
    return [_to_lists(item) for item in value] if isinstance(value, tuple) else value
