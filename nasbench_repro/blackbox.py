"""The loop shared by every black-box method (NAS-RL, random search, grid search, regularized
evolution), a sibling of the differentiable methods' bilevel loop:

    for each round:
        candidates  <- propose(count)      sample, enumerate, mutate, or ask the controller
        evaluations <- evaluate(candidates)  train each from scratch on the search split, or
                                             rank it with a weight-sharing supernet
        update(evaluations)                age the population, step the controller, ...
    return the best candidate evaluated

A method supplies `propose` and `update` (and, where it keeps any, its own state); this
module owns the rest. A round is one `ctx.epochs` step, so the method's state, the history,
the evaluation cache and every random stream are checkpointed after each round.

Evaluators:
- `ProxyTraining`: a candidate is trained from scratch on the weights' part of the search
  split and scored on the held-out part (the protocol's epochs, channels and cells, which a
  budget scales); a language model (the recurrent cell space, on PTB) trains on the training
  split's tokens with the protocol's recipe (language_model.py) and is scored by its validation
  perplexity. Candidates run through an executor (`executors.py`): a process pool, or
  Slurm. Each is seeded from the run's seed and its canonical key, so a result does not
  depend on which worker ran it or when; results are read back in proposal order, so any
  number of workers writes the same record. Every finished evaluation is also written
  atomically to the run's `evaluations-search/` folder, so a run killed mid-round redoes only
  the candidates that were in flight.
- `WeightSharing` (Li & Talwalkar, 2019): a supernet over the cell space is trained with one
  uniformly sampled architecture per minibatch (its epochs come before the rounds); a round
  then scores each candidate with the shared weights on a few validation minibatches and
  rescores the best few on the whole validation half.
- `RecurrentWeightSharing` (the same on PTB): the supernet is the recurrent cell's language model,
  run with one sampled genotype per training window; every candidate is scored by its perplexity
  over the whole validation split.

Trained-from-scratch results are cached by the space's canonical key: no architecture is trained
twice in a run, and isomorphic duplicates count as the same architecture (the weight-sharing
evaluators score every proposal: a few forward passes). Candidates are ranked by a score
where higher is better (the accuracy, or minus the perplexity: the space's `Metric`), and
every round logs the best-so-far validation metric as the dataset reports it (`best_valid_acc`,
`best_valid_ppl`) against the number of architectures evaluated; the time axis (GPU-hours)
is the phase's per-round wall time in the record's cost, times the devices the run held.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import json
import math
import random
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nasbench_repro.atomic import write_json
from nasbench_repro.context import Context, PhaseResult, autocast_for, laid_out
from nasbench_repro.data import DataRequest, resolve
from nasbench_repro.data.text import TextCorpus
from nasbench_repro.evaluation import sgd_with_schedule, train_epoch
from nasbench_repro.executors import open_executor
from nasbench_repro.language_model import (
    LanguageModelTraining,
    evaluate_language_model,
    perplexity,
    protocol_streams,
    scaled_step,
    train_windows,
)
from nasbench_repro.meters import PhaseMeter
from nasbench_repro.method import Method
from nasbench_repro.protocol import Domain, PhaseProtocol, integer, one_of
from nasbench_repro.records import finite_or_none
from nasbench_repro.spaces.cnn.layerwise import LayerwiseSpace
from nasbench_repro.spaces.cnn.ops import OP_NAMES
from nasbench_repro.spaces.cnn.sampling import CellSpace
from nasbench_repro.spaces.cnn.supernet import ArchWeights, CellWeights, SearchNetwork, stem_for
from nasbench_repro.spaces.genotypes import cell_edge_count
from nasbench_repro.spaces.rnn.cell import ACTIVATIONS
from nasbench_repro.spaces.rnn.model import Dropouts, evaluation_model
from nasbench_repro.spaces.rnn.sampling import RecurrentCellSpace
from nasbench_repro.spaces.space import Metric, Space
from nasbench_repro.training import RunningClassification, evaluate_classifier, lr_schedule


def _distinct_names(known: Collection[str]) -> Callable[[Any, Mapping[str, Any]], bool]:
    """A domain test: a non-empty list of distinct names, each one of `known`."""

    def test(value: Any, _: Mapping[str, Any]) -> bool:
        return (
            isinstance(value, list)
            and bool(value)
            and len(set(value)) == len(value)
            and all(isinstance(name, str) and name in known for name in value)
        )

    return test


def _odd_sizes(value: Any, _: Mapping[str, Any]) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(size, int) and not isinstance(size, bool) and size >= 1 and size % 2 for size in value)
    )


def _counts(value: Any, _: Mapping[str, Any]) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(count, int) and not isinstance(count, bool) and count >= 1 for count in value)
    )


# A search protocol's network: an image classifier (the cell and layerwise spaces) or, in the recurrent space,
# a language model (its examples are tokens and its recipe is language_model.py's).
def network_kind(space: str) -> str:
    return "language_model" if space == "recurrent" else "image"


# What a language model's training reads, from scratch or as a weight-sharing supernet.
LANGUAGE_MODEL_KEYS = (
    "epochs",
    "batch_size",
    "train_examples",
    "valid_examples",
    "valid_batch_size",
    "hidden_size",
    "bptt",
    "bptt_std",
    "bptt_max_delta",
    "lr",
    "weight_decay",
    "grad_clip",
    "word_dropout",
    "embedding_dropout",
    "cell_input_dropout",
    "hidden_dropout",
    "output_dropout",
    "activation_regularization",
    "temporal_activation_regularization",
)
# What each evaluator reads from the search protocol for each kind of network (besides the space's keys).
EVALUATOR_KEYS = {
    ("train_from_scratch", "image"): (
        "epochs",
        "batch_size",
        "train_examples",
        "train_portion",
        "lr",
        "lr_schedule",
        "lr_min",
        "momentum",
        "weight_decay",
        "score_window",
    ),
    ("weight_sharing", "image"): (
        "epochs",
        "batch_size",
        "train_examples",
        "train_portion",
        "init_channels",
        "layers",
        "lr",
        "lr_min",
        "momentum",
        "weight_decay",
        "grad_clip",
        "score_batches",
        "rescore_top",
    ),
    # each candidate trained with the evaluation recipe (SGD, then ASGD) and scored by its best validation epochs
    ("train_from_scratch", "language_model"): (*LANGUAGE_MODEL_KEYS, "asgd_nonmono", "asgd_trigger", "score_window"),
    # the supernet trains with plain SGD; every candidate is scored on the whole validation split
    ("weight_sharing", "language_model"): LANGUAGE_MODEL_KEYS,
}
SPACE_KEYS = {
    "cell": ("ops", "nodes", "distinct_inputs", "concat", "init_channels", "layers"),
    "layerwise": ("filter_heights", "filter_widths", "filter_channels", "layers"),
    "recurrent": ("activations", "nodes"),
}
MAX_NODES = {"cell": 6, "recurrent": 12}  # a cell's key relabels its nodes: 6! orders; a recurrent cell's is a tree


def _evaluator_fits(value: Any, values: Mapping[str, Any]) -> bool:
    """The protocol holds the evaluator's keys for its network; weight sharing needs a supernet: the
    recurrent cell's language model, or a DARTS-style cell supernet (not a layerwise space)."""
    space = values.get("space", "cell")
    keys = EVALUATOR_KEYS.get((value, network_kind(space)))
    if keys is None or not all(key in values for key in keys):
        return False
    return (
        value != "weight_sharing"
        or space == "recurrent"
        or (space == "cell" and values.get("distinct_inputs") is True and values.get("concat") == "all")
    )


def _space_fits(value: Any, values: Mapping[str, Any]) -> bool:
    return value in SPACE_KEYS and all(key in values for key in SPACE_KEYS[value])


def _node_count(value: Any, values: Mapping[str, Any]) -> bool:
    most = MAX_NODES.get(values.get("space", "cell"), MAX_NODES["cell"])
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= most


# Keys every black-box protocol may use; methods add their own.
BLACKBOX_DOMAINS: dict[str, Domain] = {
    "evaluator": Domain(
        "train_from_scratch, or weight_sharing over the recurrent space or a cell space with distinct inputs and "
        "all nodes concatenated; the search protocol must hold that evaluator's keys",
        _evaluator_fits,
        depends_on=("space", "distinct_inputs", "concat"),
    ),
    "space": Domain("cell, layerwise or recurrent, with that space's keys in the search protocol", _space_fits),
    "architectures": integer(1, 100_000),  # NAS-RL trained 12,800, regularized evolution 20,000
    "round_size": integer(1),
    "ops": Domain(
        "a non-empty list of distinct operation names (see nasbench_repro/spaces/cnn/ops.py)", _distinct_names(OP_NAMES)
    ),
    "nodes": Domain("1 to 6 intermediate nodes in a cell, 1 to 12 in a recurrent cell", _node_count, ("space",)),
    "activations": Domain(
        f"a non-empty list of distinct activations among {', '.join(ACTIVATIONS)}", _distinct_names(ACTIVATIONS)
    ),
    "distinct_inputs": one_of(True, False),
    "concat": one_of("all", "unused"),
    "tied_cells": one_of(True, False),
    "filter_heights": Domain("a non-empty list of odd filter sizes", _odd_sizes),
    "filter_widths": Domain("a non-empty list of odd filter sizes", _odd_sizes),
    "filter_channels": Domain("a non-empty list of positive filter counts", _counts),
    "score_window": integer(1),
    "score_batches": integer(1),
    "rescore_top": integer(1),
}


def candidate_seed(run_seed: int, key: str) -> int:
    """A candidate's own seed: the same architecture in the same run always trains the same way."""
    digest = hashlib.sha256(f"{run_seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


class RandomStream(random.Random):
    """The search's own random stream (sampling, tournaments, mutations), checkpointed with each round."""

    def state_dict(self) -> dict[str, Any]:
        version, internal, gauss = self.getstate()
        return {"version": version, "internal": list(internal), "gauss": gauss}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.setstate((state["version"], tuple(state["internal"]), state["gauss"]))


@contextlib.contextmanager
def seeded(generator: torch.Generator, seed: int) -> Iterator[None]:
    """Draw from `generator` as if freshly seeded with `seed`, then put its state back."""
    saved = generator.get_state()
    generator.manual_seed(seed)
    try:
        yield
    finally:
        generator.set_state(saved)


@dataclass
class Evaluation:
    """One proposal's outcome: `value`, the space's metric as the dataset reports it (validation
    accuracy, perplexity), and `score`, the same where higher is better. `selectable`: it may be
    the search's answer (with the cell supernet only rescored candidates are); `trained`: this
    proposal was the one that computed it."""

    genotype: Any
    key: str
    value: float
    score: float
    trained: bool
    selectable: bool = True
    diverged: bool = False

    @classmethod
    def of(cls, metric: Metric, genotype: Any, key: str, value: float, **flags: bool) -> Evaluation:
        return cls(genotype, key, value, metric.score(value), **flags)

    def to_dict(self) -> dict[str, Any]:
        return {
            "genotype": self.genotype.to_dict(),
            "key": self.key,
            "value": self.value,
            "score": self.score,
            "trained": self.trained,
            "selectable": self.selectable,
            "diverged": self.diverged,
        }


class History:
    """Every proposal's evaluation in proposal order (repeats included), kept as a checkpointable dict."""

    def __init__(self, space: Space):
        self.space = space
        self.state: dict[str, list] = {"evaluations": []}

    def __len__(self) -> int:
        return len(self.state["evaluations"])

    def __getitem__(self, index: int) -> Evaluation:
        entry = self.state["evaluations"][index]
        return Evaluation(**{**entry, "genotype": self.space.genotype_from_dict(entry["genotype"])})

    def add(self, evaluations: Sequence[Evaluation]) -> None:
        self.state["evaluations"].extend(evaluation.to_dict() for evaluation in evaluations)

    def score(self, index: int) -> float:
        return self.state["evaluations"][index]["score"]

    def value(self, index: int) -> float:
        return self.state["evaluations"][index]["value"]

    @property
    def trained(self) -> int:
        return sum(entry["trained"] for entry in self.state["evaluations"])

    def best_index(self) -> int | None:
        """The highest score among selectable evaluations (the first on ties)."""
        entries = self.state["evaluations"]
        candidates = [index for index, entry in enumerate(entries) if entry["selectable"]]
        return max(candidates, key=lambda index: (entries[index]["score"], -index), default=None)

    def best(self) -> Evaluation:
        index = self.best_index()
        if index is None:
            raise RuntimeError("the search evaluated no selectable architecture")
        return self[index]

    def progress(self, latest: Sequence[Evaluation]) -> dict[str, Any]:
        """One row of the best-so-far curve, after a round, in the space's metric (e.g. `best_valid_ppl`)."""
        best, name = self.best_index(), self.space.metric.name
        values = [evaluation.value for evaluation in latest]
        return {
            "evaluated": len(self),
            "trained": self.trained,
            f"best_{name}": None if best is None else self.value(best),
            f"round_best_{name}": max(latest, key=lambda evaluation: evaluation.score).value,
            f"round_mean_{name}": sum(values) / len(values),
            "best_genotype": None if best is None else str(self[best].genotype),
        }


# --- training a candidate from scratch (runs in worker processes) ---------------------------------------------


@dataclass(frozen=True)
class CandidateTask:
    """Everything a worker needs to train and score one candidate, and where to leave the result."""

    space: Any
    genotype: Any
    key: str
    values: dict[str, Any]
    seed: int
    request: DataRequest
    precision: str
    memory_format: str
    result_path: Path


_loaded: dict[tuple[DataRequest, str], tuple[Any, torch.Generator]] = {}


def _data_on(request: DataRequest, device: torch.device) -> tuple[Any, torch.Generator]:
    """The dataset on `device` with a generator of its own, loaded once per process."""
    slot = (request, str(device))
    if slot not in _loaded:
        generator = torch.Generator(device=device)
        _loaded[slot] = (resolve(request).load(device, generator), generator)
    return _loaded[slot]


def train_candidate(task: CandidateTask, device: torch.device) -> dict[str, Any]:
    """Train one candidate and score it; write the result file; return the result.

    Every random stream it draws from is seeded from the task's seed, and the caller's
    streams are left as they were, so this runs the same in any process."""
    data, generator = _data_on(task.request, device)
    values = PhaseProtocol("search", task.values)
    metric = task.space.metric
    began = time.perf_counter()
    generator.manual_seed(task.seed)
    autocast = functools.partial(autocast_for, task.precision, device)
    meter = PhaseMeter(device)  # this candidate's memory, which the run's own meter cannot see from a worker
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), meter:
        torch.manual_seed(task.seed)
        if isinstance(data, TextCorpus):  # a language model predicts its vocabulary's words
            network = task.space.build_network(task.genotype, values, data.vocabulary_size, ()).to(device)
            curve, diverged = fit_language_model(network, values, data, autocast)
        else:
            network = task.space.build_network(task.genotype, values, data.num_classes, data.input_shape)
            network = laid_out(network, task.memory_format).to(device)
            curve, diverged = fit(network, values, data, autocast)
    # JSON has no infinity: a diverged candidate's value (and any non-finite point of its curve) is stored
    # as null, and read back as the metric's worst (`candidate_value`)
    result = finite_or_none(
        {
            "key": task.key,
            "genotype": task.genotype.to_dict(),
            metric.name: None if diverged else metric.best(curve),
            "valid_curve": curve,
            "diverged": diverged,
            "seconds": time.perf_counter() - began,
            "device": str(device),
            "peak_memory": meter.peaks(),
        }
    )
    write_json(task.result_path, result)
    return result


def fit(network: nn.Module, values: PhaseProtocol, data: Any, autocast: Callable) -> tuple[list[float], bool]:
    """Train on the weights' part of the search split for `epochs`; score the held-out part in
    the last `score_window` epochs (the candidate's score is the best of them). Returns those
    accuracies and whether the loss diverged (a diverged candidate scores 0: one bad
    architecture does not end a search)."""
    device = next(network.parameters()).device
    optimizer, scheduler = sgd_with_schedule(network, values)
    criterion = nn.CrossEntropyLoss(label_smoothing=values.get("label_smoothing", 0.0))
    train, _ = data.search_batches(values.train_examples, values.train_portion, values.batch_size)
    held_out = data.validation_batches(values.train_examples, values.train_portion, values.batch_size)
    scored_from = values.epochs - values.score_window
    curve: list[float] = []
    for epoch in range(values.epochs):
        network.drop_path_prob = values.get("drop_path_prob", 0.0) * epoch / values.epochs
        summary = train_epoch(network, optimizer, train, criterion, values, autocast)
        scheduler.step()
        if not math.isfinite(summary["loss"]):
            return curve, True
        if epoch >= scored_from:
            network.eval()
            curve.append(evaluate_classifier(lambda images: network(images)[0], held_out, device, autocast)["acc"])
    return curve, False


def fit_language_model(
    network: nn.Module, values: PhaseProtocol, data: TextCorpus, autocast: Callable
) -> tuple[list[float], bool]:
    """Train a language model on the training split's tokens for `epochs` with the protocol's
    recipe (SGD, then ASGD when validation stalls); its validation perplexities in the last
    `score_window` epochs (the candidate's score is the lowest) and whether it diverged."""
    training = LanguageModelTraining(network, values, data, autocast)
    scored_from = values.epochs - values.score_window
    curve: list[float] = []
    for epoch in range(values.epochs):
        if not math.isfinite(training.train_epoch()["loss"]):
            return curve, True
        valid = training.validate(epoch)
        if not math.isfinite(valid["loss"]):
            return curve, True
        if epoch >= scored_from:
            curve.append(valid["ppl"])
    return curve, False


# --- evaluators --------------------------------------------------------------------------------------------------


class ProxyTraining:
    """Each new candidate trained from scratch through the run's executor; results cached by key."""

    preparation_epochs = 0

    def __init__(self, space: Space, ctx: Context, rng: random.Random):
        self.space, self.ctx = space, ctx
        self.cache: dict[str, dict[str, Any]] = {}
        self.executor = None

    def state(self) -> dict[str, Any]:
        return {"evaluation_cache": self.cache}

    @contextlib.contextmanager
    def opened(self) -> Iterator[None]:
        ctx = self.ctx
        with open_executor(ctx.executor, ctx.device, ctx.spec.determinism, ctx.checkpoint_path.parent / "slurm") as ex:
            if ex.gpus:
                ctx.meter.device_count = ex.gpus
            self.executor = ex
            yield

    def _result_path(self, key: str) -> Path:
        return self.ctx.evaluations_dir / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"

    def _stored(self, key: str) -> dict[str, Any] | None:
        """A result a worker wrote before the run was interrupted (never half a file: writes are atomic)."""
        path = self._result_path(key)
        if not path.exists():
            return None
        result = json.loads(path.read_text())
        return result if result.get("key") == key else None

    def evaluate(self, genotypes: Sequence[Any]) -> list[Evaluation]:
        keys = [self.space.key(genotype) for genotype in genotypes]
        pending: dict[str, Any] = {}
        computed: set[str] = set()
        for genotype, key in zip(genotypes, keys, strict=True):
            if key in self.cache or key in pending:
                continue
            stored = self._stored(key)
            if stored is not None:
                self.cache[key] = stored
                computed.add(key)
            else:
                pending[key] = genotype
        ctx = self.ctx
        tasks = [
            CandidateTask(
                self.space,
                genotype,
                key,
                dict(ctx.protocol),
                candidate_seed(ctx.spec.seed, key),
                ctx.data_request,
                ctx.precision,
                ctx.memory_format,
                self._result_path(key),
            )
            for key, genotype in pending.items()
        ]
        # an in-process candidate's meter resets this process's peak counters: keep what they held so far
        self.ctx.meter.absorb(self.ctx.meter.peaks())
        for key, result in zip(pending, self.executor.map(train_candidate, tasks), strict=True):
            self.cache[key] = result
        for key in computed | set(pending):  # trained in this run (or before its interruption): the phase's peaks
            self.ctx.meter.absorb(self.cache[key].get("peak_memory", {}))
        computed |= set(pending)
        evaluations = []
        metric = self.space.metric
        for genotype, key in zip(genotypes, keys, strict=True):
            result = self.cache[key]
            evaluations.append(
                Evaluation.of(
                    metric,
                    genotype,
                    key,
                    metric.worst if result["diverged"] else result[metric.name],
                    trained=key in computed,
                    diverged=result["diverged"],
                )
            )
            computed.discard(key)  # a repeat within the round reuses the first one's training
        return evaluations


class WeightSharing:
    """Li & Talwalkar's random search with weight sharing: a DARTS supernet trained on single
    paths (one uniformly sampled architecture per minibatch, as their `train_batch`), then
    candidates scored with the shared weights: `score_batches` validation minibatches each,
    and the round's `rescore_top` best again on the whole validation half (their
    `get_eval_arch`). Scoring draws each candidate's minibatches from a stream seeded by its key."""

    def __init__(self, space: Space, ctx: Context, rng: random.Random):
        if not (isinstance(space, CellSpace) and space.distinct_inputs and space.concat == "all"):
            raise ValueError("weight sharing needs a DARTS cell space (distinct inputs, all nodes concatenated)")
        protocol, data = ctx.protocol, ctx.data
        self.space, self.ctx, self.rng = space, ctx, rng
        self.primitives = space.ops
        supernet = SearchNetwork(
            protocol.init_channels,
            data.num_classes,
            protocol.layers,
            self.primitives,
            steps=space.nodes,
            multiplier=space.nodes,
            stem=stem_for(data.input_shape),
        )
        self.supernet = ctx.place(supernet)
        self.optimizer = torch.optim.SGD(
            self.supernet.parameters(), lr=protocol.lr, momentum=protocol.momentum, weight_decay=protocol.weight_decay
        )
        self.scheduler = lr_schedule(self.optimizer, "cosine", protocol.epochs, lr_min=protocol.lr_min)
        self.train_batches, self.valid_batches = data.search_batches(
            protocol.train_examples, protocol.train_portion, protocol.batch_size
        )
        self.preparation_epochs = protocol.epochs
        self.edges = cell_edge_count(space.nodes)
        self.first_edge = list(itertools.accumulate(range(2, space.nodes + 1), initial=0))  # of each node

    def state(self) -> dict[str, Any]:
        return {"supernet": self.supernet, "supernet_optimizer": self.optimizer, "supernet_scheduler": self.scheduler}

    @contextlib.contextmanager
    def opened(self) -> Iterator[None]:
        yield  # scoring with shared weights is a few forward passes: it runs here, on the run's device

    def single_path(self, genotype: Any) -> ArchWeights:
        """Weight 1 on each chosen (edge, op); every other edge switched off."""
        cells = {}
        for cell, pairs in (("normal", genotype.normal), ("reduce", genotype.reduce)):
            selected: list[int | None] = [None] * self.edges
            for position, (op, source) in enumerate(pairs):
                selected[self.first_edge[position // 2] + source] = self.primitives.index(op)
            chosen = [edge for edge, op in enumerate(selected) if op is not None]
            weights = torch.zeros(self.edges, len(self.primitives), device=self.ctx.device)
            weights[chosen, [selected[edge] for edge in chosen]] = 1.0
            cells[cell] = CellWeights(weights, selected=selected)
        return cells

    def prepare(self, epoch: int) -> dict[str, Any]:
        """One epoch of supernet training, a fresh uniform architecture per minibatch."""
        ctx, protocol = self.ctx, self.ctx.protocol
        lr = self.optimizer.param_groups[0]["lr"]
        self.supernet.train()
        running = RunningClassification(ctx.device)
        for images, labels in ctx.progress(self.train_batches, total=len(self.train_batches)):
            path = self.single_path(self.space.sample(self.rng))
            with ctx.autocast():
                logits = self.supernet(images, path)
            loss = nn.functional.cross_entropy(logits.float(), labels)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(self.supernet.parameters(), protocol.grad_clip)
            self.optimizer.step()
            running.update(loss, logits, labels)
        self.scheduler.step()
        summary = running.summary()
        ctx.check_finite(summary["loss"], "supernet training loss")
        return {"lr": lr, "supernet_train_loss": summary["loss"], "supernet_train_acc": summary["acc"]}

    def _score(self, genotype: Any, key: str, batches: int | None) -> float:
        self.supernet.eval()
        path = self.single_path(genotype)
        with torch.no_grad(), seeded(self.ctx.generator, candidate_seed(self.ctx.spec.seed, key)):
            stream = itertools.islice(self.valid_batches, batches)
            forward = lambda images: self.supernet(images, path)  # noqa: E731
            return evaluate_classifier(forward, stream, self.ctx.device, self.ctx.autocast)["acc"]

    def evaluate(self, genotypes: Sequence[Any]) -> list[Evaluation]:
        protocol = self.ctx.protocol
        keys = [self.space.key(genotype) for genotype in genotypes]
        quick = [
            self._score(genotype, key, protocol.score_batches) for genotype, key in zip(genotypes, keys, strict=True)
        ]
        ranked = sorted(range(len(genotypes)), key=lambda index: (-quick[index], index))[: protocol.rescore_top]
        full = {index: self._score(genotypes[index], keys[index], None) for index in ranked}
        return [
            Evaluation.of(
                self.space.metric, genotype, key, full.get(index, quick[index]), trained=True, selectable=index in full
            )
            for index, (genotype, key) in enumerate(zip(genotypes, keys, strict=True))
        ]


class RecurrentWeightSharing:
    """Li & Talwalkar's random search with weight sharing on the recurrent cell (liamcli/randomNAS_release
    @6513a0a benchmarks/ptb/darts/darts_wrapper_discrete.py). The shared weights are DARTS's evaluation
    language model itself: each node keeps its own weight matrix whatever predecessor and activation a
    genotype gives it, so sharing is running the cell with another genotype. The supernet trains on the
    training split's windows (bptt, or bptt / 2 with probability 0.05) with a fresh uniformly sampled
    genotype per window, plain SGD at the learning rate times window / bptt, gradients clipped; its epochs
    come before the rounds. A candidate's score is then its perplexity, without dropout, over the whole
    validation split (their PTB wrapper scores every candidate so, and rescores none); one the shared
    weights make diverge scores the worst perplexity."""

    def __init__(self, space: Space, ctx: Context, rng: random.Random):
        if not isinstance(space, RecurrentCellSpace):
            raise ValueError("recurrent weight sharing needs the recurrent cell space")
        protocol, data = ctx.protocol, ctx.data
        self.space, self.ctx, self.rng = space, ctx, rng
        # the genotype it starts with only sizes the cell: every window and every score sets its own
        self.supernet = evaluation_model(
            space.sample(rng), data.vocabulary_size, protocol.hidden_size, Dropouts.from_protocol(protocol)
        ).to(ctx.device)
        self.optimizer = torch.optim.SGD(self.supernet.parameters(), lr=protocol.lr, weight_decay=protocol.weight_decay)
        self.train_batches, self.valid_batches = protocol_streams(data, protocol)
        self.preparation_epochs = protocol.epochs

    def state(self) -> dict[str, Any]:
        return {"supernet": self.supernet, "supernet_optimizer": self.optimizer}

    @contextlib.contextmanager
    def opened(self) -> Iterator[None]:
        yield  # scoring with shared weights is a few forward passes: it runs here, on the run's device

    def run_as(self, genotype: Any) -> None:
        self.supernet.cell.genotype = genotype

    def prepare(self, epoch: int) -> dict[str, Any]:
        """One epoch of supernet training, a fresh uniform architecture per window."""
        ctx, protocol = self.ctx, self.ctx.protocol
        summary = train_windows(
            self.supernet,
            self.train_batches,
            protocol,
            lambda scale: scaled_step(self.optimizer, protocol.lr, scale),
            ctx.autocast,
            ctx.progress,
            before_window=lambda: self.run_as(self.space.sample(self.rng)),
        )
        loss = ctx.check_finite(summary["loss"], "supernet training loss")
        return {"lr": protocol.lr, "supernet_train_loss": loss, "supernet_train_ppl": perplexity(loss)}

    def score(self, genotype: Any) -> dict[str, float]:
        """The validation loss, perplexity and tokens predicted of `genotype` with the shared weights."""
        self.run_as(genotype)
        self.supernet.eval()
        hidden = self.supernet.initial_hidden(self.valid_batches.batch_size)
        return evaluate_language_model(self.supernet, self.valid_batches, hidden, self.ctx.autocast)

    def evaluate(self, genotypes: Sequence[Any]) -> list[Evaluation]:
        metric, evaluations = self.space.metric, []
        for genotype in self.ctx.progress(genotypes, total=len(genotypes), desc="scoring with shared weights"):
            value = self.score(genotype)["ppl"]
            diverged = not math.isfinite(value)
            evaluations.append(
                Evaluation.of(
                    metric,
                    genotype,
                    self.space.key(genotype),
                    metric.worst if diverged else value,
                    trained=True,
                    diverged=diverged,
                )
            )
        return evaluations


# The evaluator a protocol names, for its space's kind of network.
EVALUATORS = {
    ("train_from_scratch", "image"): ProxyTraining,
    ("train_from_scratch", "language_model"): ProxyTraining,
    ("weight_sharing", "image"): WeightSharing,
    ("weight_sharing", "language_model"): RecurrentWeightSharing,
}


# --- the loop ----------------------------------------------------------------------------------------------------


def chunks(total: int, size: int) -> list[int]:
    """`total` split into rounds of `size` (the last one shorter)."""
    return [min(size, total - start) for start in range(0, total, size)]


class BlackBoxMethod(Method):
    """Base of the black-box methods: subclasses write `propose` (and `update`, `start` when
    they keep state), not the loop. While a search runs, `self.space`, `self.protocol`,
    `self.rng` (the search's random stream) and `self.history` are set."""

    protocol_domains = BLACKBOX_DOMAINS

    # --- hooks --------------------------------------------------------------------------------------------------

    def make_space(self, protocol: PhaseProtocol) -> Space:
        space = protocol.get("space", "cell")
        if space == "layerwise":
            return LayerwiseSpace(
                protocol.filter_heights, protocol.filter_widths, protocol.filter_channels, protocol.layers
            )
        if space == "recurrent":
            return RecurrentCellSpace.from_protocol(protocol)
        return CellSpace.from_protocol(protocol)

    def start(self) -> dict[str, Any]:
        """Set up the method's own state; return what a checkpoint must hold of it."""
        return {}

    def round_sizes(self) -> list[int]:
        """How many candidates each round proposes."""
        return chunks(self.protocol.architectures, self.protocol.round_size)

    def propose(self, count: int) -> list[Any]:
        raise NotImplementedError

    def update(self, evaluations: Sequence[Evaluation]) -> dict[str, Any]:
        """Learn from a round's evaluations; return values to log with the round."""
        return {}

    def summary(self) -> dict[str, Any]:
        """Search metrics beyond the best candidate's (e.g. how much of a grid was covered)."""
        return {}

    # --- the shared algorithm ------------------------------------------------------------------------------------

    def search(self, ctx: Context) -> PhaseResult:
        self.protocol = ctx.protocol
        self.space = self.make_space(ctx.protocol)
        self.rng = RandomStream(f"{self.name}:{ctx.spec.seed}")
        self.history = History(self.space)
        network = network_kind(ctx.protocol.get("space", "cell"))
        evaluator = EVALUATORS[ctx.protocol.evaluator, network](self.space, ctx, self.rng)
        state = {"search_rng": self.rng, "history": self.history.state, **evaluator.state(), **self.start()}
        rounds = self.round_sizes()
        preparation = evaluator.preparation_epochs
        with evaluator.opened():
            for step in ctx.epochs(preparation + len(rounds), state):
                if step < preparation:
                    ctx.log(**evaluator.prepare(step))
                    continue
                evaluations = evaluator.evaluate(self.propose(rounds[step - preparation]))
                self.history.add(evaluations)
                learned = self.update(evaluations)
                ctx.log(**self.history.progress(evaluations), **learned)
        best = self.history.best()
        return PhaseResult(
            {
                f"search_{self.space.metric.name}": best.value,
                "architectures_evaluated": len(self.history),
                "architectures_trained": self.history.trained,
                **self.summary(),
            },
            best.genotype,
        )
