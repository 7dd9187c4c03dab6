"""What the mission covers and where each method's code lives.

Built-in methods are named here and imported lazily, so `nasbench list` stays fast and a
method whose module does not exist yet is listed as not implemented. Third-party methods
plug in through the `nasbench_repro.methods` entry-point group; tests may `register` one.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from nasbench_repro.errors import UserError

if TYPE_CHECKING:
    from nasbench_repro.method import Method

ENTRY_POINT_GROUP = "nasbench_repro.methods"


@dataclass(frozen=True)
class MethodInfo:
    name: str
    title: str
    paper: str
    headline_dataset: str
    target: str  # "module:Class"


MISSION_METHODS: tuple[MethodInfo, ...] = (
    MethodInfo("nas-rl", "NAS-RL (REINFORCE controller)", "Zoph & Le, ICLR 2017", "cifar10", "methods.nas_rl:NASRL"),
    MethodInfo("random", "Random search", "Li & Talwalkar, UAI 2019", "cifar10", "methods.random_search:RandomSearch"),
    MethodInfo("grid", "Grid search", "baseline", "cifar10", "methods.grid_search:GridSearch"),
    MethodInfo(
        "evolution",
        "Regularized evolution",
        "Real et al., AAAI 2019",
        "cifar10",
        "methods.evolution:RegularizedEvolution",
    ),
    MethodInfo("darts", "DARTS (1st and 2nd order)", "Liu et al., ICLR 2019", "cifar10", "methods.darts:DARTS"),
    MethodInfo("gdas", "GDAS", "Dong & Yang, CVPR 2019", "cifar10", "methods.gdas:GDAS"),
    MethodInfo("pcdarts", "PC-DARTS", "Xu et al., ICLR 2020", "cifar10", "methods.pcdarts:PCDARTS"),
    MethodInfo("nasp", "NASP", "Yao et al., AAAI 2020", "cifar10", "methods.nasp:NASP"),
    MethodInfo("pdarts", "P-DARTS", "Chen et al., ICCV 2019", "cifar10", "methods.pdarts:PDARTS"),
)

MISSION_DATASETS: dict[str, str] = {
    "cifar10": "CIFAR-10 (CNN cell space)",
    "imagenet": "ImageNet, mobile setting (CNN cell space)",
    "ptb": "Penn Treebank (recurrent cell space)",
    "wt2": "WikiText-2 (recurrent cell space)",
}

_registered: dict[str, type[Method]] = {}


def register(method: type[Method]) -> type[Method]:
    """Register a method class under its `name` (for tests and in-process plugins)."""
    _registered[method.name] = method
    return method


def unregister(name: str) -> None:
    _registered.pop(name, None)


def _entry_points() -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def _targets() -> dict[str, str]:
    targets = {info.name: info.target for info in MISSION_METHODS}
    targets.update(_entry_points())
    return targets


def import_target(target: str) -> Any:
    """Import "module:attribute"; None when that module (not one it imports) does not exist."""
    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name == module_name:
            return None  # not written yet
        raise
    return getattr(module, attribute, None)


def method_names() -> list[str]:
    return sorted(set(_targets()) | set(_registered))


def is_implemented(name: str) -> bool:
    return name in _registered or import_target(_targets()[name]) is not None


def get_method(name: str) -> type[Method]:
    """The method class for `name`, or a one-line UserError saying what exists."""
    if name in _registered:
        return _registered[name]
    targets = _targets()
    if name not in targets:
        raise UserError(f"unknown method {name!r}; known methods: {', '.join(method_names())} (see `nasbench list`)")
    method = import_target(targets[name])
    if method is None:
        raise UserError(f"method {name!r} is not implemented yet (see `nasbench list` for those that are)")
    return method


def method_info(name: str) -> MethodInfo | None:
    return next((info for info in MISSION_METHODS if info.name == name), None)


def headline_dataset(name: str) -> str:
    info = method_info(name)
    if info is not None:
        return info.headline_dataset
    return get_method(name).headline_dataset
