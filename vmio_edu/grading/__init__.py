"""Graded, randomized exercises on the QEMU 1.6.1 / Linux 3.7 I/O path, and their checks.

Each exercise is randomized from a seed, OSTEP style: two students get different numbers, the same seed
always gives the same exercise. The answer is always a function the student writes, so it can be tried on
the student's own cases (the self-check) and on hidden ones (grading).

From a notebook:

    import vmio_edu.grading as g
    SEED = g.seed_for_user()              # or any number
    g.show_problem("exit_qual", SEED)     # the problem with your numbers
    g.self_check("exit_qual", decode_exit_qualification, SEED)   # feedback per part

The self-check tries the student's own cases only. Grading (hidden cases, the course secret, the reference
solutions) needs the instructor material, which is not in this package: `vmio-edu grade NOTEBOOK`, or
nbgrader configured with `nbgrader_autograde.use_vmio_edu_grader` (see docs/teaching.md).
"""
from __future__ import annotations

import importlib
from typing import Any

from .base import Exercise, PartResult, seed_for_user

# In the order the path is crossed: exit → KVM → kvm_run → QEMU → IDE → block → threads → completion; then
# the virtio-blk path (issue 14): the guest driver's descriptor chain, then the exits and interrupts of a batch.
EXERCISE_MODULES = ("exit_qual", "pio_exits", "kvm_run", "handle_io", "ide_write", "sectors", "threads",
                    "completion", "virtio_chain", "virtio_exits")

__all__ = ["EXERCISE_MODULES", "Exercise", "PartResult", "all_exercises", "assert_part", "autograde_part",
           "check", "exercise", "make", "problem", "seed_for_user", "self_check", "show_problem"]
SELF_CHECK_TIMEOUT = 60.0  # seconds for a whole self-check (the kernel is never blocked for longer)


def exercise(name: str) -> Exercise:
    """The exercise called `name` (one of EXERCISE_MODULES)."""
    if name not in EXERCISE_MODULES:
        raise KeyError(f"no exercise {name!r}; there are: {', '.join(EXERCISE_MODULES)}")
    return importlib.import_module(f"{__name__}.{name}").EXERCISE


def all_exercises() -> list[Exercise]:
    return [exercise(n) for n in EXERCISE_MODULES]


def make(name: str, seed: int) -> dict:
    return exercise(name).make(int(seed))


def problem(name: str, seed: int) -> str:
    ex = exercise(name)
    return ex.problem(ex.make(int(seed)))


def check(name: str, answer: Any, seed: int, parts: list[str] | None = None) -> list[PartResult]:
    """Check `answer` on the cases of `seed` (the student's own cases; hidden cases are not in this package).
    Runs in a forked copy of this process with a time limit where the platform allows, so a function that
    loops or crashes costs a message, not the kernel."""
    from .selfcheck import isolated_check
    return isolated_check(name, answer, int(seed), parts, SELF_CHECK_TIMEOUT)


def show_problem(name: str, seed: int) -> None:
    """Display the problem text (Markdown in Jupyter, plain text elsewhere)."""
    text = problem(name, seed)
    try:
        from IPython.display import Markdown, display
        display(Markdown(text))
    except ImportError:
        print(text)


def format_results(results: list[PartResult]) -> str:
    lines = []
    for r in results:
        mark = "ok " if r.full else "-- "
        lines.append(f"{mark}{r.name}: {r.points:g}/{r.max_points:g}")
        lines += ["     " + ln for ln in r.feedback.splitlines()]
    total = sum(r.points for r in results)
    lines.append(f"total {total:g}/{sum(r.max_points for r in results):g}")
    return "\n".join(lines)


def self_check(name: str, answer: Any, seed: int, parts: list[str] | None = None) -> list[PartResult]:
    """Check your function on your own cases and print feedback per part (what nbgrader will grade, minus
    the hidden cases)."""
    results = check(name, answer, seed, parts=parts)
    print(format_results(results))
    return results


def assert_part(name: str, part: str, answer: Any, seed: int) -> None:
    """The visible test of one part: raise AssertionError with the feedback unless it is right on your cases."""
    (r,) = check(name, answer, seed, parts=[part])
    if not r.full:
        raise PartFailed(f"{name}/{part}: {r.feedback}")
    print(f"{part}: ok on your cases ({r.feedback})")


class PartFailed(AssertionError):
    """A graded test cell's verdict: the message is the feedback (no traceback into the grader)."""

    def _render_traceback_(self) -> list[str]:  # IPython shows this instead of a traceback
        return [f"\x1b[31m{self.args[0]}\x1b[0m" if self.args else "failed"]


def autograde_part(name: str, part: str, answer: Any = None, seed: int | None = None) -> float:
    """The hidden test of one part, when nbgrader runs the notebook itself (without
    `use_vmio_edu_grader`): grades this notebook's file part `part` in the sandbox, with the student's
    hidden cases, and returns the points (nbgrader's partial credit). Needs the instructor material
    ($VMIO_EDU_INSTRUCTOR). The student's code has already run in this kernel, so this path is not
    tamper-proof; `use_vmio_edu_grader` is (docs/teaching.md)."""
    from .nbgrader_autograde import grade_this_notebook_part
    r = grade_this_notebook_part(name, part)
    print(f"{part}: {r.points:g}/{r.max_points:g}\n{r.feedback}")
    return float(r.points)
