"""`nasbench profile METHOD`: speed and memory of one search step, side by side across methods.

Builds the method's search supernet from its protocol (after `--budget` and `--set`), feeds
synthetic inputs of the dataset's shape on the chosen device (images; on PTB, batch × bptt
random tokens of its vocabulary from a zero state), and reports the median time of a full
search step (architecture step plus weight step), the bytes autograd saves for backward in
one forward pass of each step (GDAS and NASP's weight steps run one op per edge; NASP's α
step runs them all), and the peak memory over the timed steps. P-DARTS is profiled stage by
stage (its supernets differ in depth and ops per edge).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Iterator

import torch

from nasbench_repro import catalog, environment
from nasbench_repro.commands.run import add_memory_format_option, parse_value_pair
from nasbench_repro.context import autocast_for, memory_format_for
from nasbench_repro.data.text import PTB
from nasbench_repro.differentiable import (
    ARCH_STEP,
    WEIGHT_STEP,
    BilevelSearch,
    DifferentiableMethod,
    ImageClassification,
)
from nasbench_repro.errors import UserError
from nasbench_repro.meters import SavedTensorMeter, peak_rss_bytes, reset_peak_rss
from nasbench_repro.recurrent_search import RecurrentLanguageModelSearch
from nasbench_repro.runner import choose_device, resolve_protocol
from nasbench_repro.seeding import DETERMINISTIC, FAST, seed_everything, set_determinism
from nasbench_repro.spec import DEVICES, PRECISIONS, RunSpec

# Each dataset's search task on synthetic input (no data is read): image shape and classes, or the corpus's vocabulary.
SEARCH_TASKS = {
    "cifar10": lambda protocol, layout: ImageClassification(10, (3, 32, 32), layout),
    "imagenet": lambda protocol, layout: ImageClassification(1000, (3, 224, 224), layout),
    "ptb": lambda protocol, layout: RecurrentLanguageModelSearch(PTB.vocabulary_size, protocol),
}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("profile", help="time and memory of one search step on synthetic input")
    parser.add_argument("method", metavar="METHOD")
    parser.add_argument("--dataset", default="cifar10", choices=sorted(SEARCH_TASKS))
    parser.add_argument("--batch-size", type=int, help="default: the protocol's search batch size")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--budget", default="paper", help="scale the protocol first (default: paper)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps (after 2 warm-up steps)")
    parser.add_argument("--device", choices=list(DEVICES), default="auto")
    parser.add_argument("--precision", choices=list(PRECISIONS), default="fp32")
    add_memory_format_option(parser)
    parser.add_argument("--fast", action="store_true", help="cudnn autotuning and TF32, as `run --fast`")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    if args.steps < 1:
        raise UserError("--steps must be at least 1")
    method_class = catalog.get_method(args.method)
    if not issubclass(method_class, DifferentiableMethod):
        raise UserError(f"{args.method} has no differentiable supernet to profile")
    overrides = dict(parse_value_pair(text) for text in args.overrides)
    if args.batch_size is not None:
        overrides["search.batch_size"] = args.batch_size
    spec = RunSpec(
        method=args.method,
        dataset=args.dataset,
        phase="search",
        budget=args.budget,
        overrides=overrides,
        device=args.device,
        precision=args.precision,
        memory_format=args.memory_format,
        determinism=FAST if args.fast else DETERMINISTIC,
    )
    protocol = resolve_protocol(method_class, spec)
    device = choose_device(args.device)
    if args.precision == "bf16" and device.type != "cuda":
        raise UserError("--precision bf16 needs a CUDA device; use --precision fp32 on CPU")
    set_determinism(spec.determinism)
    generator = seed_everything(0, device)
    method = method_class()
    layout = memory_format_for(spec.memory_format, device)
    report = profile_search_step(method, protocol, device, generator, args.steps, args.dataset, args.precision, layout)
    report.update(
        method=args.method,
        variant=method.variant(protocol),
        dataset=args.dataset,
        budget=args.budget,
        overrides=overrides,
        precision=args.precision,
        memory_format=layout,
        determinism=spec.determinism,
        device=device.type,
        device_name=environment.device_name(device),
    )
    if args.json:
        print(json.dumps(report, sort_keys=True))
    else:
        for key in ("method", "variant", "device_name", "batch_size"):
            print(f"{key:>34}: {report[key]}")
        for stage in report["stages"]:
            cells = "" if stage["cells"] is None else f"{stage['cells']} cells, "  # the recurrent cell is one layer
            print(f"stage {stage['stage']} ({cells}ops per edge {stage['ops_per_edge']})")
            for key in (
                "step_seconds_median",
                "saved_activation_bytes",
                "saved_activation_bytes_weight_step",
                "peak_memory_bytes",
            ):
                print(f"{key:>34}: {stage[key]}")
    return 0


def saved_activation_bytes(search: BilevelSearch, batch, step: str = ARCH_STEP) -> int:
    """Bytes autograd saves in one forward pass of the α step (`step="arch"`: α and the weights
    both need gradients) or of the weight step ("weights": α weighed as a constant)."""
    search.supernet.train()
    with torch.set_grad_enabled(step == ARCH_STEP):
        arch_weights = search.method.weighting(search.arch, step)
    meter = SavedTensorMeter()
    with meter.track(), search.autocast():
        search.task.forward(search.supernet, arch_weights, batch, "train")
    return meter.peak


def stage_searches(method: DifferentiableMethod, protocol, task, autocast, device: torch.device) -> Iterator:
    """Each stage's (stage, search) as a run builds it. A later stage keeps the ops that pruning
    keeps from the previous stage's initial α: which ops survive is arbitrary, how many is the stage's."""
    stages = method.stages(protocol)
    search = method.build_search(protocol, task, autocast, device, stages[0])
    yield stages[0], search
    for following in stages[1:]:
        search = method.build_search(
            protocol, task, autocast, device, following, method.next_primitives(search, following)
        )
        yield following, search


def profile_search_step(
    method: DifferentiableMethod,
    protocol,
    device: torch.device,
    generator: torch.Generator,
    steps: int,
    dataset: str,
    precision: str,
    memory_format: str = "contiguous",
) -> dict:
    """Per stage (one for every method but P-DARTS): the median time of a full search step, the
    bytes saved for backward by each pass, and the peak memory over the timed steps. The
    top-level numbers are the stages' mean step time and their largest memory."""
    search_protocol = protocol.phase("search")
    batch = search_protocol.batch_size
    task = SEARCH_TASKS[dataset](search_protocol, memory_format)
    cuda = device.type == "cuda"

    def autocast():
        return autocast_for(precision, device)

    def synchronize():
        if cuda:
            torch.cuda.synchronize(device)

    train, valid = (task.synthetic_batch(batch, device, generator) for _ in range(2))
    measured = []
    for stage, search in stage_searches(method, search_protocol, task, autocast, device):
        arch_bytes = saved_activation_bytes(search, train, ARCH_STEP)
        weight_bytes = saved_activation_bytes(search, train, WEIGHT_STEP)
        for _ in range(2):
            search.step(train, valid, update_arch=True)
        synchronize()
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        rss_reset = reset_peak_rss()
        durations = []
        for _ in range(steps):
            start = time.perf_counter()
            search.step(train, valid, update_arch=True)
            synchronize()
            durations.append(time.perf_counter() - start)
        measured.append(
            {
                "stage": stage.index,
                "cells": stage.layers,
                "init_channels": stage.init_channels,
                "ops_per_edge": {cell: len(edges[0]) for cell, edges in search.primitives.items()},
                "step_seconds_median": statistics.median(durations),
                "step_seconds": durations,
                "saved_activation_bytes": arch_bytes,
                "saved_activation_bytes_weight_step": weight_bytes,
                "peak_memory_bytes": torch.cuda.max_memory_allocated(device) if cuda else peak_rss_bytes(),
            }
        )
        del search
    return {
        "batch_size": batch,
        "steps": steps,
        "stages": measured,
        "step_seconds_median": statistics.mean(stage["step_seconds_median"] for stage in measured),
        "saved_activation_bytes": max(stage["saved_activation_bytes"] for stage in measured),
        "saved_activation_bytes_weight_step": max(stage["saved_activation_bytes_weight_step"] for stage in measured),
        "peak_memory_bytes": max(stage["peak_memory_bytes"] for stage in measured),
        "peak_memory_kind": "cuda_max_memory_allocated"
        if cuda
        else ("process peak RSS over the timed steps" if rss_reset else "process lifetime peak RSS"),
    }
