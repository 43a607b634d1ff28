"""Errors a learner can meet, each naming what went wrong and where.

The CLI prints `error: <message>` and exits non-zero for any VmioError, never a traceback.
"""
from __future__ import annotations


class VmioError(Exception):
    """Base class: a problem vmio-edu can explain."""

    exit_code = 2


class GuestFault(VmioError):
    """The guest did something a real CPU would fault on (bad opcode, triple fault, fetch from nowhere)."""

    def __init__(self, message: str, rip: int | None = None, mode: int | None = None):
        where = f" at rip={rip:#x}" if rip is not None else ""
        super().__init__(f"guest fault{where}: {message}")
        self.rip, self.mode = rip, mode


class BudgetExceeded(VmioError):
    """The guest ran past the exit or instruction budget (it probably never halts)."""


class ImageError(VmioError):
    """The disk image is missing, unreadable, read-only, or failed mid-run."""


class AssemblyError(VmioError):
    """Guest assembly did not assemble; the message names keystone's error and the line."""


class EngineUnavailable(VmioError):
    """The requested engine cannot run here (no /dev/kvm, no permission, ...)."""


class ExerciseError(VmioError):
    """Student code raised or timed out; the grader reports it and carries on."""
