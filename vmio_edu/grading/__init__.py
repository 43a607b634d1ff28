"""Graded, randomized exercises on the QEMU 1.6.1 / Linux 3.7 I/O path, and their checks.

Each exercise is randomized from a seed, OSTEP style: two students get different numbers, the same seed
always gives the same exercise. The answer is always a function the student writes, so it can be tried on
the student's own cases (the self-check) and on hidden ones (grading).

From a notebook:

    import vmio_edu.grading as g
    SEED = g.seed_for_user()              # or any number
    g.show_problem("exit_qual", SEED)     # the problem with your numbers
    g.self_check("exit_qual", decode_exit_qualification, SEED)   # feedback per part

Graders: `vmio-edu grade NOTEBOOK` (each part in a subprocess with a time and memory limit) or nbgrader,
whose hidden test cells call `autograde_part` (it returns the points, nbgrader's partial credit).
"""
from __future__ import annotations

import importlib
from typing import Any, Callable

from .base import Exercise, PartResult, seed_for_user

# In the order the path is crossed: exit → KVM → kvm_run → QEMU → IDE → block → threads → completion.
EXERCISE_MODULES = ("exit_qual", "pio_exits", "kvm_run", "handle_io", "ide_write", "sectors", "threads",
                    "completion")

__all__ = ["EXERCISE_MODULES", "Exercise", "PartResult", "all_exercises", "assert_part", "autograde_part",
           "check", "exercise", "make", "problem", "seed_for_user", "self_check", "show_problem"]


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


def check(name: str, answer: Any, seed: int, parts: list[str] | None = None,
          hidden: bool = False) -> list[PartResult]:
    ex = exercise(name)
    return ex.check(answer, ex.make(int(seed)), parts=parts, hidden=hidden)


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
    results = check(name, answer, seed, parts=parts, hidden=False)
    print(format_results(results))
    return results


def assert_part(name: str, part: str, answer: Any, seed: int) -> None:
    """The visible test of one part: raise AssertionError with the feedback unless it is right on your cases."""
    (r,) = check(name, answer, seed, parts=[part], hidden=False)
    if not r.full:
        raise AssertionError(f"{name}/{part}: {r.feedback}")
    print(f"{part}: ok on your cases ({r.feedback})")


def autograde_part(name: str, part: str, answer: Any, seed: int) -> float:
    """The hidden test of one part: your cases and the hidden ones. Prints the feedback and returns the
    points (nbgrader uses a test cell's numeric result as partial credit)."""
    (r,) = check(name, answer, seed, parts=[part], hidden=True)
    print(f"{part}: {r.points:g}/{r.max_points:g}\n{r.feedback}")
    return float(r.points)


def reference(name: str) -> Callable:
    """The reference solution of an exercise (for instructors and tests)."""
    return exercise(name).reference()
