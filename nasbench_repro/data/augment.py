"""Batch operations the image datasets run on the device: normalisation, cutout, random draws.

They work on whole batches and never wait for the device, so a training step that calls
them keeps the GPU queue full; every random draw comes from the run's generator, so a seed
reproduces each batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from nasbench_repro.errors import UserError


def check_stream(examples: int, batch_size: int, *, training: bool, remedy: str = "") -> None:
    """What every batch stream needs: batches of at least one image, and two images to train on."""
    if batch_size < 1:
        raise UserError(f"batch_size must be at least 1, not {batch_size}")
    if training and examples < 2:
        raise UserError(f"a training stream needs at least 2 images, got {examples}; {remedy}")


def batches_per_epoch(examples: int, batch_size: int, *, training: bool) -> int:
    """Every image in evaluation; in training the partial last batch is kept, as DARTS's DataLoader
    keeps it, unless it would hold a single image, which then sits out the epoch (BatchNorm cannot
    train on a batch of one)."""
    full, rest = divmod(examples, batch_size)
    return full + (rest > 1 if training else rest > 0)


def random_integers(
    generator: torch.Generator, high: int, shape: tuple[int, ...], device: torch.device
) -> torch.Tensor:
    """Integers in [0, high) drawn on the generator's device, then placed on `device`."""
    values = torch.randint(0, high, shape, generator=generator, device=generator.device)
    return values.to(device, non_blocking=True)


def random_permutation(count: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.randperm(count, generator=generator, device=generator.device).to(device, non_blocking=True)


class Normalize:
    """uint8 pixels [B, 3, H, W] to float32 (pixels / 255 - mean) / std, as torchvision's ToTensor + Normalize."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], device: torch.device):
        mean_tensor = torch.tensor(mean, dtype=torch.float64).view(1, -1, 1, 1)
        std_tensor = torch.tensor(std, dtype=torch.float64).view(1, -1, 1, 1)
        self._scale = (1 / (255 * std_tensor)).to(device, torch.float32)
        self._shift = (mean_tensor / std_tensor).to(device, torch.float32)

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        return pixels.float().mul_(self._scale).sub_(self._shift)


def cut_out(batch: torch.Tensor, length: int, generator: torch.Generator) -> torch.Tensor:
    """Zero (in place) one length x length square per image, as DARTS's Cutout does after normalising.

    The square's centre is uniform over the image and the square is clipped at the border
    (quark0/darts cnn/utils.py, class Cutout).
    """
    count, _, height, width = batch.shape
    centre_rows = random_integers(generator, height, (count, 1), batch.device)
    centre_cols = random_integers(generator, width, (count, 1), batch.device)
    rows = torch.arange(height, device=batch.device)
    cols = torch.arange(width, device=batch.device)
    half = length // 2
    rows_inside = (rows >= centre_rows - half) & (rows < centre_rows + half)
    cols_inside = (cols >= centre_cols - half) & (cols < centre_cols + half)
    keep = ~(rows_inside[:, :, None] & cols_inside[:, None, :])
    return batch.mul_(keep[:, None])
