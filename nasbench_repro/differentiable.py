"""The bilevel search shared by every differentiable method (DARTS, Algorithm 1):

    while not converged:
        update the architecture α by descending ∇α L_val(w − ξ∇w L_train(w, α), α)
            (ξ = 0: first order; ξ = the weights' learning rate: second order)
        update the weights w by descending ∇w L_train(w, α)

Weights train on one half of the training set, α on the other. A method overrides only the
hooks of `DifferentiableMethod` that make it different, never the loop:

- what the supernet is: `search_primitives`, `edge_factory`, `edge_normalization`,
  `supernet_options`;
- how α becomes the op weights of a forward pass, separately for the α step and the weight
  step: `weighting` (softmax; GDAS samples one op per edge; NASP runs a discrete cell);
- how α moves: `arch_penalty` (an extra term of the α loss) and `constrain` (the set α is
  projected back into after each step: NASP's box), `weights_first` (update order);
- schedules: `begin_epoch` sets and reports per-epoch values (GDAS' temperature, P-DARTS'
  skip-connection dropout);
- stages: `stages` and `next_primitives` search on a sequence of supernets, each rebuilt with
  the candidate ops the previous one kept (P-DARTS);
- results: `derive` / `final_genotype` (α to a genotype), `evaluation_settings` (per-cell
  evaluation settings, GDAS FRC on ImageNet).

What is specific to images (the supernet call, the loss, how batches are drawn, the
validation pass, what a genotype is) sits behind one seam, `SearchTask` (see its docstring):
`ImageClassification` for CIFAR-10 and ImageNet, `RecurrentLanguageModelSearch` for PTB
(nasbench_repro/recurrent_search.py); another kind of data registers its own task with
`register_search_task` and every method runs on it unchanged.

Protocol keys the loop reads beyond the paper's hyperparameters (the protocol files set each
to its official code's behaviour; the default applies where a protocol leaves one out):
- `arch_batches`: "fresh" (default) draws a new random α batch every step (DARTS'
  `next(iter(valid_queue))`); "epoch_pass" walks one shuffled pass of the α half, restarted
  when it runs out and at each epoch (PC-DARTS' ImageNet and V100 scripts, P-DARTS);
- `evaluated_genotype`: "last_logged" evaluates the genotype the official DARTS-family scripts
  print at the start of the last epoch (α after epochs − 1 epochs), "final" (default) the one
  after all epochs; the record keeps both (`search_genotypes`);
- `arch_grad_clip`: clip α's gradient norm (PC-DARTS ImageNet, P-DARTS); default: no clipping;
- `nesterov`, `arch_init_mean`: Nesterov momentum for w (GDAS), a constant α start (NASP);
  defaults: plain momentum, α centred on 0.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import torch
from torch import nn
from torch.func import functional_call

from nasbench_repro.catalog import import_target
from nasbench_repro.context import Context, PhaseResult, laid_out
from nasbench_repro.meters import gpu_days
from nasbench_repro.method import Method
from nasbench_repro.protocol import PhaseProtocol
from nasbench_repro.spaces.cnn.ops import DARTS_PRIMITIVES
from nasbench_repro.spaces.cnn.supernet import ArchWeights, CellWeights, MixedOp, SearchNetwork, stem_for
from nasbench_repro.spaces.genotypes import Genotype, derive_cell, genotype_from_dict
from nasbench_repro.training import RunningClassification, evaluate_classifier, lr_schedule

Batch = Any  # what a task's streams yield: (images, labels) for ImageClassification
ARCH_STEP, WEIGHT_STEP = "arch", "weights"  # which update a forward pass serves (`weighting`)


# --- the task seam ---------------------------------------------------------------------------------------------


class SearchTask(Protocol):
    """Everything the loop knows about what it searches on. A task for another kind of data
    (the recurrent PTB search: BPTT windows whose batches carry the hidden state from one
    window to the next, a learning rate scaled by each window's length) implements these
    members and is registered with `register_search_task(dataset, factory)`,
    `factory(ctx.data, protocol)` building it for a run; methods need no change.

    - `cell_types` / `primitives`: the cell types a supernet searches (with edges of their
      own α) and the default candidate ops;
    - `second_order`: how its official architect forms the second-order α gradient (`UnrolledRecipe`);
    - `supernet(stage, primitives, edge_factory, **options)`: the search network of a stage,
      called as `supernet(inputs..., arch)` by `forward`; it exposes `num_edges` and
      `cell_primitives` (cell type -> one tuple of op names per edge);
    - `streams(data, protocol)`: the weights' and α's batch streams (`data` is `ctx.data`);
    - `epoch(weight_batches, arch_batches, mode)`: one epoch of (weight batch, α batch) pairs
      and its number of steps; `mode` is the protocol's `arch_batches`;
    - `forward(supernet, arch, batch, stream, parameters)`: the outputs of one batch of `stream`
      ("train" or "valid"); with `parameters` (a name -> tensor dict) the supernet runs with those
      instead of its own (second-order α gradient);
    - `loss(outputs, batch, step)`: the objective, a scalar, of the α step (`step == "arch"`, also
      the unrolled step's training loss) or of the weight step ("weights"), which may add
      regularizers that α's objective leaves out (AWD-LSTM's activation regularization);
    - `lr_scale(batch)`: the factor the weights' learning rate takes for this step (the α step's
      unrolled step included): 1 for images, window length / bptt for text (DARTS rnn/train_search.py);
    - `synthetic_batch(batch_size, device, generator)`: random input shaped like a stream's batch (profiling);
    - `meter(device)`: accumulates `update(loss, outputs, batch)` over an epoch on the device;
      `summary()` (one host sync) returns what to log, e.g. {"loss", "acc"} or {"loss", "ppl"};
    - `validate(outputs_of, batches, device)`: the validation pass over `batches`, with
      `outputs_of(batch)` giving outputs; returns what to log, prefixed "valid_" by the loop;
    - `derive(weights, primitives, edge_scales)`: the genotype DARTS' rule reads off op weights;
    - `describe(genotype)`: numbers worth logging about a genotype.
    """

    cell_types: tuple[str, ...]
    primitives: tuple[str, ...]
    second_order: UnrolledRecipe

    def supernet(
        self, stage: Stage, primitives: Mapping[str, Any], edge_factory: Callable[..., nn.Module], **options: Any
    ) -> nn.Module: ...

    def streams(self, data: Any, protocol: PhaseProtocol) -> tuple[Iterable[Batch], Iterable[Batch]]: ...

    def epoch(
        self, weight_batches: Iterable[Batch], arch_batches: Iterable[Batch], mode: str
    ) -> tuple[Iterator[tuple[Batch, Batch]], int]: ...

    def forward(
        self,
        supernet: nn.Module,
        arch: ArchWeights,
        batch: Batch,
        stream: str,
        parameters: dict[str, torch.Tensor] | None = None,
    ) -> Any: ...

    def loss(self, outputs: Any, batch: Batch, step: str) -> torch.Tensor: ...

    def lr_scale(self, batch: Batch) -> float: ...

    def synthetic_batch(self, batch_size: int, device: torch.device, generator: torch.Generator) -> Batch: ...

    def meter(self, device: torch.device) -> Any: ...

    def validate(
        self, outputs_of: Callable[[Batch], Any], batches: Iterable[Batch], device: torch.device
    ) -> dict[str, float]: ...

    def derive(
        self,
        weights: Mapping[str, torch.Tensor],
        primitives: Mapping[str, Any],
        edge_scales: Mapping[str, torch.Tensor] | None = None,
    ) -> Any: ...

    def describe(self, genotype: Any) -> dict[str, float]: ...


@dataclass(frozen=True)
class UnrolledRecipe:
    """How an official architect approximates DARTS' second-order α gradient (Eqs. 7-8). The
    default is quark0/darts cnn/architect.py; rnn/architect.py (`RNN_ARCHITECT`) differs thrice."""

    clip_gradients: bool = False  # the unrolled step's training gradient and the direction ∇w′L_val, each clipped
    #                               to the weights' grad_clip (rnn/architect.py _clip)
    decay_in_direction: bool = False  # the direction is ∇w′L_val + weight_decay · w′
    hessian_at_unrolled: bool = False  # the finite differences are taken around w′, not w


CNN_ARCHITECT = UnrolledRecipe()
RNN_ARCHITECT = UnrolledRecipe(clip_gradients=True, decay_in_direction=True, hessian_at_unrolled=True)


def _endless(batches: Iterable[Batch]) -> Iterator[Batch]:
    """Re-iterate a stream (reshuffled each pass) for as long as the caller draws from it."""
    while True:
        yield from batches


class _ClassificationMeter:
    """Loss and accuracy of the training steps of an epoch, summed on the device."""

    def __init__(self, device: torch.device):
        self.running = RunningClassification(device)

    def update(self, loss: torch.Tensor, logits: torch.Tensor, batch: Batch) -> None:
        self.running.update(loss, logits, batch[1])

    def summary(self) -> dict[str, float]:
        summary = self.running.summary()
        return {"loss": summary["loss"], "acc": summary["acc"]}


class ImageClassification:
    """The DARTS CNN cell space on an image dataset (CIFAR-10, ImageNet): `SearchNetwork`,
    cross-entropy, DARTS' search split (PC-DARTS' per-class fractions on ImageNet), accuracy."""

    cell_types = ("normal", "reduce")
    primitives = DARTS_PRIMITIVES
    second_order = CNN_ARCHITECT

    def __init__(self, num_classes: int, input_shape: tuple[int, ...], memory_format: str = "contiguous"):
        self.num_classes = num_classes
        self.input_shape = tuple(input_shape)
        self.memory_format = memory_format  # the run's layout for the supernet's convolutions (context.py)

    def supernet(
        self, stage: Stage, primitives: Mapping[str, Any], edge_factory: Callable[..., nn.Module], **options: Any
    ) -> SearchNetwork:
        supernet = SearchNetwork(
            stage.init_channels,
            self.num_classes,
            stage.layers,
            primitives["normal"],
            edge_factory=edge_factory,
            reduce_primitives=primitives.get("reduce"),
            stem=stem_for(self.input_shape),
            **options,
        )
        return laid_out(supernet, self.memory_format)

    def streams(self, data: Any, protocol: PhaseProtocol) -> tuple[Iterable[Batch], Iterable[Batch]]:
        # CIFAR splits the first train_examples by train_portion; ImageNet samples per-class fractions
        fractions = {key: protocol[key] for key in ("train_fraction", "valid_fraction") if key in protocol}
        return data.search_batches(
            protocol.get("train_examples"), protocol.get("train_portion"), protocol.batch_size, **fractions
        )

    def epoch(
        self, weight_batches: Iterable[Batch], arch_batches: Iterable[Batch], mode: str
    ) -> tuple[Iterator[tuple[Batch, Batch]], int]:
        # fresh: the official next(iter(valid_queue)), reshuffle and take the first batch, every step
        fresh = (next(iter(arch_batches)) for _ in itertools.repeat(None))
        arch = fresh if mode == "fresh" else _endless(arch_batches)
        return zip(weight_batches, arch, strict=False), len(weight_batches)  # α batches never run out

    def forward(
        self,
        supernet: nn.Module,
        arch: ArchWeights,
        batch: Batch,
        stream: str,
        parameters: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        images = batch[0]
        if parameters is None:
            return supernet(images, arch)
        return functional_call(supernet, parameters, (images, arch))

    def loss(self, outputs: torch.Tensor, batch: Batch, step: str) -> torch.Tensor:
        return nn.functional.cross_entropy(outputs.float(), batch[1])

    def lr_scale(self, batch: Batch) -> float:
        return 1.0

    def synthetic_batch(self, batch_size: int, device: torch.device, generator: torch.Generator) -> Batch:
        images = torch.randn(batch_size, *self.input_shape, device=device, generator=generator)
        return images, torch.randint(0, self.num_classes, (batch_size,), device=device, generator=generator)

    def meter(self, device: torch.device) -> _ClassificationMeter:
        return _ClassificationMeter(device)

    def validate(
        self, outputs_of: Callable[[Batch], Any], batches: Iterable[Batch], device: torch.device
    ) -> dict[str, float]:
        summary = evaluate_classifier(lambda images: outputs_of((images, None)), batches, device)
        return {"loss": summary["loss"], "acc": summary["acc"]}

    def derive(
        self,
        weights: Mapping[str, torch.Tensor],
        primitives: Mapping[str, Any],
        edge_scales: Mapping[str, torch.Tensor] | None = None,
    ) -> Genotype:
        """DARTS' rule per cell; without a searched reduction cell (GDAS FRC) `reduce` is None."""
        scales = edge_scales or {}
        cells = {cell: derive_cell(weights[cell], primitives[cell], edge_scale=scales.get(cell)) for cell in weights}
        concat = range(2, 2 + len(cells["normal"]) // 2)
        return Genotype(cells["normal"], concat, cells.get("reduce"), concat)

    def describe(self, genotype: Genotype) -> dict[str, float]:
        return {"normal_skip_connections": sum(op == "skip_connect" for op, _ in genotype.normal)}


TaskFactory = Callable[[Any, PhaseProtocol], SearchTask]
# Datasets searched with another task than ImageClassification: a factory, or "module:attribute" imported on first use
# (the recurrent task imports this module, so naming it here cannot import it)
SEARCH_TASKS: dict[str, str | TaskFactory] = {"ptb": "nasbench_repro.recurrent_search:search_task_for_corpus"}


def register_search_task(dataset: str, factory: TaskFactory) -> None:
    """Search `dataset` with the task `factory(ctx.data, search protocol)` builds instead of
    `ImageClassification` (a method searches a dataset's cell kind only if its `search_kinds` has it)."""
    SEARCH_TASKS[dataset] = factory


def search_task(dataset: str, data: Any, protocol: PhaseProtocol, memory_format: str = "contiguous") -> SearchTask:
    factory = SEARCH_TASKS.get(dataset)
    if factory is None:
        return ImageClassification(data.num_classes, data.input_shape, memory_format)
    return (import_target(factory) if isinstance(factory, str) else factory)(data, protocol)


# --- architecture parameters and the α update ------------------------------------------------------------------


class ArchitectureParameters(nn.Module):
    """α (one row of op logits per edge, for each searched cell type) and, with edge
    normalization, β (one logit per edge). Initialised as init_mean + N(0, init_std²): the
    official DARTS code uses 1e-3·randn (the paper says zeros; the protocol records both),
    NASP a constant 0.5."""

    def __init__(
        self,
        num_edges: int,
        num_ops: Mapping[str, int],
        init_std: float = 1e-3,
        init_mean: float = 0.0,
        edge_normalization: bool = False,
    ):
        super().__init__()
        self.ops = nn.ParameterDict(
            {
                cell: nn.Parameter(init_mean + init_std * torch.randn(num_edges, count))
                for cell, count in num_ops.items()
            }
        )
        self.edges = (
            nn.ParameterDict({cell: nn.Parameter(init_std * torch.randn(num_edges)) for cell in num_ops})
            if edge_normalization
            else None
        )

    def edge_logits(self, cell: str) -> torch.Tensor | None:
        return None if self.edges is None else self.edges[cell]


def softmax_per_node(edge_logits: torch.Tensor, steps: int = 4) -> torch.Tensor:
    """Edge normalization (PC-DARTS): a softmax over the edges entering each intermediate node."""
    weights, start = [], 0
    for inputs in range(2, 2 + steps):
        weights.append(torch.softmax(edge_logits[start : start + inputs], dim=-1))
        start += inputs
    return torch.cat(weights)


def arch_entropy(logits: torch.Tensor) -> float:
    """Mean entropy (nats) of the per-edge op distributions: log(num_ops) at start, 0 when collapsed."""
    probabilities = torch.softmax(logits.detach().float(), dim=-1)
    return float(-(probabilities * probabilities.clamp_min(1e-12).log()).sum(-1).mean())


def second_order_arch_gradient(
    loss: Callable[[dict[str, torch.Tensor], Batch], torch.Tensor],
    weights: dict[str, torch.Tensor],
    arch: list[torch.Tensor],
    train: Batch,
    valid: Batch,
    lr: float | torch.Tensor,
    momentum_buffers: dict[str, torch.Tensor | None],
    momentum: float,
    weight_decay: float,
    recipe: UnrolledRecipe = CNN_ARCHITECT,
    grad_clip: float = math.inf,
) -> list[torch.Tensor]:
    """∇α L_val(w′, α) − ξ ∇²α,w L_train(w, α) v, v = ∇w′ L_val(w′, α), with w′ one SGD step ahead
    (momentum and weight decay included, as the optimizer would take it) and the
    Hessian-vector product by central differences at w ± εv, ε = 0.01 / ‖v‖.
    `recipe` RNN_ARCHITECT: the training gradient of w′ and v clipped to `grad_clip`,
    weight_decay · w′ added to v, and the differences taken at w′ ± εv."""
    names = list(weights)
    train_grads = _zeros_for_unused(
        torch.autograd.grad(loss(weights, train), [weights[name] for name in names], allow_unused=True),
        list(weights.values()),
    )
    if recipe.clip_gradients:
        train_grads = _clipped(train_grads, grad_clip)
    unrolled = {}
    for name, grad in zip(names, train_grads, strict=True):
        weight = weights[name].detach()
        buffer = momentum_buffers.get(name)
        step = grad + weight_decay * weight
        if buffer is not None:
            step = step + momentum * buffer
        unrolled[name] = (weight - lr * step).requires_grad_()
    valid_grads = torch.autograd.grad(loss(unrolled, valid), [*arch, *unrolled.values()], allow_unused=True)
    arch_grads = _zeros_for_unused(valid_grads[: len(arch)], arch)
    direction = _zeros_for_unused(valid_grads[len(arch) :], list(unrolled.values()))
    if recipe.clip_gradients:
        direction = _clipped(direction, grad_clip)
    if recipe.decay_in_direction:
        direction = [d + weight_decay * w.detach() for d, w in zip(direction, unrolled.values(), strict=True)]
    epsilon = 0.01 / torch.cat([d.flatten() for d in direction]).norm()
    centre = unrolled if recipe.hessian_at_unrolled else weights

    def train_arch_grads(sign: float) -> list[torch.Tensor]:
        shifted = {name: centre[name].detach() + sign * epsilon * d for name, d in zip(names, direction, strict=True)}
        return _zeros_for_unused(torch.autograd.grad(loss(shifted, train), arch, allow_unused=True), arch)

    plus, minus = train_arch_grads(1.0), train_arch_grads(-1.0)
    return [g - lr * (p - m) / (2 * epsilon) for g, p, m in zip(arch_grads, plus, minus, strict=True)]


def _zeros_for_unused(grads: tuple, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    return [torch.zeros_like(t) if g is None else g for g, t in zip(grads, tensors, strict=True)]


def _clipped(grads: list[torch.Tensor], max_norm: float) -> list[torch.Tensor]:
    """The gradients scaled by max_norm / (‖grads‖ + 1e-6) where that is below 1, as
    clip_grad_norm_ does, on the device (no host sync)."""
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    scale = (max_norm / (norm + 1e-6)).clamp(max=1.0)
    return [g * scale for g in grads]


class BilevelSearch:
    """One stage's supernet, its architecture parameters, both optimizers and the weights'
    schedule; `step` is one iteration of the bilevel loop."""

    def __init__(
        self,
        method: DifferentiableMethod,
        task: SearchTask,
        supernet: nn.Module,
        arch: ArchitectureParameters,
        protocol: PhaseProtocol,
        epochs: int,
        autocast: Callable,
    ):
        self.method, self.task, self.supernet, self.arch, self.autocast = method, task, supernet, arch, autocast
        self.protocol = protocol
        self.order = protocol.order
        self.momentum, self.weight_decay, self.grad_clip = protocol.momentum, protocol.weight_decay, protocol.grad_clip
        self.arch_grad_clip = protocol.get("arch_grad_clip")
        self.w_optimizer = torch.optim.SGD(
            supernet.parameters(),
            lr=protocol.lr,
            momentum=protocol.momentum,
            weight_decay=protocol.weight_decay,
            nesterov=protocol.get("nesterov", False),
        )
        self.a_optimizer = torch.optim.Adam(
            arch.parameters(),
            lr=protocol.arch_lr,
            betas=tuple(protocol.arch_betas),
            weight_decay=protocol.arch_weight_decay,
        )
        self.scheduler = lr_schedule(
            self.w_optimizer,
            protocol.get("lr_schedule", "cosine"),
            epochs,
            lr_min=protocol.get("lr_min", 0.0),
            warmup_epochs=protocol.get("lr_warmup_epochs", 0),
        )

    def state(self) -> dict[str, Any]:
        """Everything a checkpoint must hold to continue the stage exactly."""
        return {
            "supernet": self.supernet,
            "arch": self.arch,
            "w_optimizer": self.w_optimizer,
            "a_optimizer": self.a_optimizer,
            "scheduler": self.scheduler,
        }

    @property
    def primitives(self) -> dict[str, tuple[tuple[str, ...], ...]]:
        return self.supernet.cell_primitives

    def outputs(self, batch: Batch, step: str, stream: str, parameters: dict[str, torch.Tensor] | None = None) -> Any:
        """The supernet's outputs on `batch` with α weighted as the `step` ("arch" or "weights") needs."""
        arch_weights = self.method.weighting(self.arch, step)
        with self.autocast():
            return self.task.forward(self.supernet, arch_weights, batch, stream, parameters)

    def _arch_loss(self, parameters: dict[str, torch.Tensor] | None, batch: Batch, stream: str) -> torch.Tensor:
        arch_weights = self.method.weighting(self.arch, ARCH_STEP)
        with self.autocast():
            outputs = self.task.forward(self.supernet, arch_weights, batch, stream, parameters)
        loss = self.task.loss(outputs, batch, ARCH_STEP)
        penalty = self.method.arch_penalty(self, arch_weights)
        return loss if penalty is None else loss + penalty

    def arch_step(self, train: Batch, valid: Batch) -> None:
        arch = list(self.arch.parameters())
        if self.order == 1:
            loss = self._arch_loss(None, valid, "valid")
            grads = _zeros_for_unused(torch.autograd.grad(loss, arch, allow_unused=True), arch)
        else:
            weights = dict(self.supernet.named_parameters())
            buffers = {name: self.w_optimizer.state.get(p, {}).get("momentum_buffer") for name, p in weights.items()}
            lr = self.w_optimizer.param_groups[0]["lr"]

            def loss(parameters: dict[str, torch.Tensor], batch: Batch) -> torch.Tensor:
                return self._arch_loss(parameters, batch, "train" if batch is train else "valid")

            grads = second_order_arch_gradient(
                loss,
                weights,
                arch,
                train,
                valid,
                lr,
                buffers,
                self.momentum,
                self.weight_decay,
                self.task.second_order,
                self.grad_clip,
            )
        for parameter, grad in zip(arch, grads, strict=True):
            parameter.grad = grad
        if self.arch_grad_clip:
            nn.utils.clip_grad_norm_(arch, self.arch_grad_clip)
        self.a_optimizer.step()
        with torch.no_grad():
            self.method.constrain(self.arch)

    def weight_step(self, train: Batch) -> tuple[torch.Tensor, Any]:
        with torch.no_grad():
            arch_weights = self.method.weighting(self.arch, WEIGHT_STEP)  # α is a constant here
        with self.autocast():
            outputs = self.task.forward(self.supernet, arch_weights, train, "train")
        loss = self.task.loss(outputs, train, WEIGHT_STEP)
        self.w_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.supernet.parameters(), self.grad_clip)
        self.w_optimizer.step()
        return loss.detach(), outputs

    def step(self, train: Batch, valid: Batch, update_arch: bool) -> tuple[torch.Tensor, Any]:
        with self._lr_scaled(self.task.lr_scale(train)):
            if self.method.weights_first:
                result = self.weight_step(train)
                if update_arch:
                    self.arch_step(train, valid)
                return result
            if update_arch:
                self.arch_step(train, valid)
            return self.weight_step(train)

    @contextlib.contextmanager
    def _lr_scaled(self, scale: float) -> Iterator[None]:
        """The weights' learning rate times `scale` for one step (the unrolled step's ξ included)."""
        if scale == 1.0:
            yield
            return
        groups = self.w_optimizer.param_groups
        rates = [group["lr"] for group in groups]
        for group, rate in zip(groups, rates, strict=True):
            group["lr"] = rate * scale
        try:
            yield
        finally:
            for group, rate in zip(groups, rates, strict=True):
                group["lr"] = rate


# --- stages ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stage:
    """One stretch of the search on one supernet: P-DARTS has three, every other method one.
    `layers` (cells) and `init_channels` size a CNN supernet; None for a space without them
    (the recurrent cell: one layer, `hidden_size` wide)."""

    index: int
    epochs: int
    layers: int | None
    init_channels: int | None
    skip_dropout: float = 0.0


class SearchRun:
    """The search state `ctx.epochs` checkpoints: the current stage, the candidate ops of its
    edges, its `BilevelSearch`, the finished stages' summaries and the genotype the official
    scripts would have printed last. Loading rebuilds the saved stage's supernet before
    loading its weights, so a run resumes mid-stage or at a stage boundary alike."""

    def __init__(
        self,
        method: DifferentiableMethod,
        task: SearchTask,
        protocol: PhaseProtocol,
        autocast: Callable,
        device: torch.device | str,
    ):
        self.method, self.task, self.protocol, self.autocast, self.device = method, task, protocol, autocast, device
        self.stages = method.stages(protocol)
        self.stage = 0
        self.summaries: list[dict[str, Any]] = []
        self.logged_genotype: Any = None
        self.search = method.build_search(protocol, task, autocast, device, self.stages[0])

    @property
    def total_epochs(self) -> int:
        return sum(stage.epochs for stage in self.stages)

    def locate(self, epoch: int) -> tuple[Stage, int]:
        """The stage an epoch of the whole search belongs to, and its epoch within that stage."""
        for stage in self.stages:
            if epoch < stage.epochs:
                return stage, epoch
            epoch -= stage.epochs
        raise IndexError(f"epoch beyond the {self.total_epochs} epochs of the search")

    def end_stage(self, summary: dict[str, Any]) -> None:
        """Record the finished stage; unless it was the last, build the next one on the ops it keeps."""
        self.summaries.append(summary)
        if self.stage + 1 < len(self.stages):
            following = self.stages[self.stage + 1]
            primitives = self.method.next_primitives(self.search, following)
            self.stage += 1
            self.search = self.method.build_search(
                self.protocol, self.task, self.autocast, self.device, following, primitives
            )

    def state_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "primitives": {cell: [list(ops) for ops in edges] for cell, edges in self.search.primitives.items()},
            "summaries": self.summaries,
            "logged_genotype": None if self.logged_genotype is None else self.logged_genotype.to_dict(),
            "search": {name: obj.state_dict() for name, obj in self.search.state().items()},
        }

    def load_state_dict(self, saved: Mapping[str, Any]) -> None:
        self.stage = saved["stage"]
        self.search = self.method.build_search(
            self.protocol, self.task, self.autocast, self.device, self.stages[self.stage], saved["primitives"]
        )
        for name, obj in self.search.state().items():
            obj.load_state_dict(saved["search"][name])
        self.summaries = list(saved["summaries"])
        logged = saved["logged_genotype"]
        self.logged_genotype = None if logged is None else genotype_from_dict(logged)


# --- the method base ---------------------------------------------------------------------------------------------


class DifferentiableMethod(Method):
    """Base of DARTS-family methods: subclasses override the hooks, not the loop."""

    weights_first: ClassVar[bool] = False  # DARTS updates α, then w; GDAS (Alg. 1) w, then α

    # --- hooks: the supernet --------------------------------------------------------------------------------

    def search_primitives(self, protocol: PhaseProtocol, task: SearchTask) -> dict[str, Sequence[str]]:
        """Each searched cell type's candidate ops (default: the task's, e.g. DARTS' 8)."""
        return {cell: task.primitives for cell in task.cell_types}

    def edge_factory(self, protocol: PhaseProtocol) -> Callable[..., nn.Module]:
        return MixedOp

    def edge_normalization(self, protocol: PhaseProtocol) -> bool:
        return False

    def supernet_options(self, protocol: PhaseProtocol) -> dict[str, Any]:
        """Extra keyword arguments of the task's supernet (GDAS FRC: a fixed reduction cell)."""
        return {}

    # --- hooks: from α to a forward pass and back --------------------------------------------------------------

    def weighting(self, arch: ArchitectureParameters, step: str) -> ArchWeights:
        """How α weighs the ops in a forward pass for the α step (`step == "arch"`) or the weight
        step and validation ("weights"). Default: softmax over each edge's ops, and edge
        normalization weights when β exists."""
        return self.soft_weights(arch)

    def soft_weights(self, arch: ArchitectureParameters) -> ArchWeights:
        return {
            cell: CellWeights(
                torch.softmax(logits, dim=-1), None if arch.edges is None else softmax_per_node(arch.edges[cell])
            )
            for cell, logits in arch.ops.items()
        }

    def arch_penalty(self, search: BilevelSearch, arch_weights: ArchWeights) -> torch.Tensor | None:
        """A term added to the α loss (NASP's model-complexity regularizer); None: nothing."""
        return None

    def constrain(self, arch: ArchitectureParameters) -> None:
        """Project α back into its constraint set after each α step (NASP: the box [0, 1])."""

    def begin_epoch(self, search: BilevelSearch, stage: Stage, epoch: int) -> dict[str, float]:
        """Set per-epoch schedules for `epoch` (counted within `stage`); returns them for the curves."""
        return {}

    # --- hooks: stages -------------------------------------------------------------------------------------------

    def stages(self, protocol: PhaseProtocol) -> list[Stage]:
        return [Stage(0, protocol.epochs, protocol.get("layers"), protocol.get("init_channels"))]

    def next_primitives(self, search: BilevelSearch, following: Stage) -> dict[str, list[list[str]]]:
        """The candidate ops each edge keeps for the `following` stage (only staged methods prune)."""
        raise NotImplementedError(f"{self.name} searches in one stage")

    # --- hooks: genotypes ----------------------------------------------------------------------------------------

    def derive(self, search: BilevelSearch) -> Any:
        """DARTS' rule on the softmaxed α (edge-normalised when β exists)."""
        with torch.no_grad():
            weights = self.soft_weights(search.arch)
        return search.task.derive(
            {cell: w.ops for cell, w in weights.items()},
            search.primitives,
            {cell: w.edges for cell, w in weights.items() if w.edges is not None},
        )

    def final_genotype(self, run: SearchRun) -> Any:
        """The genotype the search ends with (P-DARTS adds its cap on skip connections)."""
        return self.derive(run.search)

    def evaluation_settings(self, genotype: Any, protocol: PhaseProtocol) -> dict[str, Any]:
        """Evaluation values that depend on the cell being trained (GDAS FRC on ImageNet); {}: none."""
        return {}

    # --- the shared algorithm ------------------------------------------------------------------------------------

    def build_search(
        self,
        protocol: PhaseProtocol,
        task: SearchTask,
        autocast: Callable = contextlib.nullcontext,
        device: torch.device | str = "cpu",
        stage: Stage | None = None,
        primitives: Mapping[str, Any] | None = None,
    ) -> BilevelSearch:
        """The supernet, α and optimizers of `stage` (default: the first), set to its first epoch."""
        stage = stage or self.stages(protocol)[0]
        primitives = primitives or self.search_primitives(protocol, task)
        supernet = task.supernet(stage, primitives, self.edge_factory(protocol), **self.supernet_options(protocol))
        num_ops = {}
        for cell, edges in supernet.cell_primitives.items():
            counts = {len(ops) for ops in edges}
            if len(counts) != 1:
                raise ValueError(f"the {cell} cell's edges have different numbers of candidate ops: {sorted(counts)}")
            num_ops[cell] = counts.pop()
        arch = ArchitectureParameters(
            supernet.num_edges,
            num_ops,
            protocol.arch_init_std,
            protocol.get("arch_init_mean", 0.0),
            self.edge_normalization(protocol),
        )
        search = BilevelSearch(self, task, supernet.to(device), arch.to(device), protocol, stage.epochs, autocast)
        self.begin_epoch(search, stage, 0)
        return search

    def search(self, ctx: Context) -> PhaseResult:
        protocol, device = ctx.protocol, ctx.device
        task = search_task(ctx.spec.dataset, ctx.data, protocol, ctx.memory_format)
        run = SearchRun(self, task, protocol, ctx.autocast, device)
        weight_batches, arch_batches = task.streams(ctx.data, protocol)
        staged = len(run.stages) > 1
        for epoch in ctx.epochs(run.total_epochs, {"search": run}):
            stage, stage_epoch = run.locate(epoch)
            search = run.search
            run.logged_genotype = self.derive(search)  # what the official scripts print as this epoch starts
            schedule = self.begin_epoch(search, stage, stage_epoch)
            update_arch = stage_epoch >= protocol.warmup_epochs
            lr = search.w_optimizer.param_groups[0]["lr"]
            search.supernet.train()
            meter = task.meter(device)
            pairs, steps = task.epoch(weight_batches, arch_batches, protocol.get("arch_batches", "fresh"))
            for train, valid in ctx.progress(pairs, total=steps):
                loss, outputs = search.step(train, valid, update_arch)
                meter.update(loss, outputs, train)
            search.scheduler.step()
            training = meter.summary()
            ctx.check_finite(training["loss"], "search training loss")
            last_of_stage = stage_epoch == stage.epochs - 1
            validation = {}
            if protocol.validation == "every_epoch" or last_of_stage:
                search.supernet.eval()
                with torch.no_grad():
                    summary = task.validate(
                        functools.partial(search.outputs, step=WEIGHT_STEP, stream="valid"), arch_batches, device
                    )
                validation = {f"valid_{key}": value for key, value in summary.items()}
            genotype = self.derive(search)
            entropy = {cell: arch_entropy(logits) for cell, logits in search.arch.ops.items()}
            ctx.log(
                **({"stage": stage.index} if staged else {}),
                lr=lr,
                arch_updated=update_arch,
                **schedule,
                **{f"train_{key}": value for key, value in training.items()},
                **validation,
                genotype=str(genotype),
                **task.describe(genotype),
                arch_entropy=sum(entropy.values()) / len(entropy),
                **{f"arch_entropy_{cell}": value for cell, value in entropy.items()},
            )
            if last_of_stage:
                run.end_stage(
                    {
                        "stage": stage.index,
                        "cells": stage.layers,
                        "init_channels": stage.init_channels,
                        "ops_per_edge": {cell: len(edges[0]) for cell, edges in search.primitives.items()},
                        "skip_dropout": stage.skip_dropout,
                        "first_epoch": epoch - stage_epoch,
                        "last_epoch": epoch,
                        "genotype": str(genotype),
                        **validation,
                    }
                )
        return self._search_result(ctx, run, task, staged)

    def _search_result(self, ctx: Context, run: SearchRun, task: SearchTask, staged: bool) -> PhaseResult:
        final = self.final_genotype(run)
        evaluated = ctx.protocol.get("evaluated_genotype", "final")
        genotype = run.logged_genotype if evaluated == "last_logged" else final
        validated = next(row for row in reversed(ctx.curves) if any(key.startswith("valid_") for key in row))
        metrics = {f"search_{key}": value for key, value in validated.items() if key.startswith("valid_")}
        metrics.update({f"search_{key}": value for key, value in task.describe(genotype).items()})
        metrics["search_arch_entropy"] = ctx.curves[-1]["arch_entropy"]
        metrics["search_genotypes"] = {
            "final": str(final),
            "last_logged": str(run.logged_genotype),
            "evaluated": evaluated,
        }
        if staged:
            seconds = ctx.meter.epoch_seconds
            metrics["search_stages"] = [
                {
                    **summary,
                    "wall_seconds": sum(seconds[summary["first_epoch"] : summary["last_epoch"] + 1]),
                    "gpu_days": gpu_days(
                        sum(seconds[summary["first_epoch"] : summary["last_epoch"] + 1]), ctx.meter.device_count
                    ),
                }
                for summary in run.summaries
            ]
        return PhaseResult(metrics, genotype)

    def evaluate(self, genotype: Any, ctx: Context) -> PhaseResult:
        """The shared evaluation, with this cell's own settings where the protocol has them (recorded)."""
        settings = self.evaluation_settings(genotype, ctx.protocol)
        if settings:
            ctx.protocol = PhaseProtocol("evaluate", {**ctx.protocol, **settings})
        result = super().evaluate(genotype, ctx)
        if settings:
            result.metrics["evaluation_settings"] = settings
        return result
