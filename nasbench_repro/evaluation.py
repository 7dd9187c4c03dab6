"""Training a genotype from scratch: the evaluation phase every CNN method shares.

The recipe is DARTS's (and, with their own protocol values, PC-DARTS's, P-DARTS's, ...):
SGD with momentum, a per-epoch schedule, cutout, drop path rising linearly to its final
probability, an auxiliary head weighted by `auxiliary_weight`, gradient clipping. Test
accuracy is measured after every epoch; the final epoch's error is the headline (what a
paper's protocol yields when run to the end) and the best epoch's is kept beside it,
clearly named, because some official scripts report that instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from nasbench_repro.context import Context, PhaseResult
from nasbench_repro.cost import count_madds, count_parameters_millions
from nasbench_repro.spaces.cnn.networks import NetworkCIFAR, NetworkImageNet
from nasbench_repro.training import RunningClassification, evaluate_classifier, lr_schedule


def build_network(genotype: Any, protocol, num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    network_class = NetworkImageNet if input_shape[-1] >= 224 else NetworkCIFAR
    return network_class(protocol.init_channels, num_classes, protocol.layers, protocol.auxiliary, genotype)


def sgd_with_schedule(network: nn.Module, protocol) -> tuple[torch.optim.Optimizer, Any]:
    """SGD with momentum (Nesterov where the protocol says so) and its per-epoch learning-rate schedule."""
    optimizer = torch.optim.SGD(
        network.parameters(),
        lr=protocol.lr,
        momentum=protocol.momentum,
        weight_decay=protocol.weight_decay,
        nesterov=protocol.get("nesterov", False),
    )
    scheduler = lr_schedule(
        optimizer,
        protocol.lr_schedule,
        protocol.epochs,
        lr_min=protocol.lr_min,
        gamma=protocol.get("lr_gamma", 0.97),
        warmup_epochs=protocol.get("lr_warmup_epochs", 0),
    )
    return optimizer, scheduler


def train_epoch(
    network: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches,
    criterion: nn.Module,
    protocol,
    autocast: Callable,
    progress: Callable = iter,
) -> dict[str, float]:
    """One epoch over `batches` (the auxiliary head weighted in, gradients clipped when the
    protocol clips them); the running loss and accuracy, with one host sync at the end."""
    device = next(network.parameters()).device
    network.train()
    running = RunningClassification(device)
    for images, labels in progress(batches):
        with autocast():
            logits, auxiliary_logits = network(images)
            loss = criterion(logits.float(), labels)
            if auxiliary_logits is not None:
                loss = loss + protocol.auxiliary_weight * criterion(auxiliary_logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if protocol.get("grad_clip") is not None:
            nn.utils.clip_grad_norm_(network.parameters(), protocol.grad_clip)
        optimizer.step()
        running.update(loss, logits, labels)
    return running.summary()


def train_from_scratch(genotype: Any, ctx: Context, build: Callable = build_network) -> PhaseResult:
    """`build(genotype, protocol, num_classes, input_shape)` makes the network: a cell
    network by default, another space's network for methods with their own space."""
    protocol, data, device = ctx.protocol, ctx.data, ctx.device
    network = ctx.place(build(genotype, protocol, data.num_classes, data.input_shape))
    params_millions = count_parameters_millions(network)
    madds_millions = count_madds(network, data.input_shape) / 1e6
    optimizer, scheduler = sgd_with_schedule(network, protocol)
    # Keys a protocol may leave out because its paper does not use them: no smoothing, no warm-up.
    criterion = nn.CrossEntropyLoss(label_smoothing=protocol.get("label_smoothing", 0.0))
    train_batches = data.train_batches(protocol.train_examples, protocol.batch_size, protocol.cutout_length)
    test_batches = data.test_batches(protocol.test_examples, protocol.batch_size)

    for epoch in ctx.epochs(protocol.epochs, {"network": network, "optimizer": optimizer, "scheduler": scheduler}):
        network.drop_path_prob = protocol.drop_path_prob * epoch / protocol.epochs
        lr = optimizer.param_groups[0]["lr"]
        train = train_epoch(
            network,
            optimizer,
            train_batches,
            criterion,
            protocol,
            ctx.autocast,
            lambda batches: ctx.progress(batches, total=len(batches)),
        )
        scheduler.step()
        ctx.check_finite(train["loss"], "training loss")
        network.eval()
        test = evaluate_classifier(lambda images: network(images)[0], test_batches, device, ctx.autocast)
        ctx.log(
            lr=lr,
            train_loss=train["loss"],
            train_acc=train["acc"],
            test_loss=test["loss"],
            test_acc=test["acc"],
            test_top5_acc=test["top5_acc"],
            test_examples=test["examples"],
        )

    final = ctx.curves[-1]
    metrics = {
        "test_error_pct": 100 * (1 - final["test_acc"]),
        "test_error_best_epoch_pct": min(100 * (1 - row["test_acc"]) for row in ctx.curves),
        "params_millions": params_millions,
        "madds_millions": madds_millions,
        "test_examples": final["test_examples"],
    }
    if data.num_classes > 5:
        metrics["test_top5_error_pct"] = 100 * (1 - final["test_top5_acc"])
    return PhaseResult(metrics)
