"""Shared helpers for the grading tests."""
from __future__ import annotations

import pytest

from vmio_edu.errors import EngineUnavailable
from vmio_edu.grading import exercise
from vmio_edu.grading.model import grading_engine


@pytest.fixture(scope="session")
def model() -> str:
    """The engine model-plugged checks run on; skips when no machine can be built here."""
    engine, why = grading_engine()
    if engine is None:
        # Only a missing engine (no Unicorn, no /dev/kvm) is a reason to skip; any other failure to build
        # a machine is a bug the tests must show.
        from vmio_edu import Machine
        try:
            with Machine(op="write", sectors=1, max_exits=10, engine="unicorn"):
                pass
        except (ImportError, EngineUnavailable) as e:
            pytest.skip(f"the QEMU/Linux model cannot run a machine here: {why} ({e})")
        pytest.fail(f"no grading engine, though the emulated engine builds a machine: {why}")
    return engine


def answer_from(name: str, code: str):
    """Compile a student answer (the code of the answer cell) and return the function it defines."""
    ex = exercise(name)
    ns: dict = {"__name__": "__main__"}
    exec(compile(code, f"<answer to {name}>", "exec"), ns)
    return ns[ex.answer]


def variant(name: str, *replacements: tuple[str, str]) -> str:
    """The reference solution of `name` with textual replacements: a known-wrong answer. Each replacement
    must apply, so a changed reference cannot silently make a wrong answer right."""
    from vmio_edu.grading.notebook import without_markers
    code = without_markers(exercise(name).solution)
    for old, new in replacements:
        assert old in code, f"{name}: {old!r} is not in the reference solution any more"
        code = code.replace(old, new)
    return code


def by_part(results) -> dict:
    return {r.name: r for r in results}
