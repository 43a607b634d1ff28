"""Trace points record entries and exits with the thread, and build gdb-style backtraces."""
import pytest

from vmio_edu.trace.backtrace import backtrace
from vmio_edu.trace.recorder import ENTER, LEAVE, Recorder
from vmio_edu.trace.sources import call_site, lookup
from vmio_edu.trace.tracepoint import ThreadContext, set_context, tracepoint


@tracepoint("qemu-ide", args=("opaque", "addr", "val"))
def ide_data_writew(opaque, addr, val):
    return ide_sector_write(opaque)


@tracepoint("qemu-ide", args=("s",))
def ide_sector_write(s):
    return s["bt"]()


@tracepoint("qemu-block", args=("sector_num", "nb_sectors"))
def bdrv_co_do_rw(bs, sector_num, nb_sectors):
    got = yield "suspended"
    return got * 2


def test_no_context_means_plain_call():
    set_context(None)
    assert ide_data_writew({"bt": lambda: 7}, 496, 0x1234) == 7


def test_recorder_and_backtrace_lines():
    rec = Recorder()
    ctx = ThreadContext("vcpu0", hooks=rec)
    set_context(ctx)
    try:
        frames = ide_data_writew({"bt": lambda: backtrace(ctx.stack, ctx.name)}, 496, 0xBEEF)
    finally:
        set_context(None)
    assert [f.function for f in frames] == ["ide_sector_write", "ide_data_writew"]
    # Every real parameter; the same object shows the same address in both frames, as in gdb.
    opaque = frames[1].args["opaque"]
    assert frames[1].args == {"opaque": opaque, "addr": 496, "val": 0xBEEF}
    assert frames[0].args == {"s": opaque} and opaque.startswith("0x5555")
    # The caller's frame is shown at its call into ide_sector_write (core.c:1907 at v1.6.1); the innermost
    # at the first statement after the prologue (core.c:783), not at the declaration (778).
    assert frames[1].line == call_site("qemu", "ide_data_writew", "ide_sector_write") == 1907
    assert lookup("qemu", "ide_sector_write").line == 778
    assert frames[0].line == lookup("qemu", "ide_sector_write").stop_line == 783
    assert frames[0].file == "hw/ide/core.c" and frames[0].thread == "vcpu0"
    kinds = [(e[0], e[2]) for e in rec.events]
    assert kinds == [(ENTER, "vcpu0"), (ENTER, "vcpu0"), (LEAVE, "vcpu0"), (LEAVE, "vcpu0")]
    assert ctx.stack == []


def test_generator_frames_survive_a_yield_and_pop_on_return():
    rec = Recorder()
    co_stack = []
    ctx = ThreadContext("vcpu0", hooks=rec)
    ctx.stack = co_stack  # as qemu_coroutine_enter swaps in the coroutine's stack
    set_context(ctx)
    try:
        gen = bdrv_co_do_rw(None, 2, 1)
        assert next(gen) == "suspended"
        assert [f.tp.name for f in co_stack] == ["bdrv_co_do_rw"]
        ctx2 = ThreadContext("main", hooks=rec)  # resumed on another thread
        ctx2.stack = co_stack
        set_context(ctx2)
        with pytest.raises(StopIteration) as stop:
            gen.send(21)
        assert stop.value.value == 42
        assert co_stack == []
        assert rec.events[-1][0] == LEAVE and rec.events[-1][2] == "main"
    finally:
        set_context(None)


def test_exception_pops_frame():
    rec = Recorder()
    ctx = ThreadContext("vcpu0", hooks=rec)
    set_context(ctx)
    try:
        def boom():
            raise KeyError("x")
        with pytest.raises(KeyError):
            ide_data_writew({"bt": boom}, 496, 1)
        assert ctx.stack == []
        assert sum(1 for e in rec.events if e[0] == LEAVE) == 2
    finally:
        set_context(None)
