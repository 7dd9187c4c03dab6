"""`nasbench profile METHOD`: speed and memory of one search step, side by side across methods.

Builds the method's search supernet from its protocol (after `--budget` and `--set`), feeds
synthetic inputs of the dataset's shape on the chosen device, and reports the median time
of a full search step (architecture step plus weight step), the bytes autograd saves for
backward in one forward pass, and the peak memory over the timed steps.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from nasbench_repro import catalog, environment
from nasbench_repro.commands.run import parse_value_pair
from nasbench_repro.context import autocast_for
from nasbench_repro.differentiable import DifferentiableMethod
from nasbench_repro.errors import UserError
from nasbench_repro.meters import SavedTensorMeter, peak_rss_bytes, reset_peak_rss
from nasbench_repro.runner import choose_device, resolve_protocol
from nasbench_repro.seeding import DETERMINISTIC, FAST, seed_everything, set_determinism
from nasbench_repro.spec import DEVICES, PRECISIONS, RunSpec

# Input shape and classes of each image dataset's search (no data is read: inputs are synthetic).
SEARCH_INPUTS = {"cifar10": ((3, 32, 32), 10), "imagenet": ((3, 224, 224), 1000)}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("profile", help="time and memory of one search step on synthetic input")
    parser.add_argument("method", metavar="METHOD")
    parser.add_argument("--dataset", default="cifar10", choices=sorted(SEARCH_INPUTS))
    parser.add_argument("--batch-size", type=int, help="default: the protocol's search batch size")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--budget", default="paper", help="scale the protocol first (default: paper)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps (after 2 warm-up steps)")
    parser.add_argument("--device", choices=list(DEVICES), default="auto")
    parser.add_argument("--precision", choices=list(PRECISIONS), default="fp32")
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
    spec = RunSpec(method=args.method, dataset=args.dataset, phase="search", budget=args.budget,
                   overrides=overrides, device=args.device, precision=args.precision,
                   determinism=FAST if args.fast else DETERMINISTIC)
    protocol = resolve_protocol(method_class, spec)
    device = choose_device(args.device)
    if args.precision == "bf16" and device.type != "cuda":
        raise UserError("--precision bf16 needs a CUDA device; use --precision fp32 on CPU")
    set_determinism(spec.determinism)
    generator = seed_everything(0, device)
    method = method_class()
    report = profile_search_step(method, protocol, device, generator, args.steps, args.dataset, args.precision)
    report.update(method=args.method, variant=method.variant(protocol), dataset=args.dataset, budget=args.budget,
                  overrides=overrides, precision=args.precision, determinism=spec.determinism,
                  device=device.type, device_name=environment.device_name(device))
    if args.json:
        print(json.dumps(report, sort_keys=True))
    else:
        for key in ("method", "variant", "device_name", "batch_size", "step_seconds_median",
                    "saved_activation_bytes", "peak_memory_bytes"):
            print(f"{key:>22}: {report[key]}")
    return 0


def saved_activation_bytes(search, images: torch.Tensor, autocast) -> int:
    """Bytes autograd saves in one forward pass that trains α (weights and α both need gradients:
    the most memory-hungry pass of a search step)."""
    search.supernet.train()
    meter = SavedTensorMeter()
    with meter.track(), autocast():
        search.supernet(images, search.weighting(search.arch))
    return meter.peak


def profile_search_step(method: DifferentiableMethod, protocol, device: torch.device, generator: torch.Generator,
                        steps: int, dataset: str, precision: str) -> dict:
    search_protocol = protocol.phase("search")
    shape, classes = SEARCH_INPUTS[dataset]
    batch = search_protocol.batch_size

    def autocast():
        return autocast_for(precision, device)

    search = method.build_search(search_protocol, classes, shape, autocast, device)

    def synthetic_batch():
        images = torch.randn(batch, *shape, device=device, generator=generator)
        labels = torch.randint(0, classes, (batch,), device=device, generator=generator)
        return images, labels

    train, valid = synthetic_batch(), synthetic_batch()
    saved_bytes = saved_activation_bytes(search, train[0], autocast)

    def synchronize():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(2):
        search.step(train, valid, update_arch=True)
    synchronize()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rss_reset = reset_peak_rss()
    durations = []
    for _ in range(steps):
        start = time.perf_counter()
        search.step(train, valid, update_arch=True)
        synchronize()
        durations.append(time.perf_counter() - start)
    cuda = device.type == "cuda"
    return {
        "batch_size": batch,
        "steps": steps,
        "step_seconds_median": statistics.median(durations),
        "step_seconds": durations,
        "saved_activation_bytes": saved_bytes,
        "peak_memory_bytes": torch.cuda.max_memory_allocated(device) if cuda else peak_rss_bytes(),
        "peak_memory_kind": "cuda_max_memory_allocated" if cuda else
        ("process peak RSS over the timed steps" if rss_reset else "process lifetime peak RSS"),
    }
