"""Shared helpers for the grading tests: the instructor material and a course secret are configured here,
as an instructor would in the grader's environment."""
from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INSTRUCTOR = ROOT / "instructor"
SECRET = "tests-course-secret-7f3a9c1e5b"
os.environ["VMIO_EDU_INSTRUCTOR"] = str(INSTRUCTOR)
os.environ["VMIO_EDU_COURSE_SECRET"] = SECRET
sys.path.insert(0, str(INSTRUCTOR))  # the tests play the instructor: reference() and the oracles

from vmio_edu.grading import exercise  # noqa: E402
from vmio_edu.grading.course import hidden_seed  # noqa: E402
from vmio_edu.grading.model import grading_engine  # noqa: E402
import vmio_edu_instructor as material  # noqa: E402


@pytest.fixture(scope="session")
def model() -> str:
    """The engine model-plugged checks run on; skips when no machine can be built here."""
    engine, why = grading_engine()
    if engine is None:
        pytest.skip(f"the QEMU/Linux model cannot run a machine here: {why}")
    return engine


def reference(name: str):
    return material.reference(name)


def answer_from(name: str, code: str):
    """Compile a student answer (the code of the answer cell) and return the function it defines."""
    ex = exercise(name)
    ns: dict = {"__name__": "__main__"}
    exec(compile(code, f"<answer to {name}>", "exec"), ns)
    return ns[ex.answer]


def solution_code(name: str) -> str:
    from vmio_edu.grading.notebook import without_markers
    return without_markers(material.solution(name))


def variant(name: str, *replacements: tuple[str, str]) -> str:
    """The reference solution of `name` with textual replacements: a known-wrong answer. Each replacement
    must apply, so a changed reference cannot silently make a wrong answer right."""
    code = solution_code(name)
    for old, new in replacements:
        assert old in code, f"{name}: {old!r} is not in the reference solution any more"
        code = code.replace(old, new)
    return code


def graded_params(name: str, seed: int, student: str | None = None) -> tuple[dict, list]:
    """What the grader judges for one student: the visible cases of `seed` (completed by the instructor
    material) and the hidden cases of that student under the tests' course secret."""
    ex = exercise(name)
    params = material.complete(name, ex.make(seed))
    r = random.Random(hidden_seed(SECRET.encode(), name, student or f"student-{seed}"))
    return params, material.hidden_cases(name, r, params)


def graded(name: str, fn, seed: int, parts=None, hidden: bool = True) -> dict:
    """Check `fn` (in this process) as the grader does: visible + hidden cases; results by part."""
    ex = exercise(name)
    params, hid = graded_params(name, seed)
    return by_part(ex.check(fn, params, parts=parts, hidden=hid if hidden else None))


def by_part(results) -> dict:
    return {r.name: r for r in results}
