"""Fixtures for the debugger tests: each test runs on the emulated engine and, where /dev/kvm opens, on
real KVM."""
import pytest

from vmio_edu import Machine


@pytest.fixture
def make(engine):
    """make(**machine_kwargs) -> (machine, debugger) on the test's engine; closed afterwards."""
    made = []

    def _make(**kw):
        kw.setdefault("op", "write")
        kw.setdefault("lba", 3)
        m = Machine(engine=engine, **kw)
        made.append(m)
        return m, m.debugger()

    yield _make
    for m in made:
        m.close()
