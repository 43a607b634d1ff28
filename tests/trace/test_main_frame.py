"""The main thread's backtrace ends in `main`, as in gdb: QEMU 10.2's system/main.c main calls
qemu_default_main(NULL) (main.c:93), QEMU 1.6.1's vl.c main calls main_loop() (vl.c:4431). `main` is no
trace point (vmio_edu.machine is QEMU's start-up); its frame comes from the source map."""
import pytest

from vmio_edu import Machine
from vmio_edu.trace.sources import call_site, lookup

CASES = {  # stack: (a function the main thread runs, the frames it ends in)
    "10.2": ("thread_pool_completion_bh",
             [("qemu_main_loop", "system/runstate.c", 903, {}),
              ("qemu_default_main", "system/main.c", 50, {"opaque": "0x0"}),
              ("main", "system/main.c", 93, {"argc": 5, "argv": "0x7fffffffe2d8"})]),
    "1.6.1": ("bdrv_co_em_bh",
              [("main_loop_wait", "main-loop.c", 465, None),
               ("main_loop", "vl.c", 2089, {}),
               ("main", "vl.c", 4431, {"argc": 4, "argv": "0x7fffffffe2d8", "envp": "0x7fffffffe300"})]),
}


def _stop(stack, function, engine="unicorn"):
    m = Machine(op="write", lba=2, sectors=1, stack=stack, engine=engine)
    dbg = m.debugger()
    dbg.break_at(function)
    return m, dbg.cont()


@pytest.mark.parametrize("stack", sorted(CASES))
def test_the_main_thread_ends_in_main(stack):
    function, tail = CASES[stack]
    m, stop = _stop(stack, function)
    with m:
        assert stop.function == function and stop.thread == "main"
        bt = stop.backtrace
        got = [(f.function, f.file, f.line, f.args) for f in bt[-len(tail):]]
        assert [g[:3] for g in got] == [t[:3] for t in tail]
        for g, t in zip(got, tail):
            if t[3] is not None:
                assert g[3] == t[3], g
        assert [f.level for f in bt] == list(range(len(bt)))
        assert bt[-1].thread == "main" and bt[-1].stack == stack
        assert "main (argc=" in str(bt[-1]) and str(bt[-1]).endswith(f"at {tail[-1][1]}:{tail[-1][2]}")


@pytest.mark.parametrize("stack", sorted(CASES))
def test_only_the_main_thread_gets_main(stack):
    m, stop = _stop(stack, "ide_sector_write")  # the vCPU thread
    with m:
        assert stop.thread == "vcpu0"
        assert "main" not in [f.function for f in stop.backtrace]
    m, stop = _stop(stack, "handle_aiocb_rw" if stack == "10.2" else "aio_worker")  # a pool worker
    with m:
        assert stop.thread.startswith("worker")
        assert "main" not in [f.function for f in stop.backtrace]


def test_mains_lines_are_read_from_the_tags():
    new, old = lookup("qemu", "main", "10.2"), lookup("qemu", "main")
    assert (new.file, new.line, new.stop_line, new.params) == ("system/main.c", 69, 71, ("argc", "argv"))
    assert call_site("qemu", "main", "qemu_default_main", "10.2") == 93
    assert (old.file, old.line, old.params) == ("vl.c", 2894, ("argc", "argv", "envp"))
    assert call_site("qemu", "main", "main_loop") == 4431
