"""Time travel on the QEMU 10.2 stack: a state reached by goto()/back() (restored from a checkpoint taken at
a quiescent KVM_RUN entry, then replayed) equals the state reached going forwards, including inside the
coroutine, in the pool worker and in the main loop's completion."""
import json

from vmio_edu import Machine
from vmio_edu.trace.recorder import ENTER, LEAVE
from vmio_edu.trace.tracepoint import REGISTRY

KEY_POINTS = [(ENTER, "raw_co_prw"), (ENTER, "handle_aiocb_rw"), (LEAVE, "sys_pwrite64"),
              (ENTER, "thread_pool_completion_bh"), (ENTER, "ide_sector_write_cb"), (ENTER, "qemu_coroutine_yield"),
              (LEAVE, "blk_aio_write_entry"), (ENTER, "ide_buffered_readv_cb")]


def test_goto_and_back_reproduce_forward_states(engine, stack):
    with Machine(engine=engine, stack=stack, op="both", lba=4) as m:
        dbg = m.debugger()
        dbg.cont()
        total = len(dbg.events)
        picks = {total * k // 7 for k in range(1, 7)}
        for kind, name in KEY_POINTS:  # the first entry/exit of each, on the coroutine, worker and main loop
            picks.add(next(i for i, e in enumerate(dbg.events) if e[0] == kind and REGISTRY[e[1]].name == name))
        picks = sorted(picks)
        dbg.goto(-1)
        forward = {}
        for i in picks:
            stop = dbg.goto(i)
            assert stop.index == i
            forward[i] = dbg.state_digest()
        assert len({json.dumps(d, sort_keys=True) for d in forward.values()}) == len(picks)
        assert len({d["image_sha256"] for d in forward.values()}) == 2  # before and after the pwrite
        for i in reversed(picks):
            stop = dbg.goto(i)
            assert stop.index == i and stop.message is None
            assert dbg.state_digest() == forward[i], f"state at index {i} differs after goto"
        assert dbg._checkpoints, "no checkpoint was taken on the 10.2 stack"


def test_back_from_the_completion_lands_in_the_worker(emu_stack):
    with Machine(stack=emu_stack, op="write", lba=2) as m:
        dbg = m.debugger()
        dbg.break_at("ide_sector_write_cb")
        stop = dbg.cont()
        assert stop.function == "ide_sector_write_cb" and stop.thread == "main"
        assert m.image_bytes(2) == m.expected_sectors()[2]  # the pwrite happened before
        where = stop.index
        worker_at = next(i for i in range(where, -1, -1)
                         if dbg.events[i][0] == ENTER and REGISTRY[dbg.events[i][1]].name == "handle_aiocb_rw")
        stop = dbg.goto(worker_at)
        assert stop.function == "handle_aiocb_rw" and stop.thread == "worker-1"
        assert m.image_bytes(2) != m.expected_sectors()[2]  # the image is back before the pwrite
        bt = stop.backtrace
        assert [f.function for f in bt] == ["handle_aiocb_rw", "worker_thread", "qemu_thread_start"]
        stop = dbg.goto(where)
        assert stop.function == "ide_sector_write_cb" and m.image_bytes(2) == m.expected_sectors()[2]
        stop = dbg.back()
        assert stop.index == where - 1
