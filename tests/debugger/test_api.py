"""The debugger's commands: breakpoints by function, layer and condition; step, next, finish, cont; stops
on every model thread; errors that name the problem."""
import json

import pytest

from vmio_edu import Machine
from vmio_edu.errors import VmioError
from vmio_edu.trace.debugger import KVM_SPIN_KICKS
from vmio_edu.trace.recorder import ENTER, LEAVE, POINT
from vmio_edu.trace.tracepoint import REGISTRY

WRITE_FRAMES = ["bdrv_aio_writev", "ide_sector_write", "ide_data_writew", "portio_write",
                "memory_region_write_accessor", "access_with_adjusted_size", "memory_region_dispatch_write",
                "io_mem_write", "address_space_rw", "address_space_write", "cpu_outw", "kvm_handle_io",
                "kvm_cpu_exec", "qemu_kvm_cpu_thread_fn"]


def _name(ev):
    return REGISTRY[ev[1]].name if ev[0] != POINT else ev[1]


def test_break_at_bdrv_aio_writev_shows_the_gdb_frames(make):
    m, dbg = make(lba=4)
    bp = dbg.break_at("bdrv_aio_writev")
    stop = dbg.cont()
    assert stop.reason == "breakpoint" and stop.breakpoint is bp and bp.hits == 1
    assert (stop.function, stop.layer, stop.thread, stop.kind) == ("bdrv_aio_writev", "qemu-block", "vcpu0",
                                                                   "enter")
    assert [f.function for f in stop.backtrace] == WRITE_FRAMES
    f = {x.function: x for x in stop.backtrace}
    assert f["bdrv_aio_writev"].args["sector_num"] == 4 and f["bdrv_aio_writev"].args["nb_sectors"] == 1
    assert f["bdrv_aio_writev"].args["cb"].endswith(" <ide_sector_write_cb>")
    assert f["bdrv_aio_writev"].args["opaque"] == f["ide_sector_write"].args["s"]
    assert {k: v for k, v in f["kvm_handle_io"].args.items() if k != "data"} == \
        {"port": 496, "direction": 1, "size": 2, "count": 1}
    assert (stop.file, stop.line) == ("block.c", 3388)  # after the prologue, as gdb stops
    assert (f["ide_sector_write"].file, f["ide_sector_write"].line) == ("hw/ide/core.c", 798)
    assert (f["ide_data_writew"].file, f["ide_data_writew"].line) == ("hw/ide/core.c", 1907)
    assert (f["kvm_cpu_exec"].file, f["kvm_cpu_exec"].line) == ("kvm-all.c", 1664)
    assert all(x.thread == "vcpu0" and x.layer for x in stop.backtrace)
    assert [x.level for x in stop.backtrace] == list(range(len(WRITE_FRAMES)))
    # the index is the event's position in the recorded trace
    ev = dbg.events[stop.index]
    assert ev[0] == ENTER and _name(ev) == "bdrv_aio_writev" and ev[2] == "vcpu0"
    assert stop.args == f["bdrv_aio_writev"].args
    assert list(stop.args) == ["bs", "sector_num", "qiov", "nb_sectors", "cb", "opaque"]


def test_break_at_ide_sector_write_backtrace(make):
    m, dbg = make()
    dbg.break_at("ide_sector_write")
    stop = dbg.cont()
    assert [f.function for f in stop.backtrace] == WRITE_FRAMES[1:]
    assert (stop.backtrace[0].file, stop.backtrace[0].line) == ("hw/ide/core.c", 783)
    assert (stop.file, stop.line) == ("hw/ide/core.c", 783)


def test_break_by_layer_stops_at_each_function_of_the_layer(make):
    m, dbg = make()
    dbg.break_at(layer="qemu-block")
    seen = []
    stop = dbg.cont()
    while stop.reason == "breakpoint" and len(seen) < 6:
        assert stop.layer == "qemu-block" and stop.kind == "enter"
        seen.append((stop.index, stop.function))
        stop = dbg.cont()
    assert [i for i, _ in seen] == sorted(i for i, _ in seen) and len(set(seen)) == len(seen)
    # every qemu-block entry between the first and the last stop was a stop: none skipped
    first, last = seen[0][0], seen[-1][0]
    between = [i for i in range(first, last + 1)
               if dbg.events[i][0] == ENTER and REGISTRY[dbg.events[i][1]].layer == "qemu-block"]
    assert between == [i for i, _ in seen]


def test_break_by_function_restricted_to_a_layer():
    with pytest.raises(VmioError, match="no modelled function is called 'bdrv_aio_writev' in layer vmx"):
        Machine().debugger().break_at("bdrv_aio_writev", layer="vmx")


def test_condition_reads_views_and_counts_hits(make):
    m, dbg = make()
    calls = []

    def last_word(stop):
        calls.append(stop.index)
        return stop.views["ide"]["io_buffer"]["data_ptr"] == 510

    bp = dbg.break_at("ide_data_writew", condition=last_word)
    stop = dbg.cont()
    assert stop.reason == "breakpoint" and stop.function == "ide_data_writew"
    assert stop.views["ide"]["io_buffer"]["data_ptr"] == 510
    assert len(calls) == 256 and bp.hits == 1  # words 0..255 of the sector; the 256th is the hit
    # evaluating the condition added nothing to the trace: the run is the same as a plain one
    dbg.clear()
    assert dbg.cont().reason == "halted"
    with Machine(engine=m.engine, op="write", lba=3, record=True) as plain:
        if plain.engine == "kvm":  # as the debugger does: watchdog kicks stay inside KVM_RUN
            plain.cpu.kvm_fd.spin_kick_limit = KVM_SPIN_KICKS
        plain.run()
        assert [e[:4] for e in plain.trace.events] == [e[:4] for e in dbg.events]


def test_condition_only_breakpoint(make):
    m, dbg = make()
    dbg.break_at(condition=lambda s: s.thread.startswith("worker"))
    stop = dbg.cont()
    assert stop.thread == "worker-1" and stop.function == "worker_thread"


def test_raising_condition_is_reported_and_the_machine_goes_on(make):
    m, dbg = make()

    def broken(stop):
        raise ValueError("boom")

    bp = dbg.break_at("ide_sector_write", condition=broken)
    stop = dbg.cont()
    assert stop.reason == "condition-error" and stop.function == "ide_sector_write"
    assert "ValueError: boom" in stop.message and f"breakpoint {bp.number}" in stop.message
    dbg.delete(bp)
    assert dbg.breakpoints == []
    end = dbg.cont()
    assert end.reason == "halted" and end.index == len(dbg.events)
    assert m.image_changes() == [3] and m.image_bytes(3) == m.expected_sectors()[3]


def test_step_is_the_next_entry_or_exit_on_any_thread(make):
    m, dbg = make()
    dbg.break_at("aio_worker")
    stop = dbg.cont()
    seen_threads = set()
    for _ in range(400):
        if "main" in seen_threads:
            break
        nxt = dbg.step()
        assert nxt.reason == "step" and nxt.index > stop.index
        # nothing but point events was skipped
        assert all(dbg.events[j][0] == POINT for j in range(stop.index + 1, nxt.index))
        assert dbg.events[nxt.index][0] in (ENTER, LEAVE)
        assert dbg.events[nxt.index][2] == nxt.thread
        seen_threads.add(nxt.thread)
        stop = nxt
    # the worker finishes the pwrite, the vCPU polls the status a while, then the main loop completes it
    assert {"worker-1", "vcpu0", "main"} <= seen_threads


def test_first_step_from_the_start(make):
    m, dbg = make()
    assert dbg.stop.reason == "start" and dbg.stop.index == -1
    s = dbg.step()
    assert s.index == 0 and s.kind == "enter" and s.thread == "main"


def test_next_and_finish(make):
    m, dbg = make()
    dbg.break_at("ide_sector_write")
    top = dbg.cont()
    d = top.depth
    # next at an entry: over the whole call, to its exit at the same depth
    over = dbg.next()
    assert (over.kind, over.function, over.depth, over.thread) == ("leave", "ide_sector_write", d, "vcpu0")
    assert over.index > top.index + 10  # it went over ide_get_sector, bdrv_aio_writev, ...
    dbg.goto(top.index)
    inner = dbg.step()  # into the first callee
    assert inner.kind == "enter" and inner.depth == d + 1 and inner.backtrace[1].function == "ide_sector_write"
    out = dbg.next()  # over the callee: its exit
    assert out.kind == "leave" and out.function == inner.function and out.depth == d + 1
    sib = dbg.next()  # the next call inside ide_sector_write, or its return
    assert sib.depth <= d + 1 and sib.thread == "vcpu0" and sib.index > out.index
    assert sib.backtrace[-1].function == "qemu_kvm_cpu_thread_fn"  # the same stack, not a coroutine's
    if sib.kind == "enter":
        assert sib.backtrace[1].function == "ide_sector_write"
    if sib.kind == "enter":
        done = dbg.finish()  # at an entry, finish runs until that call returns
        assert (done.kind, done.function, done.depth) == ("leave", sib.function, d + 1)
    fin = dbg.finish()  # at an exit inside ide_sector_write: until ide_sector_write returns
    assert (fin.kind, fin.function, fin.depth) == ("leave", "ide_sector_write", d)
    assert fin.index == over.index
    up = dbg.finish()  # at an exit, finish runs until the caller returns
    assert (up.kind, up.function, up.depth) == ("leave", "ide_data_writew", d - 1)


def test_finish_follows_a_coroutine_to_the_main_loop(make):
    m, dbg = make()
    dbg.break_at("bdrv_co_io_em")
    stop = dbg.cont()
    assert stop.thread == "vcpu0"  # the coroutine's stack, ending in coroutine_trampoline as in gdb
    assert [f.function for f in stop.backtrace[-2:]] == ["bdrv_co_do_rw", "coroutine_trampoline"]
    fin = dbg.finish()
    # the coroutine yielded to wait for the pwrite; it is resumed, and returns, on the main-loop thread
    assert (fin.kind, fin.function, fin.thread) == ("leave", "bdrv_co_io_em", "main")
    assert [f.function for f in fin.backtrace[-2:]] == ["bdrv_co_do_rw", "coroutine_trampoline"]
    between = {dbg.events[j][2] for j in range(stop.index, fin.index)}
    assert {"vcpu0", "main", "worker-1"} <= between


def test_next_out_of_a_finished_coroutine_returns_to_its_caller(make):
    m, dbg = make()
    dbg.break_at("bdrv_co_do_rw")
    stop = dbg.cont()
    assert stop.depth == 1
    done = dbg.next()  # over the whole coroutine: its return, on main
    assert (done.kind, done.function, done.thread, done.depth) == ("leave", "bdrv_co_do_rw", "main", 1)
    after = dbg.next()  # the coroutine is gone: back in qemu_coroutine_enter on main
    assert after.thread == "main"
    assert after.index == done.index + 1 or all(dbg.events[j][0] == POINT for j in range(done.index + 1, after.index))
    assert any(f.function == "qemu_coroutine_enter" for f in after.backtrace)


def test_stops_on_main_and_worker_threads(make):
    m, dbg = make()
    dbg.break_at("aio_worker")
    dbg.break_at("ide_sector_write_cb")
    w = dbg.cont()
    assert (w.function, w.thread, w.layer) == ("aio_worker", "worker-1", "qemu-threadpool")
    assert [f.function for f in w.backtrace] == ["aio_worker", "worker_thread"]
    assert all(f.thread == "worker-1" for f in w.backtrace)
    mn = dbg.cont()
    assert (mn.function, mn.thread) == ("ide_sector_write_cb", "main")
    assert [f.function for f in mn.backtrace[-2:]] == ["main_loop", "main"]  # vl.c main calls main_loop
    assert all(f.thread == "main" for f in mn.backtrace)
    assert dbg.cont().reason == "halted"


def test_cont_to_the_end_and_stay_there(make):
    m, dbg = make(op="both", sectors=2, lba=6)
    end = dbg.cont()
    assert end.reason == "halted" and end.function is None and end.index == len(dbg.events)
    assert m.image_changes() == [6, 7] and m.guest_result()["read_back"] == m.image_bytes(6, 2)
    assert m.exits[-1].reason == "HLT"
    # commands past the end say the run is over (issue 11: not silently nothing); the state stays the halt
    for after in (dbg.cont(), dbg.step(), dbg.next(), dbg.finish()):
        assert after.reason == "end" and after.index == end.index and "run is over" in after.message
    assert dbg.stop is end
    assert end.views["threads"]["threads"][0]["state"] in ("blocked", "exited")


def test_breakpoint_bookkeeping_and_errors(make):
    m, dbg = make()
    a = dbg.break_at("ide_sector_write")
    b = dbg.break_at(layer="host")
    assert dbg.breakpoints == [a, b] and (a.number, b.number) == (1, 2)
    assert str(a) == "1: ide_sector_write" and str(b) == "2: layer=host"
    dbg.delete(1)
    assert dbg.breakpoints == [b]
    with pytest.raises(VmioError, match="no breakpoint 7"):
        dbg.delete(7)
    with pytest.raises(VmioError, match="did you mean ide_sector_write"):
        dbg.break_at("ide_sector_writ")
    with pytest.raises(VmioError, match="unknown layer 'disk'"):
        dbg.break_at(layer="disk")
    with pytest.raises(VmioError, match="needs a function, a layer or a condition"):
        dbg.break_at()
    stop = dbg.cont()
    assert (stop.function, stop.layer, stop.thread) == ("sys_pwrite64", "host", "worker-1")
    dbg.clear()
    assert dbg.breakpoints == [] and dbg.cont().reason == "halted"


def test_debugger_must_come_before_running():
    with Machine() as m:
        m.run()
        with pytest.raises(VmioError, match="before running the machine"):
            m.debugger()


def test_machine_debugger_is_one_per_machine(make):
    m, dbg = make()
    assert m.debugger() is dbg and dbg.machine is m


def test_stop_to_json_and_stale_views(make):
    m, dbg = make()
    dbg.break_at("paio_submit")
    stop = dbg.cont()
    ide = stop.views["ide"]  # computed now, kept with the stop
    data = json.loads(json.dumps(stop.to_json(views=True)))
    assert data["function"] == "paio_submit" and data["thread"] == "vcpu0" and data["index"] == stop.index
    assert data["backtrace"][0]["function"] == "paio_submit" and set(data["views"]) >= {"registers", "ide",
                                                                                         "disk", "threads"}
    small = stop.to_json(views=["ide"])
    assert list(small["views"]) == ["ide"] and small["views"]["ide"] == ide
    later = dbg.step()
    assert stop.views["ide"] is ide  # what was computed stays
    rip = later.views["registers"]["regs"]["rip"]
    assert rip > 0
    now = dbg.step()
    with pytest.raises(VmioError, match="no longer current"):
        later.views["ide"]  # not computed while `later` was current: it would show another moment
    assert later.views["registers"]["regs"]["rip"] == rip
    assert now.views["ide"]["status"] == ide["status"]


def test_a_stop_kept_by_a_condition_goes_stale_when_the_model_moves_on(make):
    m, dbg = make()
    kept = []

    def keep(stop):
        kept.append(stop)
        return False

    dbg.break_at("ide_sector_write", condition=keep)
    dbg.break_at("sys_pwrite64")
    dbg.cont()
    assert len(kept) == 1
    with pytest.raises(VmioError, match="no longer current"):
        kept[0].views["ide"]


def test_a_guest_fault_is_raised_and_time_travel_still_works():
    # The emulated engine only: real KVM on this host spends ~17 s before it reports the ud2 as an
    # emulation failure, and the debugger's handling of a failed model does not depend on the engine.
    from vmio_edu.guest import assemble

    code = assemble("mov dx, 0x80\nmov al, 1\nout dx, al\nud2", mode=16)
    with Machine(code, mode=16) as m:
        dbg = m.debugger()
        with pytest.raises(VmioError, match="ud2|#UD|fault|SHUTDOWN"):
            dbg.cont()
        assert dbg.stop.reason == "error" and dbg.stop.message
        with pytest.raises(VmioError, match="the model failed"):
            dbg.step()
        s = dbg.goto(3)  # a replay: before the fault, the machine works again
        assert s.index == 3 and s.views["registers"]["mode"] == 16
        assert [x.key()[:4] for x in m.exits] == []
        dbg.break_at("kvm_handle_io")
        io = dbg.cont()
        assert io.args["port"] == 0x80 and io.args["direction"] == 1
