"""Where a run happened: device, library versions, code version. Stored in every record."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import torch

import nasbench_repro

SOURCE_ROOT = Path(nasbench_repro.__file__).resolve().parent.parent


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU: {cpu_name()} ({torch.get_num_threads()} threads)"


def git_state() -> tuple[str | None, bool | None]:
    """The commit of the harness source and whether the work tree differs from it."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(SOURCE_ROOT), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return None, None
    status = git("status", "--porcelain", "--untracked-files=no")
    return commit, bool(status)


def describe(device: torch.device, device_count: int) -> dict:
    commit, dirty = git_state()
    return {
        "device": device.type,
        "device_name": device_name(device),
        "device_count": device_count,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "harness_version": nasbench_repro.__version__,
        "git_commit": commit,
        "git_dirty": dirty,
        "argv": sys.argv,
    }
