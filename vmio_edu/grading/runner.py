"""Grade one submitted notebook, part by part, each part in its own subprocess with limits.

Every part gets a fresh interpreter (`vmio_edu.grading.worker`): the student's code cells run there, then
the part's check. A time limit (wall clock, the whole process group is killed), a memory limit
(RLIMIT_AS) and no core dumps. Code that raises, crashes the interpreter or loops scores zero for that part
with a message saying so, and grading carries on with the next part.

This isolates mistakes, not malice: the student's code runs as the grader's user (run the grader in a
container or as a separate user for untrusted submissions, as with nbgrader).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

from .base import PartResult, seed_for_user
from .notebook import NotebookError, exercise_name, load_notebook, student_code, submitted_seed

DEFAULT_TIMEOUT = 60.0
DEFAULT_MEMORY_MB = 2048  # address space: a process with a few emulated machines peaks near 0.5 GiB
LOG_TAIL = 600


@dataclass
class GradeReport:
    notebook: str
    exercise: str
    seed: int
    seed_source: str
    parts: list[PartResult]
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> float:
        return sum(p.points for p in self.parts)

    @property
    def max_total(self) -> float:
        return sum(p.max_points for p in self.parts)

    def to_json(self) -> dict:
        return {"notebook": self.notebook, "exercise": self.exercise, "seed": self.seed,
                "seed_source": self.seed_source, "parts": [p.to_json() for p in self.parts],
                "total": self.total, "max_total": self.max_total, "notes": self.notes}

    def text(self) -> str:
        out = [f"vmio-edu grade: {self.notebook}",
               f"exercise {self.exercise}, seed {self.seed} ({self.seed_source})", ""]
        for p in self.parts:
            out.append(f"  {p.name:<14} {p.points:g}/{p.max_points:g}")
            out += [f"      {ln}" for ln in p.feedback.splitlines()]
        out += ["", f"total {self.total:g}/{self.max_total:g}"]
        out += [f"note: {n}" for n in self.notes]
        return "\n".join(out)


def _limits(memory_mb: int):
    def apply() -> None:
        import resource
        os.setsid()  # its own process group: a time-out kills every thread and child it made
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if memory_mb:
            limit = memory_mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return apply


def _tail(path: str) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - LOG_TAIL))
            return f.read().decode("utf-8", "replace").strip()
    except OSError:
        return ""


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError:
        return ""


def run_part(exercise: str, part: str, max_points: float, cells: list[tuple[int, str]], seed: int,
             timeout: float = DEFAULT_TIMEOUT, memory_mb: int = DEFAULT_MEMORY_MB,
             hidden: bool = True) -> tuple[PartResult, list[str]]:
    """Grade one part in a fresh subprocess. Returns the result and the errors raised by notebook cells."""
    with tempfile.TemporaryDirectory(prefix="vmio-grade-") as tmp:
        job = {"exercise": exercise, "part": part, "seed": seed, "cells": cells, "hidden": hidden,
               "result": os.path.join(tmp, "result.json"), "status": os.path.join(tmp, "status"),
               "log": os.path.join(tmp, "log")}
        job_path = os.path.join(tmp, "job.json")
        with open(job_path, "w", encoding="utf-8") as f:
            json.dump(job, f)
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", MPLBACKEND="Agg")
        proc = subprocess.Popen([sys.executable, "-m", "vmio_edu.grading.worker", job_path],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                preexec_fn=_limits(memory_mb), env=env, cwd=tmp)
        start = time.monotonic()
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill(proc)
            status = _read(job["status"]) or "starting the grader"
            return PartResult(part, 0, max_points, f"time limit: stopped after {timeout:g} s while {status} "
                              "(an endless loop? a wait that never ends?)"), []
        _kill(proc)  # leftovers of the group (threads are gone with the process; children may not be)
        raw = _read(job["result"])
        if raw:
            try:
                data = json.loads(raw)
                (r,) = [PartResult(**d) for d in data["results"]]
                return r, list(data.get("cell_errors", []))
            except (ValueError, TypeError, KeyError):
                pass
        elapsed = time.monotonic() - start
        status = _read(job["status"]) or "starting the grader"
        if code < 0:
            try:
                how = f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"was killed by signal {-code}"
        else:
            how = f"exited with status {code}"
        log = _tail(job["log"])
        hint = " (out of memory?)" if "MemoryError" in log else ""
        msg = f"the Python process running your code {how}{hint} after {elapsed:.1f} s, while {status}"
        if log:
            msg += f"; its last output:\n{log}"
        return PartResult(part, 0, max_points, msg), []


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def _nbgrader_student(path: str) -> str | None:
    """The student id in an nbgrader course path: .../submitted/<student>/<assignment>/<notebook>.ipynb."""
    parts = os.path.normpath(os.path.abspath(path)).split(os.sep)
    if len(parts) >= 4 and parts[-4] in ("submitted", "autograded", "feedback"):
        return parts[-3] or None
    return None


def grade_notebook(path: str, seed: int | None = None, timeout: float = DEFAULT_TIMEOUT,
                   memory_mb: int = DEFAULT_MEMORY_MB, parts: list[str] | None = None) -> GradeReport:
    """Grade a submitted exercise notebook. Raises NotebookError for a notebook it cannot grade at all."""
    from . import EXERCISE_MODULES, exercise

    nb = load_notebook(path)
    name = exercise_name(nb)
    if name is None:
        raise NotebookError(f"{path!r} is not a vmio-edu exercise (no vmio_edu.exercise in its metadata and no "
                            "known nbgrader grade_id)")
    if name not in EXERCISE_MODULES:
        raise NotebookError(f"{path!r} is exercise {name!r}, which this vmio-edu does not know "
                            f"(known: {', '.join(EXERCISE_MODULES)})")
    ex = exercise(name)
    if seed is not None:
        source = "given on the command line"
    else:
        seed, source = submitted_seed(nb)
        student = _nbgrader_student(path)
        if seed is None and student:
            seed, source = seed_for_user(student), f"from the nbgrader student id {student!r}"
        if seed is None:
            seed, source = seed_for_user(), "not found in the notebook: the grader's own default"
    wanted = ex.part_names if parts is None else parts
    for p in wanted:
        ex.part(p)  # KeyError for an unknown part
    cells = student_code(nb)
    notes: list[str] = []
    if not cells:
        notes.append("the notebook has no answer cell: every part scores zero")
    results, cell_errors = [], []
    for p in wanted:
        r, errs = run_part(name, p, ex.part(p).points, cells, int(seed), timeout, memory_mb)
        results.append(r)
        cell_errors = cell_errors or errs
    notes += [f"while running the notebook, {e}" for e in cell_errors[:3]]
    return GradeReport(path, name, int(seed), source, results, notes)
