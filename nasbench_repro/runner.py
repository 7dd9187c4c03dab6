"""The one runner: turns a RunSpec into a stored record.

It owns seeding, determinism, device and precision, per-phase timing and memory, the run
directory with checkpoints (outside results/), resume, and the atomic record write.
Methods see none of this beyond the `Context` they are handed.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nasbench_repro import catalog, environment, interrupts
from nasbench_repro.atomic import write_json, write_with
from nasbench_repro.budgets import get_budget
from nasbench_repro.context import Context, PhaseResult, memory_format_for
from nasbench_repro.data import SEARCH_REFUSALS, DataRequest, DataSource, cell_kind, resolve
from nasbench_repro.errors import RunFailure, UserError
from nasbench_repro.executors import DEFAULT_EXECUTOR, ExecutorChoice
from nasbench_repro.meters import PhaseMeter
from nasbench_repro.method import Method
from nasbench_repro.protocol import Protocol, apply_overrides, check_domains, load_protocol
from nasbench_repro.records import SCHEMA_VERSION, finite_or_none, write_record
from nasbench_repro.seeding import restore_rng_state, rng_state, seed_everything, set_determinism
from nasbench_repro.spec import RunSpec, new_run_id, utc_now

log = logging.getLogger("nasbench_repro")


@dataclass
class RunOutcome:
    record_path: Path
    status: str
    reason: str | None
    run_id: str


@dataclass(frozen=True)
class Paths:
    results_dir: Path = Path("results")
    runs_dir: Path = Path("runs")
    data_root: Path = Path("data")


def choose_device(request: str) -> torch.device:
    if request == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if request == "cuda":
        raise UserError("--device cuda asked for, but no CUDA device is visible; use --device cpu or auto")
    return torch.device("cpu")


def refuse_unsupported_search(method: type[Method], spec: RunSpec) -> None:
    """One line, before anything else, for a search on a dataset no paper searches on, or of a
    cell space the method does not search (with the method's reason where it gives one)."""
    if "search" not in spec.phases:
        return
    if spec.dataset in SEARCH_REFUSALS:
        raise UserError(f"no search on {spec.dataset}: {SEARCH_REFUSALS[spec.dataset]}")
    kind = cell_kind(spec.dataset)
    if (kind, spec.variant) in method.variant_refusals:
        raise UserError(
            f"{spec.method} {spec.variant or 'default'} protocol cannot search {spec.dataset}: "
            f"{method.variant_refusals[kind, spec.variant]}"
        )
    if kind in method.search_kinds:
        return
    if kind in method.search_refusals:
        raise UserError(
            f"{spec.method} does not search the {kind.upper()} cell space of {spec.dataset}: "
            f"{method.search_refusals[kind]}"
        )
    raise UserError(
        f"{spec.method} cannot search the {kind.upper()} cell space of {spec.dataset} yet (it searches "
        f"{', '.join(k.upper() for k in method.search_kinds)} cells); train a given cell with "
        f"--phase evaluate --genotype NAME"
    )


def resolve_protocol(method: type[Method], spec: RunSpec) -> Protocol:
    """The paper protocol for the dataset, scaled by the budget, then the user's overrides;
    every value checked against its domain before anything runs (and first, a search no paper
    describes refused)."""
    refuse_unsupported_search(method, spec)
    protocol = load_protocol(spec.method, spec.dataset, method.config_file, spec.variant)
    missing = [phase for phase in spec.phases if phase not in protocol.phases]
    if missing:
        raise UserError(
            f"{spec.method} has no {missing[0]} protocol for {spec.dataset} "
            f"(it has: {', '.join(protocol.phases)}); choose another --phase or dataset"
        )
    get_budget(spec.budget).apply(protocol)
    apply_overrides(protocol, spec.overrides, spec.phases)
    check_domains(protocol, method.protocol_domains, method.config_file)
    return protocol


class RunDirectory:
    """`runs/<run_id>/`: the spec, per-phase checkpoints and finished-phase results, a log."""

    def __init__(self, root: Path):
        self.root = root

    @property
    def spec_file(self) -> Path:
        return self.root / "run.json"

    def checkpoint(self, phase: str) -> Path:
        return self.root / f"checkpoint-{phase}.pt"

    def phase_file(self, phase: str) -> Path:
        return self.root / f"phase-{phase}.json"

    def rng_file(self, phase: str) -> Path:
        return self.root / f"rng-after-{phase}.pt"

    def finished(self, phase: str) -> dict | None:
        path = self.phase_file(phase)
        return json.loads(path.read_text()) if path.exists() else None


@contextmanager
def _run_logging(path: Path) -> Iterator[None]:
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield
    finally:
        log.removeHandler(handler)
        handler.close()


def execute(
    spec: RunSpec | None = None,
    paths: Paths = Paths(),
    resume: str | None = None,
    notify=lambda line: print(line, file=sys.stderr),
    executor: ExecutorChoice = DEFAULT_EXECUTOR,
) -> RunOutcome:
    """Run (or resume) one spec to a record. User errors before the start raise UserError.
    `executor` says where methods that evaluate candidates in parallel run them (a resumed
    run may use another: it changes no result)."""
    if resume is not None:
        run_dir = RunDirectory(paths.runs_dir / resume)
        if not run_dir.spec_file.exists():
            raise UserError(f"no run {resume!r} under {paths.runs_dir} to resume (looked for {run_dir.spec_file})")
        stored = json.loads(run_dir.spec_file.read_text())
        stored_spec = RunSpec.from_dict(stored["spec"])
        if spec is not None and (spec.method, spec.dataset) != (stored_spec.method, stored_spec.dataset):
            raise UserError(
                f"run {resume} is {stored_spec.method} on {stored_spec.dataset}, not {spec.method} on {spec.dataset}"
            )
        spec, run_id, started = stored_spec, resume, stored["started_utc"]
    elif spec is None:
        raise ValueError("execute() needs a spec or a run to resume")

    method_class = catalog.get_method(spec.method)
    protocol = resolve_protocol(method_class, spec)
    kind = cell_kind(spec.dataset)
    device = choose_device(spec.device)
    if spec.precision == "bf16" and device.type != "cuda":
        raise UserError("--precision bf16 needs a CUDA device; use --precision fp32 on CPU")
    request = DataRequest(spec.dataset, paths.data_root, spec.budget, spec.allow_unofficial_data)
    source = resolve(request)
    method = method_class()
    genotype = method.load_genotype(spec.genotype, kind) if spec.genotype else None
    for line in source.notices:  # after every check of the input, so bad input stays one line
        notify(line)
    # an evaluation-only run is about the cell it was given, not the search settings
    variant = method.variant(protocol) if "search" in spec.phases else "given cell"

    if resume is None:
        run_id, started = new_run_id(spec, source.name), utc_now()
        run_dir = RunDirectory(paths.runs_dir / run_id)  # write_json creates the folder
        write_json(run_dir.spec_file, {"spec": spec.to_dict(), "run_id": run_id, "started_utc": started})
    notify(
        f"{'resuming' if resume else 'run'} {run_id}: {spec.method} on {source.name}, budget {spec.budget}, "
        f"seed {spec.seed}, {device.type}; checkpoints in {run_dir.root}"
    )

    plan = RunPlan(
        spec, run_id, started, method, variant, protocol, device, source, run_dir, paths.results_dir, request, executor
    )
    with _run_logging(run_dir.root / "run.log"):
        return _run(plan, genotype)


@dataclass
class RunPlan:
    """Everything resolved before a run starts; nothing here changes while it runs."""

    spec: RunSpec
    run_id: str
    started: str
    method: Method
    variant: str
    protocol: Protocol
    device: torch.device
    source: DataSource
    run_dir: RunDirectory
    results_dir: Path
    request: DataRequest
    executor: ExecutorChoice


def _run(plan: RunPlan, genotype: Any) -> RunOutcome:
    spec, device = plan.spec, plan.device
    determinism = set_determinism(spec.determinism)
    generator = seed_everything(spec.seed, device)
    data_cache: dict[str, Any] = {}

    def load_data() -> Any:
        if "data" not in data_cache:
            data_cache["data"] = plan.source.load(device, generator)
        return data_cache["data"]

    record: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "run_id": plan.run_id,
        "spec": spec.to_dict(),
        "variant": plan.variant,
        "dataset": plan.source.name,
        "budget": spec.budget,
        "protocol": plan.protocol.describe(),
        "data": plan.source.description,
        "genotype": genotype.to_dict() if genotype is not None else None,
        "metrics": {},
        "cost": {},
        "curves": {},
        "environment": {
            **environment.describe(device, 1),
            "determinism": determinism,
            "precision": spec.precision,
            "memory_format": memory_format_for(spec.memory_format, device),
            "executor": plan.executor.describe(),
        },
        "started_utc": plan.started,
        "status": "interrupted",
        "reason": None,
    }
    outcome_error: BaseException | None = None
    try:
        with interrupts.stop_on_signals():
            for phase in spec.phases:
                result = _phase(plan, phase, generator, load_data, genotype, record)
                if result.genotype is not None:
                    genotype = result.genotype
        record["status"] = "complete"
    except KeyboardInterrupt:
        record["reason"] = "interrupted by the user or a signal; resume with --resume " + plan.run_id
    except RunFailure as error:
        record["status"], record["reason"] = "failed", str(error)
    except UserError as error:
        record["status"], record["reason"] = "failed", str(error)
        outcome_error = error
    except Exception as error:  # a bug: record it, then show the traceback
        record["status"], record["reason"] = "failed", f"{type(error).__name__}: {error}"
        outcome_error = error
    finally:
        record["ended_utc"] = utc_now()
        path = write_record(plan.results_dir, record)
        log.info("record %s (%s)", path, record["status"])
    if outcome_error is not None:
        raise outcome_error
    return RunOutcome(path, record["status"], record["reason"], plan.run_id)


def _phase(
    plan: RunPlan, phase: str, generator: torch.Generator, load_data: Callable[[], Any], genotype: Any, record: dict
) -> PhaseResult:
    """Run one phase, or reload it when an earlier attempt finished it, and fold it into the record.

    A finished phase also stores the random streams as they were at its end, so the next phase
    starts from the same state whether or not the run was interrupted in between.
    """
    run_dir, method = plan.run_dir, plan.method
    done = run_dir.finished(phase)
    if done is None:
        meter = PhaseMeter(plan.device)
        ctx = Context(
            spec=plan.spec,
            phase=phase,
            protocol=plan.protocol.phase(phase),
            device=plan.device,
            generator=generator,
            meter=meter,
            checkpoint_path=run_dir.checkpoint(phase),
            data_factory=load_data,
            data_request=plan.request,
            executor=plan.executor,
        )
        log.info("phase %s starts", phase)
        try:
            with meter:
                result = method.search(ctx) if phase == "search" else method.evaluate(genotype, ctx)
        finally:
            record["curves"][phase] = ctx.curves
            record["cost"][phase] = {**meter.summary(), "resumed_from_epoch": ctx.resumed_from_epoch}
        done = {
            "metrics": result.metrics,
            "genotype": result.genotype.to_dict() if result.genotype is not None else None,
            "curves": ctx.curves,
            "cost": record["cost"][phase],
        }
        state = rng_state(generator)
        write_with(run_dir.rng_file(phase), lambda handle: torch.save(state, handle))
        write_json(run_dir.phase_file(phase), finite_or_none(done))
        log.info("phase %s done: %s", phase, result.metrics)
    else:
        restore_rng_state(torch.load(run_dir.rng_file(phase), weights_only=True), generator)
        result = PhaseResult(done["metrics"], method.load_genotype(done["genotype"]) if done["genotype"] else None)
    record["curves"][phase] = done["curves"]
    record["cost"][phase] = done["cost"]
    record["metrics"].update(done["metrics"])
    if done["genotype"] is not None:
        record["genotype"] = done["genotype"]
    return result
