"""The bilevel search shared by every differentiable method (DARTS, Algorithm 1):

    while not converged:
        update the architecture α by descending ∇α L_val(w − ξ∇w L_train(w, α), α)
            (ξ = 0: first order; ξ = the weights' learning rate: second order)
        update the weights w by descending ∇w L_train(w, α)

Weights train on one half of the training set, α on the other. A method supplies only
what makes it different: how each edge mixes its candidate operations (the edge module),
how α becomes op and edge weights (the weighting rule), and how a genotype is derived.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from nasbench_repro.context import Context, PhaseResult
from nasbench_repro.method import Method
from nasbench_repro.spaces.cnn.ops import DARTS_PRIMITIVES
from nasbench_repro.spaces.cnn.supernet import ArchWeights, MixedOp, SearchNetwork, stem_for
from nasbench_repro.spaces.genotypes import Genotype, derive_genotype
from nasbench_repro.training import RunningClassification, evaluate_classifier, lr_schedule

Batch = tuple[torch.Tensor, torch.Tensor]
LossFunction = Callable[[dict[str, torch.Tensor], Batch], torch.Tensor]


class ArchitectureParameters(nn.Module):
    """α (one row of op logits per edge, for normal and reduction cells) and, with edge
    normalization, β (one logit per edge). Initialised as N(0, init_std²), as the official
    DARTS code does (the paper says zeros; the protocol records both)."""

    def __init__(self, num_edges: int, num_ops: int, init_std: float, edge_normalization: bool):
        super().__init__()
        self.normal = nn.Parameter(init_std * torch.randn(num_edges, num_ops))
        self.reduce = nn.Parameter(init_std * torch.randn(num_edges, num_ops))
        self.normal_edges = nn.Parameter(init_std * torch.randn(num_edges)) if edge_normalization else None
        self.reduce_edges = nn.Parameter(init_std * torch.randn(num_edges)) if edge_normalization else None


def softmax_per_node(edge_logits: torch.Tensor, steps: int = 4) -> torch.Tensor:
    """Edge normalization (PC-DARTS): a softmax over the edges entering each intermediate node."""
    weights, start = [], 0
    for inputs in range(2, 2 + steps):
        weights.append(torch.softmax(edge_logits[start:start + inputs], dim=-1))
        start += inputs
    return torch.cat(weights)


def arch_entropy(logits: torch.Tensor) -> float:
    """Mean entropy (nats) of the per-edge op distributions: log(num_ops) at start, 0 when collapsed."""
    probabilities = torch.softmax(logits.detach().float(), dim=-1)
    return float(-(probabilities * probabilities.clamp_min(1e-12).log()).sum(-1).mean())


def second_order_arch_gradient(loss: LossFunction, weights: dict[str, torch.Tensor], arch: list[torch.Tensor],
                               train: Batch, valid: Batch, lr: float | torch.Tensor,
                               momentum_buffers: dict[str, torch.Tensor | None], momentum: float,
                               weight_decay: float) -> list[torch.Tensor]:
    """∇α L_val(w′, α) − ξ ∇²α,w L_train(w, α) ∇w′ L_val(w′, α), with w′ one SGD step ahead
    (momentum and weight decay included, as the optimizer would take it) and the
    Hessian-vector product by central differences at w ± ε∇w′L_val, ε = 0.01 / ‖∇w′L_val‖."""
    names = list(weights)
    train_grads = torch.autograd.grad(loss(weights, train), [weights[name] for name in names], allow_unused=True)
    unrolled = {}
    for name, grad in zip(names, train_grads, strict=True):
        weight = weights[name].detach()
        buffer = momentum_buffers.get(name)
        step = (grad if grad is not None else torch.zeros_like(weight)) + weight_decay * weight
        if buffer is not None:
            step = step + momentum * buffer
        unrolled[name] = (weight - lr * step).requires_grad_()
    valid_grads = torch.autograd.grad(loss(unrolled, valid), [*arch, *unrolled.values()], allow_unused=True)
    arch_grads = _zeros_for_unused(valid_grads[:len(arch)], arch)
    direction = _zeros_for_unused(valid_grads[len(arch):], list(unrolled.values()))
    epsilon = 0.01 / torch.cat([d.flatten() for d in direction]).norm()

    def train_arch_grads(sign: float) -> list[torch.Tensor]:
        shifted = {name: weights[name].detach() + sign * epsilon * d for name, d in zip(names, direction, strict=True)}
        return _zeros_for_unused(torch.autograd.grad(loss(shifted, train), arch, allow_unused=True), arch)

    plus, minus = train_arch_grads(1.0), train_arch_grads(-1.0)
    return [g - lr * (p - m) / (2 * epsilon) for g, p, m in zip(arch_grads, plus, minus, strict=True)]


def _zeros_for_unused(grads: tuple, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    return [torch.zeros_like(t) if g is None else g for g, t in zip(grads, tensors, strict=True)]


class BilevelSearch:
    """A supernet, its architecture parameters, both optimizers and the weights' schedule;
    `step` is one iteration of the bilevel loop."""

    def __init__(self, supernet: SearchNetwork, arch: ArchitectureParameters,
                 weighting: Callable[[ArchitectureParameters], ArchWeights], protocol, autocast: Callable):
        self.supernet, self.arch, self.weighting, self.autocast = supernet, arch, weighting, autocast
        self.order = protocol.order
        self.momentum, self.weight_decay, self.grad_clip = protocol.momentum, protocol.weight_decay, protocol.grad_clip
        self.w_optimizer = torch.optim.SGD(supernet.parameters(), lr=protocol.lr, momentum=protocol.momentum,
                                           weight_decay=protocol.weight_decay)
        self.a_optimizer = torch.optim.Adam(arch.parameters(), lr=protocol.arch_lr, betas=tuple(protocol.arch_betas),
                                            weight_decay=protocol.arch_weight_decay)
        self.scheduler = lr_schedule(self.w_optimizer, "cosine", protocol.epochs, lr_min=protocol.lr_min,
                                     warmup_epochs=protocol.get("lr_warmup_epochs", 0))

    def state(self) -> dict[str, Any]:
        """Everything a checkpoint must hold to continue the search exactly."""
        return {"supernet": self.supernet, "arch": self.arch, "w_optimizer": self.w_optimizer,
                "a_optimizer": self.a_optimizer, "scheduler": self.scheduler}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.supernet(images, self.weighting(self.arch))

    def _loss(self, weights: dict[str, torch.Tensor], batch: Batch) -> torch.Tensor:
        images, labels = batch
        with self.autocast():
            logits = functional_call(self.supernet, weights, (images, self.weighting(self.arch)))
        return nn.functional.cross_entropy(logits.float(), labels)

    def arch_step(self, train: Batch, valid: Batch) -> None:
        arch = list(self.arch.parameters())
        weights = dict(self.supernet.named_parameters())
        if self.order == 1:
            grads = _zeros_for_unused(torch.autograd.grad(self._loss(weights, valid), arch, allow_unused=True), arch)
        else:
            buffers = {name: self.w_optimizer.state.get(p, {}).get("momentum_buffer") for name, p in weights.items()}
            lr = self.w_optimizer.param_groups[0]["lr"]
            grads = second_order_arch_gradient(self._loss, weights, arch, train, valid, lr, buffers,
                                               self.momentum, self.weight_decay)
        for parameter, grad in zip(arch, grads, strict=True):
            parameter.grad = grad
        self.a_optimizer.step()

    def weight_step(self, train: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = train
        with torch.no_grad():
            arch_weights = self.weighting(self.arch)  # α is a constant here
        with self.autocast():
            logits = self.supernet(images, arch_weights)
        loss = nn.functional.cross_entropy(logits.float(), labels)
        self.w_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.supernet.parameters(), self.grad_clip)
        self.w_optimizer.step()
        return loss.detach(), logits.detach()

    def step(self, train: Batch, valid: Batch, update_arch: bool) -> tuple[torch.Tensor, torch.Tensor]:
        if update_arch:
            self.arch_step(train, valid)
        return self.weight_step(train)


def _endless(batches) -> Iterator[Batch]:
    """Re-iterate a stream (reshuffled each pass) for as long as the caller draws from it."""
    while True:
        yield from batches


class DifferentiableMethod(Method):
    """Base of DARTS-family methods: subclasses override the hooks, not the loop."""

    primitives: tuple[str, ...] = DARTS_PRIMITIVES

    # --- hooks --------------------------------------------------------------------------------------------

    def edge_factory(self, protocol) -> Callable[..., nn.Module]:
        return MixedOp

    def edge_normalization(self, protocol) -> bool:
        return False

    def weighting(self, arch: ArchitectureParameters) -> ArchWeights:
        """Softmax over each edge's ops; edge normalization weights when β exists."""
        return ArchWeights(
            normal=torch.softmax(arch.normal, dim=-1),
            reduce=torch.softmax(arch.reduce, dim=-1),
            normal_edges=softmax_per_node(arch.normal_edges) if arch.normal_edges is not None else None,
            reduce_edges=softmax_per_node(arch.reduce_edges) if arch.reduce_edges is not None else None,
        )

    def derive(self, arch: ArchitectureParameters) -> Genotype:
        with torch.no_grad():
            weights = self.weighting(arch)
        # derive_genotype reads tensors on any device (one host copy per cell)
        return derive_genotype(weights.normal, weights.reduce, self.primitives,
                               normal_edge_scale=weights.normal_edges, reduce_edge_scale=weights.reduce_edges)

    # --- the shared algorithm ----------------------------------------------------------------------------

    def build_search(self, protocol, num_classes: int, input_shape: tuple[int, ...], autocast: Callable,
                     device: torch.device | str = "cpu") -> BilevelSearch:
        supernet = SearchNetwork(protocol.init_channels, num_classes, protocol.layers, self.primitives,
                                 edge_factory=self.edge_factory(protocol), stem=stem_for(input_shape))
        arch = ArchitectureParameters(supernet.num_edges, len(self.primitives), protocol.arch_init_std,
                                      self.edge_normalization(protocol))
        return BilevelSearch(supernet.to(device), arch.to(device), self.weighting, protocol, autocast)

    def search(self, ctx: Context) -> PhaseResult:
        protocol, device = ctx.protocol, ctx.device
        search = self.build_search(protocol, ctx.data.num_classes, ctx.data.input_shape, ctx.autocast, device)
        # CIFAR splits the first train_examples by train_portion; ImageNet samples per-class fractions
        fractions = {key: protocol[key] for key in ("train_fraction", "valid_fraction") if key in protocol}
        weight_batches, arch_batches = ctx.data.search_batches(protocol.get("train_examples"),
                                                               protocol.get("train_portion"), protocol.batch_size,
                                                               **fractions)
        for epoch in ctx.epochs(protocol.epochs, search.state()):
            update_arch = epoch >= protocol.warmup_epochs
            lr = search.w_optimizer.param_groups[0]["lr"]
            search.supernet.train()
            running = RunningClassification(device)
            steps = zip(weight_batches, _endless(arch_batches), strict=False)  # α batches never run out
            for train, valid in ctx.progress(steps, total=len(weight_batches)):
                loss, logits = search.step(train, valid, update_arch)
                running.update(loss, logits, train[1])
            search.scheduler.step()
            train_summary = running.summary()
            ctx.check_finite(train_summary["loss"], "search training loss")
            validation = {}
            if protocol.validation == "every_epoch" or epoch == protocol.epochs - 1:
                search.supernet.eval()
                with torch.no_grad():
                    summary = evaluate_classifier(search.forward, arch_batches, device, ctx.autocast)
                validation = {"valid_loss": summary["loss"], "valid_acc": summary["acc"]}
            genotype = self.derive(search.arch)
            ctx.log(lr=lr, arch_updated=update_arch, train_loss=train_summary["loss"], train_acc=train_summary["acc"],
                    **validation, genotype=str(genotype),
                    normal_skip_connections=sum(op == "skip_connect" for op, _ in genotype.normal),
                    arch_entropy=(arch_entropy(search.arch.normal) + arch_entropy(search.arch.reduce)) / 2,
                    arch_entropy_normal=arch_entropy(search.arch.normal),
                    arch_entropy_reduce=arch_entropy(search.arch.reduce))
        genotype = self.derive(search.arch)
        final = ctx.curves[-1]
        return PhaseResult(
            {"search_valid_acc": final["valid_acc"], "search_normal_skip_connections": final["normal_skip_connections"],
             "search_arch_entropy": final["arch_entropy"]},
            genotype,
        )

