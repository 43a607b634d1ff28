"""Shared pieces of the benchmark: the workload sizes, percentiles, and what machine ran it."""
from __future__ import annotations


import os
import platform
import subprocess
from typing import Callable


SECTOR_WORDS = 256
FULL = {"sectors": 64, "rounds": 3, "limit_reps": 4, "steps": 2000, "back": ((10_000, 20), (100_000, 10)),
        "back_sectors": 64, "tracemalloc_sectors": 8, "rss_events": 1_000_000, "kvm_back_calls": 5}
QUICK = {"sectors": 4, "rounds": 1, "limit_reps": 2, "steps": 200, "back": ((10_000, 3),),
         "back_sectors": 4, "tracemalloc_sectors": 1, "rss_events": None, "kvm_back_calls": 0}
CASES = ("nothing", "recording", "debugger")
OPS = ("write", "read")
ENGINES = ("unicorn", "kvm")
LIMIT_PORT = 0x1F0
LIMIT_BUF = 0x10000  # guest-physical address of the words the limit guest sends


Progress = Callable[[str], None]


def _pct(xs: list[float], p: float) -> float:
    """The p-th percentile (0..100) of xs, linearly interpolated between the closest ranks."""
    s = sorted(xs)
    if not s:
        raise ValueError("no samples")
    k = (len(s) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def _latency(samples_s: list[float]) -> dict:
    ms = [x * 1e3 for x in samples_s]
    return {"n": len(ms), "p50_ms": _pct(ms, 50), "p95_ms": _pct(ms, 95), "max_ms": max(ms),
            "mean_ms": sum(ms) / len(ms)}


def _rate(count: int, seconds: float) -> dict:
    return {"count": count, "seconds": seconds, "per_s": count / seconds}


def skipped(reason: str) -> dict:
    """A measure that was not taken, and why."""
    return {"status": "skipped", "reason": reason}


def machine_info() -> dict:
    """The machine and software the figures come from."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        from importlib.metadata import version
        uc_version = version("unicorn")
    except Exception:  # noqa: BLE001 - reported, not needed
        uc_version = "unavailable"
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    return {"cpu": cpu, "nproc": usable, "python": platform.python_version(), "unicorn": uc_version,
            "kernel": platform.release(),
            "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "commit": _git_commit()}


def _git_commit() -> str | None:
    """The checkout's commit, with "+dirty" when the tree has uncommitted changes; None outside git."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        head = subprocess.run(["git", "-C", here, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", here, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0 or not head.stdout.strip():
        return None
    return head.stdout.strip() + ("+dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")


def kvm_status() -> str | None:
    """None if /dev/kvm can be opened and speaks API 12, else the reason it cannot be used."""
    from ..errors import EngineUnavailable
    try:
        from ..kvm.device import open_real_kvm
        open_real_kvm(None).close()
    except EngineUnavailable as e:
        return str(e)
    except Exception as e:  # noqa: BLE001 - any other failure is also a reason to skip
        return f"{type(e).__name__}: {e}"
    return None
