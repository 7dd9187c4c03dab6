"""A tiny method and dataset for testing the runner without any real NAS code.

It trains a logistic-regression "supernet" with dropout on synthetic data: enough moving
parts (parameters, an optimizer with state, a scheduler, the global torch RNG, the run's
generator) that any gap in seeding or checkpointing shows up as a different record.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from nasbench_repro import catalog
from nasbench_repro.data import DataSource, register_dataset
from nasbench_repro.method import Method, PhaseResult

CONFIG = """
[paper]
citation = "A test protocol, not a paper"

[toy.search]
epochs = { value = 4, source = "test" }
batch_size = { value = 16, source = "test" }
lr = { value = 0.1, source = "test" }
train_examples = { value = 256, source = "test" }

[toy.evaluate]
epochs = { value = 3, source = "test" }
batch_size = { value = 16, source = "test" }
lr = { value = 0.05, source = "test" }
"""


@dataclass(frozen=True)
class TinyGenotype:
    """Stands in for a genotype: the two strongest input features."""

    features: tuple[int, ...]

    def to_dict(self) -> dict:
        return {"features": list(self.features)}


def _toy_source(request) -> DataSource:
    def load(device, generator):
        fixed = torch.Generator().manual_seed(1234)  # the dataset itself does not depend on the run seed
        inputs = torch.randn(512, 8, generator=fixed)
        labels = (inputs[:, 0] + 0.5 * inputs[:, 3] > 0).long()
        return inputs.to(device), labels.to(device)

    return DataSource(name="toy", description={"synthetic": True}, load=load)


class TinyMethod(Method):
    name = "tiny"
    headline_dataset = "toy"
    interrupt_at: tuple[str, int] | None = None  # (phase, epoch): raise KeyboardInterrupt when it starts
    terminate_at: tuple[str, int] | None = None  # (phase, epoch): send this process SIGTERM when it starts
    sleep_per_epoch = float(os.environ.get("TINY_SLEEP", "0"))
    produce_nan = False

    def _train(self, ctx, model: nn.Module, lr: float) -> tuple[float, list]:
        inputs, labels = ctx.data
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, ctx.protocol.epochs)
        accuracy = 0.0
        for epoch in ctx.epochs(ctx.protocol.epochs, {"model": model, "optimizer": optimizer, "scheduler": scheduler}):
            if (ctx.phase, epoch) == self.interrupt_at:
                raise KeyboardInterrupt
            if (ctx.phase, epoch) == self.terminate_at:
                os.kill(os.getpid(), signal.SIGTERM)
            order = torch.randperm(len(labels), generator=ctx.generator)
            total = torch.zeros(())
            for start in range(0, len(order), ctx.protocol.batch_size):
                batch = order[start : start + ctx.protocol.batch_size]
                loss = nn.functional.cross_entropy(model(inputs[batch]), labels[batch])
                if self.produce_nan:
                    loss = loss * float("nan")
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += loss.detach()
            scheduler.step()
            mean_loss = ctx.check_finite(total / (len(order) / ctx.protocol.batch_size), "train loss")
            model.eval()
            with torch.no_grad():
                accuracy = (model(inputs).argmax(1) == labels).float().mean().item()
            model.train()
            ctx.log(train_loss=mean_loss, train_acc=accuracy)
            time.sleep(self.sleep_per_epoch)
        return accuracy, list(model.parameters())

    def search(self, ctx) -> PhaseResult:
        model = nn.Sequential(nn.Dropout(0.2), nn.Linear(8, 2))
        accuracy, (weight, _) = self._train(ctx, model, ctx.protocol.lr)
        strongest = weight.detach().abs().sum(0).topk(2).indices.sort().values
        return PhaseResult({"search_valid_acc": accuracy}, TinyGenotype(tuple(strongest.tolist())))

    def evaluate(self, genotype, ctx) -> PhaseResult:
        model = nn.Sequential(nn.Dropout(0.1), nn.Linear(8, 2))
        accuracy, _ = self._train(ctx, model, ctx.protocol.lr)
        return PhaseResult({"test_error_pct": 100 * (1 - accuracy), "params_millions": 18e-6})

    def load_genotype(self, data, kind=None) -> TinyGenotype:
        return TinyGenotype(tuple(data["features"]))


def install(config_dir: Path) -> None:
    """Register the tiny method (with its protocol file in `config_dir`) and the toy dataset."""
    path = Path(config_dir) / "tiny.toml"
    path.write_text(CONFIG)
    TinyMethod.config_file = path
    catalog.register(TinyMethod)
    register_dataset("toy", _toy_source)


if __name__ == "__main__":  # used by the kill-and-resume test: `python tiny_method.py CONFIG_DIR nasbench args...`
    import sys

    from nasbench_repro.cli import main

    install(Path(sys.argv[1]))
    raise SystemExit(main(sys.argv[2:]))
