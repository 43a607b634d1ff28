"""Time travel: the state reached by back()/goto() (a replay) equals the state reached going forwards, at
many points of the run: registers, guest RAM, kvm_run, IDE, thread pool, coroutines, threads, the image."""
import hashlib
import json
import os

import pytest

from vmio_edu import Machine
from vmio_edu.errors import VmioError
from vmio_edu.trace.recorder import ENTER, LEAVE, POINT
from vmio_edu.trace.tracepoint import REGISTRY


KEY_POINTS = [(ENTER, "paio_submit"), (ENTER, "aio_worker"), (LEAVE, "sys_pwrite64"),
              (ENTER, "ide_sector_write_cb"), (ENTER, "qemu_coroutine_yield"), (LEAVE, "bdrv_co_do_rw"),
              (ENTER, "ide_sector_read")]


def _picks(dbg, n):
    """n indices spread over the known trace, plus the first entry/exit of key functions on each thread
    (inside the coroutine, in the pool worker, around the pwrite, in the completion on main)."""
    total = len(dbg.events)
    picks = {total * k // (n + 1) for k in range(1, n + 1)}
    for kind, name in KEY_POINTS:
        picks.add(next(i for i, e in enumerate(dbg.events) if e[0] == kind and REGISTRY[e[1]].name == name))
    return sorted(picks)


def test_goto_back_reproduces_forward_states(make):
    m, dbg = make(op="both", lba=4)
    # Learn the run's length, then walk forwards through chosen points, keeping each state.
    dbg.cont()
    picks = _picks(dbg, 8)
    dbg.goto(-1)
    forward = {}
    for i in picks:
        stop = dbg.goto(i)
        assert stop.index == i and stop.reason == "goto"
        forward[i] = dbg.state_digest()
    assert len({json.dumps(d, sort_keys=True) for d in forward.values()}) == len(picks)  # all different
    assert len({d["image_sha256"] for d in forward.values()}) == 2  # before and after the pwrite
    # Now jump back to each, latest first (each is a replay from the start), and compare.
    for i in reversed(picks):
        stop = dbg.goto(i)
        assert stop.index == i and stop.message is None
        assert dbg.state_digest() == forward[i], f"state at index {i} differs after goto"
        ev = dbg.events[i]
        assert (stop.thread, stop.depth) == (ev[2], ev[3])


def test_back_steps_to_the_previous_entry_or_exit(make):
    m, dbg = make(lba=2)
    dbg.break_at("aio_worker")
    dbg.cont()
    states = []
    for _ in range(4):  # forwards, across the worker and whoever runs next
        s = dbg.step()
        states.append((s.index, s.function, s.kind, s.thread, dbg.state_digest()))
    for index, function, kind, thread, digest in reversed(states[:-1]):
        s = dbg.back()
        assert (s.reason, s.index, s.function, s.kind, s.thread) == ("back", index, function, kind, thread)
        assert dbg.state_digest() == digest
    # back skips point events: from an entry to the previous entry or exit
    s = dbg.back()
    assert dbg.events[s.index][0] != POINT and s.function == "aio_worker"


def test_image_is_put_back_and_the_run_ends_the_same(make):
    m, dbg = make(lba=7, seed=11)
    end = dbg.cont()
    assert m.image_changes() == [7]
    exits = [x.key() for x in m.exits]
    image = hashlib.sha256(open(m.image_path, "rb").read()).hexdigest()
    start = dbg.goto(-1)
    assert start.reason == "start" and start.index == -1
    assert m.image_changes() == [] and m.image_bytes(7) == bytes(512)  # the image as it was at the start
    assert start.views["disk"]["sectors_changed"] == []
    assert len(dbg.events) == end.index  # the future is still known (the timeline keeps it)
    again = dbg.cont()
    assert again.reason == "halted" and again.index == end.index
    assert [x.key() for x in m.exits] == exits
    assert hashlib.sha256(open(m.image_path, "rb").read()).hexdigest() == image


def test_goto_the_end_and_out_of_range(make):
    m, dbg = make()
    end = dbg.cont()
    n = len(dbg.events)
    dbg.goto(10)
    assert dbg.goto(n).reason == "halted" and dbg.stop.index == n
    with pytest.raises(VmioError, match="out of range"):
        dbg.goto(n + 1)
    with pytest.raises(VmioError, match="out of range"):
        dbg.goto(-2)
    with pytest.raises(VmioError, match="an int"):
        dbg.goto("5")
    assert end.index == n


def test_machine_is_a_stable_facade(make):
    m, dbg = make()
    dbg.break_at("ide_sector_write")
    stop = dbg.cont()
    old_ide = m.ide
    dbg.goto(stop.index - 5)
    assert dbg.machine is m and m.ide is not old_ide  # the replayed machine, behind the same object
    assert m.debugger() is dbg and not m._closed
    assert dbg.cont().function == "ide_sector_write"
    assert m.ide.bus[0].ifs[0].status & 0x08  # the live state, through the caller's object
    dbg.clear()
    assert dbg.cont().reason == "halted" and m.image_changes() == [3]


def test_user_image_is_restored_in_place(tmp_path, engine):
    img = tmp_path / "disk.img"
    img.write_bytes(bytes(range(256)) * 2 * 64)  # 64 sectors, not zeros
    before = img.read_bytes()
    with Machine(engine=engine, image=str(img), op="write", lba=5) as m:
        dbg = m.debugger()
        dbg.cont()
        assert img.read_bytes() != before
        dbg.goto(50)
        assert img.read_bytes() == before and m.image_path == str(img)
        dbg.cont()
        assert m.image_changes() == [5]
    assert img.exists()  # a caller's image is never deleted
    assert not any(p.name.startswith("pristine") for p in tmp_path.iterdir())


def test_temporary_files_go_with_the_machine(engine):
    m = Machine(engine=engine, op="write")
    dbg = m.debugger()
    dbg.cont()
    dbg.goto(3)
    tmp_image_dir, copy_dir = os.path.dirname(m.image_path), dbg._dir
    assert os.path.isdir(tmp_image_dir) and os.path.isdir(copy_dir)
    m.close()
    assert not os.path.exists(tmp_image_dir) and not os.path.exists(copy_dir)


def test_back_to_the_start_and_no_further(make):
    m, dbg = make()
    first = dbg.step()
    assert first.index == 0
    start = dbg.back()
    assert start.index == -1 and start.reason == "start"
    assert dbg.back().index == -1  # nothing before the start
    assert dbg.step().index == 0
