"""The frames at bdrv_aio_writev (write) and paio_submit (read) are the ones gdb shows in real QEMU 1.6.1:
each frame's function, file and line (the innermost at its first statement after the prologue), with every
parameter of the real signature (pointers as stable addresses, functions with their `<symbol>`)."""
import re

from vmio_edu import Machine
from vmio_edu.trace.backtrace import backtrace


def _stop_at(function, **kw):
    m = Machine(record=True, **kw)
    hit = {}

    def on_enter(tp, args, ctx):
        if tp.name == function and not hit:
            hit["bt"] = backtrace(ctx.stack, ctx.name, ctx.machine)
            hit["thread"] = ctx.name

    m.trace.on_enter = on_enter
    m.run()
    m.close()
    return hit


def test_bdrv_aio_writev_backtrace():
    hit = _stop_at("bdrv_aio_writev", op="write", lba=4, sectors=1)
    bt = hit["bt"]
    assert hit["thread"] == "vcpu0"
    names = [f.function for f in bt]
    assert names == ["bdrv_aio_writev", "ide_sector_write", "ide_data_writew", "portio_write",
                     "memory_region_write_accessor", "access_with_adjusted_size",
                     "memory_region_dispatch_write", "io_mem_write", "address_space_rw",
                     "address_space_write", "cpu_outw", "kvm_handle_io", "kvm_cpu_exec",
                     "qemu_kvm_cpu_thread_fn"]
    f = {x.function: x for x in bt}
    assert f["bdrv_aio_writev"].args["sector_num"] == 4 and f["bdrv_aio_writev"].args["nb_sectors"] == 1
    assert re.fullmatch(r"0x5555[0-9a-f]{8} <ide_sector_write_cb>", f["bdrv_aio_writev"].args["cb"])
    # The parameter names of the real signatures (block.c, hw/ide/core.c, ioport.c, memory.c, exec.c, kvm-all.c).
    assert {x.function: list(x.args) for x in bt} == {
        "bdrv_aio_writev": ["bs", "sector_num", "qiov", "nb_sectors", "cb", "opaque"],
        "ide_sector_write": ["s"], "ide_data_writew": ["opaque", "addr", "val"],
        "portio_write": ["opaque", "addr", "data", "size"],
        "memory_region_write_accessor": ["mr", "addr", "value", "size", "shift", "mask"],
        "access_with_adjusted_size": ["addr", "value", "size", "access_size_min", "access_size_max", "access", "mr"],
        "memory_region_dispatch_write": ["mr", "addr", "data", "size"], "io_mem_write": ["mr", "addr", "val", "size"],
        "address_space_rw": ["as", "addr", "buf", "len", "is_write"],
        "address_space_write": ["as", "addr", "buf", "len"], "cpu_outw": ["addr", "val"],
        "kvm_handle_io": ["port", "data", "direction", "size", "count"], "kvm_cpu_exec": ["cpu"],
        "qemu_kvm_cpu_thread_fn": ["arg"]}
    # The same object is the same pointer in every frame that holds it, as a learner checks in gdb.
    assert f["bdrv_aio_writev"].args["opaque"] == f["ide_sector_write"].args["s"]
    assert f["memory_region_write_accessor"].args["mr"] == f["access_with_adjusted_size"].args["mr"] \
        == f["memory_region_dispatch_write"].args["mr"] == f["io_mem_write"].args["mr"]
    assert f["kvm_cpu_exec"].args["cpu"] == f["qemu_kvm_cpu_thread_fn"].args["arg"]
    assert f["address_space_rw"].args["buf"] == f["address_space_write"].args["buf"]  # one buffer passed down
    assert f["memory_region_write_accessor"].args["value"] == f["access_with_adjusted_size"].args["value"]
    assert f["bdrv_aio_writev"].args["bs"] != f["bdrv_aio_writev"].args["qiov"]
    assert f["address_space_rw"].args["as"].endswith(" <address_space_io>")
    assert f["access_with_adjusted_size"].args["access"].endswith(" <memory_region_write_accessor>")
    assert f["ide_data_writew"].args["addr"] == 496 and f["ide_data_writew"].args["val"] == f["cpu_outw"].args["val"]
    assert f["portio_write"].args["addr"] == 0 and f["portio_write"].args["size"] == 2
    assert {k: v for k, v in f["address_space_rw"].args.items() if k not in ("as", "buf")} == \
        {"addr": 496, "len": 2, "is_write": "true"}
    assert f["kvm_handle_io"].args == {"port": 496, "data": "0x7ffff7ff1000", "direction": 1, "size": 2,
                                       "count": 1}  # data: the PIO page, kvm_run + data_offset (4096)
    lines = {x.function: (x.file, x.line) for x in bt}
    # gdb stops after the prologue: trace_bdrv_aio_writev's line, not the declaration's (3384).
    assert lines["bdrv_aio_writev"] == ("block.c", 3388)
    assert lines["ide_sector_write"] == ("hw/ide/core.c", 798)
    assert lines["ide_data_writew"] == ("hw/ide/core.c", 1907)
    assert lines["portio_write"] == ("ioport.c", 190)
    assert lines["cpu_outw"] == ("ioport.c", 77)
    assert lines["kvm_cpu_exec"] == ("kvm-all.c", 1664)
    assert lines["qemu_kvm_cpu_thread_fn"] == ("cpus.c", 785)
    assert all(x.thread == "vcpu0" for x in bt)


def test_paio_submit_backtrace_on_read():
    hit = _stop_at("paio_submit", op="read", lba=2, sectors=1)
    names = [f.function for f in hit["bt"]]
    assert names == ["paio_submit", "raw_aio_submit", "raw_aio_readv", "bdrv_co_io_em", "bdrv_co_readv_em",
                     "bdrv_co_do_readv", "bdrv_co_readv", "raw_co_readv", "bdrv_co_do_readv",
                     "bdrv_co_do_rw", "coroutine_trampoline"]
    lines = [(f.file, f.line) for f in hit["bt"]]
    assert lines[:5] == [("block/raw-posix.c", 784), ("block/raw-posix.c", 828), ("block/raw-posix.c", 836),
                         ("block.c", 4017), ("block.c", 4034)]
    assert lines[-1] == ("coroutine-ucontext.c", 118)  # co->entry(co->entry_arg)
    bt = hit["bt"]
    assert list(bt[0].args) == ["bs", "fd", "sector_num", "qiov", "nb_sectors", "cb", "opaque", "type"]
    assert bt[0].args["nb_sectors"] == 1 and bt[0].args["sector_num"] == 2 and bt[0].args["type"] == 1
    assert bt[0].args["cb"].endswith(" <bdrv_co_io_em_complete>")
    # The file BDS (inner bdrv_co_do_readv, raw-posix) and the format BDS (outer, raw) differ, as in gdb.
    inner, outer = bt[5], bt[8]
    assert inner.function == outer.function == "bdrv_co_do_readv"
    assert inner.args["bs"] != outer.args["bs"] and inner.args["bs"] == bt[0].args["bs"]
    assert inner.args["qiov"] == outer.args["qiov"] == bt[0].args["qiov"]
    assert bt[7].function == "raw_co_readv" and bt[7].args["bs"] == outer.args["bs"]
    # coroutine_trampoline's two ints are the halves of the coroutine's pointer.
    i0, i1 = bt[-1].args["i0"], bt[-1].args["i1"]
    assert ((i1 << 32) | (i0 & 0xFFFFFFFF)) >> 44 == 0x5


def test_addresses_are_the_same_in_every_run():
    a = _stop_at("paio_submit", op="read", lba=2, sectors=1)["bt"]
    b = _stop_at("paio_submit", op="read", lba=2, sectors=1)["bt"]
    assert [x.args for x in a] == [x.args for x in b]


def test_same_inputs_same_trace():
    def fp():
        with Machine(op="both", lba=9, sectors=2, seed=5, record=True) as m:
            m.run()
            return m.trace.fingerprint(), [x.key() for x in m.exits]
    a, b = fp(), fp()
    assert len(a[0]) > 1000
    assert a == b


def test_an_object_keeps_its_address_from_stop_to_stop():
    """The drive (IDEState) and the request's AIOCB show the same pointer at every stop of their life, on
    every thread: the AIOCB that bdrv_co_do_rw works on (vCPU) is the one bdrv_co_em_bh completes (main)."""
    with Machine(op="write", lba=3, sectors=1) as m:
        dbg = m.debugger()
        dbg.break_at("bdrv_aio_writev")
        a = {f.function: f.args for f in dbg.cont().backtrace}
        dbg.clear()
        dbg.break_at("paio_submit")
        b = {f.function: f.args for f in dbg.cont().backtrace}
        dbg.clear()
        dbg.break_at("ide_sector_write_cb")
        stop = dbg.cont()
        c = {f.function: f.args for f in stop.backtrace}
    assert stop.thread == "main"
    assert a["ide_sector_write"]["s"] == c["ide_sector_write_cb"]["opaque"]
    assert b["bdrv_co_do_rw"]["opaque"] == c["bdrv_co_em_bh"]["opaque"]
    assert a["bdrv_aio_writev"]["qiov"] == b["paio_submit"]["qiov"]


def test_an_address_does_not_depend_on_the_scheduler_threads():
    """A vCPU notes the model thread that runs its KVM_RUN (the real engine only at the first watchdog
    kick, a matter of timing). The walk that names objects does not go through threads, so the CPUState
    keeps the address of its place on the vCPU thread's stack either way."""
    from vmio_edu.trace.addresses import AddressMap

    with Machine(op="write", lba=3, sectors=1) as m:
        dbg = m.debugger()
        dbg.break_at("ide_sector_write")
        dbg.cont()
        ctx = m.sched._parked.ctx
        cpu = next(f.args[0] for f in ctx.stack if f.tp.name == "kvm_cpu_exec")
        vcpu = m.cpu.kvm_fd.vcpu
        vcpu.model_thread = m.sched._parked
        held = AddressMap(ctx.machine, [(ctx.name, ctx.stack)]).address(cpu)
        vcpu.model_thread = None
        free = AddressMap(ctx.machine, [(ctx.name, ctx.stack)]).address(cpu)
        assert held == free and held is not None


def test_the_system_call_frame_sits_under_its_call_line():
    # gdb shows handle_aiocb_rw_linear at its pwrite()/pread() line (raw-posix.c:572/577), not at its
    # definition (565): the sys_pwrite64/sys_pread64 stage is that call
    for op, syscall, line in (("write", "sys_pwrite64", 572), ("read", "sys_pread64", 577)):
        bt = _stop_at(syscall, op=op, lba=4, sectors=1)["bt"]
        assert [(f.function, f.file, f.line) for f in bt[1:3]] == [
            ("handle_aiocb_rw_linear", "block/raw-posix.c", line), ("handle_aiocb_rw", "block/raw-posix.c", 607)]


def test_the_main_loop_dispatches_the_aio_context_from_its_dispatch_line():
    # glib_pollfds_poll calls g_main_context_dispatch (→ aio_ctx_dispatch) at main-loop.c:188; 182 is its
    # definition, the line a frame without a call line would show
    hit = _stop_at("aio_ctx_dispatch", op="write", lba=4, sectors=1)
    assert hit["thread"] == "main"
    assert [(f.function, f.file, f.line) for f in hit["bt"][:3]] == [
        ("aio_ctx_dispatch", "async.c", 191), ("glib_pollfds_poll", "main-loop.c", 188),
        ("os_host_main_loop_wait", "main-loop.c", 233)]


def test_the_kernel_frames_and_the_ioctl_show_their_call_lines():
    # a caller frame sits at the line that makes the call, never at its own definition: the exit handler
    # table (vmx.c:6012, not 5939), QEMU's ioctl(2) (kvm-all.c:1759, not 1748), the emulator's execute
    # (emulate.c:4485) and the byte-sized port accessors of kvm_handle_io (cpu_inb at kvm-all.c:1505)
    hit = _stop_at("em_in", op="read", lba=4, sectors=1)
    where = {(f.function, f.file): f.line for f in hit["bt"]}
    assert where[("vmx_handle_exit", "arch/x86/kvm/vmx.c")] == 6012
    assert where[("x86_emulate_insn", "arch/x86/kvm/emulate.c")] == 4485
    assert where[("kvm_vcpu_ioctl", "kvm-all.c")] == 1759
    hit = _stop_at("cpu_inb", op="write", lba=4, sectors=1)
    assert [(f.function, f.line) for f in hit["bt"][:2]] == [("cpu_inb", hit["bt"][0].line), ("kvm_handle_io", 1505)]


def test_a_direct_call_is_not_placed_at_a_pointer_call_of_the_same_caller():
    # portio_read calls find_portio at ioport.c:168 (its mrp->read is at 173); worker_thread calls
    # do_spawn_thread at thread-pool.c:87 (its req->func at 109)
    m = Machine(record=True, op="read", lba=4, sectors=1)
    seen = {}

    def on_enter(tp, args, ctx):
        if len(ctx.stack) >= 2 and (ctx.stack[-2].tp.name, tp.name) in (("portio_read", "find_portio"),
                                                                           ("worker_thread", "do_spawn_thread")):
            seen.setdefault(ctx.stack[-2].tp.name, backtrace(ctx.stack, ctx.name, ctx.machine)[1].line)

    m.trace.on_enter = on_enter
    m.run()
    m.close()
    assert seen == {"portio_read": 168, "worker_thread": 87}


def test_a_buffer_passed_down_keeps_one_address():
    # pwrite(fd, buf + 0, ...) and kvm_io_bus_write(..., val) → ioeventfd_write(..., val) pass the same
    # pointer on: gdb shows it once, in both frames
    bt = _stop_at("sys_pwrite64", op="write", lba=4, sectors=1)["bt"]
    assert bt[1].function == "handle_aiocb_rw_linear" and bt[0].args["buf"] == bt[1].args["buf"]
    bt = _stop_at("ioeventfd_write", disk="virtio", op="write", sectors=1)["bt"]
    assert bt[1].function == "kvm_io_bus_write" and bt[0].args["val"] == bt[1].args["val"]
    bt = _stop_at("picdev_write", stack="10.2", op="write", sectors=1)["bt"]  # 6.12: data → val → val
    assert [f.function for f in bt[:3]] == ["picdev_write", "kvm_io_bus_write", "emulator_pio_in_out"]
    assert bt[0].args["val"] == bt[1].args["val"] == bt[2].args["data"]
