"""Training-loop pieces shared by search and evaluation: device-side metric sums (one host
sync per epoch, not per step), evaluation passes, and the papers' learning-rate schedules."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable

import torch
from torch import nn

from nasbench_repro.errors import UserError


class RunningClassification:
    """Sums of loss and correct top-1/top-5 predictions, kept on the device until `summary()`."""

    def __init__(self, device: torch.device):
        self.loss = torch.zeros((), device=device)
        self.top1 = torch.zeros((), device=device)
        self.top5 = torch.zeros((), device=device)
        self.count = 0

    @torch.no_grad()
    def update(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        batch = labels.shape[0]
        self.loss += loss.detach().float() * batch
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        hits = top == labels[:, None]
        self.top1 += hits[:, 0].sum()
        self.top5 += hits.any(dim=1).sum()
        self.count += batch

    def summary(self) -> dict[str, float]:
        """Mean loss, accuracies (fractions) and example count; the only host sync of an epoch."""
        values = torch.stack([self.loss, self.top1, self.top5]).cpu().tolist()
        count = max(self.count, 1)
        return {
            "loss": values[0] / count,
            "acc": values[1] / count,
            "top5_acc": values[2] / count,
            "examples": self.count,
        }


@torch.no_grad()
def evaluate_classifier(
    forward: Callable[[torch.Tensor], torch.Tensor],
    batches: Iterable,
    device: torch.device,
    autocast: Callable = contextlib.nullcontext,
) -> dict[str, float]:
    """Loss and accuracy of `forward` (logits) over `batches`, model already in eval mode."""
    running = RunningClassification(device)
    for images, labels in batches:
        with autocast():
            logits = forward(images)
        running.update(nn.functional.cross_entropy(logits.float(), labels), logits, labels)
    return running.summary()


LR_SCHEDULES = ("cosine", "exponential", "linear", "constant")


def lr_schedule(
    optimizer: torch.optim.Optimizer,
    schedule: str,
    epochs: int,
    *,
    lr_min: float = 0.0,
    gamma: float = 0.97,
    warmup_epochs: int = 0,
) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-epoch schedules the papers use: `cosine` (to lr_min; DARTS, PC-DARTS CIFAR),
    `exponential` (×gamma each epoch; DARTS ImageNet), `linear` (to zero; PC-DARTS and
    P-DARTS ImageNet), `constant` (DARTS's recurrent search). During the first `warmup_epochs`
    the scheduled rate is scaled by (epoch + 1) / warmup_epochs, as PC-DARTS does for its large
    ImageNet batches."""
    base = optimizer.param_groups[0]["lr"]
    if schedule not in LR_SCHEDULES:
        raise UserError(f"unknown learning-rate schedule {schedule!r}; use {', '.join(LR_SCHEDULES)}")

    def scheduled(epoch: int) -> float:
        if schedule == "cosine":
            return (lr_min + (base - lr_min) * (1 + math.cos(math.pi * epoch / epochs)) / 2) / base
        if schedule == "exponential":
            return gamma**epoch
        if schedule == "constant":
            return 1.0
        return 1 - epoch / epochs

    def factor(epoch: int) -> float:
        warmup = (epoch + 1) / warmup_epochs if epoch < warmup_epochs else 1.0
        return scheduled(epoch) * warmup

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
