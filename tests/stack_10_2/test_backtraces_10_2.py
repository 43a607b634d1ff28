"""Backtraces on the QEMU 10.2 stack are the ones gdb shows in a QEMU 10.2.0 build: each frame's function,
10.2 file and line (the innermost at its first statement after the prologue, callers at their call
lines), and the parameter names of the 10.2 signatures, at the three places issue 15 names."""
import re

from vmio_edu import Machine
from vmio_edu.trace.backtrace import backtrace

WANTED = ("blk_aio_pwritev", "raw_co_prw", "handle_aiocb_rw", "blk_aio_preadv", "thread_pool_co_cb", "kvm_fast_pio")


def _stops(engine, stack, op="write"):
    m = Machine(record=True, op=op, lba=4, sectors=1, engine=engine, stack=stack)
    hits = {}

    def on_enter(tp, args, ctx):
        if tp.stack == "10.2" and tp.name in WANTED and tp.name not in hits:
            hits[tp.name] = (ctx.name, backtrace(ctx.stack, ctx.name, ctx.machine))

    m.trace.on_enter = on_enter
    try:
        m.run()
    finally:
        m.close()
    return hits


def _where(bt):
    return [(f.function, f.file, f.line) for f in bt]


def test_blk_aio_pwritev_on_the_vcpu_thread(engine, stack):
    thread, bt = _stops(engine, stack)["blk_aio_pwritev"]
    assert thread == "vcpu0"
    assert _where(bt) == [
        ("blk_aio_pwritev", "block/block-backend.c", 1721),
        ("ide_sector_write", "hw/ide/core.c", 1100),
        ("ide_data_writew", "hw/ide/core.c", 2428),
        ("portio_write", "system/ioport.c", 206),
        ("memory_region_write_accessor", "system/memory.c", 491),
        ("access_with_adjusted_size", "system/memory.c", 567),  # the little-endian loop (portio_ops)
        ("memory_region_dispatch_write", "system/memory.c", 1547),
        ("flatview_write_continue_step", "system/physmem.c", 3269),
        ("flatview_write_continue", "system/physmem.c", 3299),
        ("flatview_write", "system/physmem.c", 3330),
        ("address_space_write", "system/physmem.c", 3450),
        ("address_space_rw", "system/physmem.c", 3460),
        ("kvm_handle_io", "accel/kvm/kvm-all.c", 2851),
        ("kvm_cpu_exec", "accel/kvm/kvm-all.c", 3239),
        ("kvm_vcpu_thread_fn", "accel/kvm/kvm-accel-ops.c", 53),
        ("qemu_thread_start", "util/qemu-thread-posix.c", 393)]
    assert {f.function: list(f.args) for f in bt[:4]} == {
        "blk_aio_pwritev": ["blk", "offset", "qiov", "flags", "cb", "opaque"], "ide_sector_write": ["s"],
        "ide_data_writew": ["opaque", "addr", "val"], "portio_write": ["opaque", "addr", "data", "size"]}
    f = {x.function: x for x in bt}
    assert list(f["memory_region_dispatch_write"].args) == ["mr", "addr", "data", "op", "attrs"]
    assert list(f["flatview_write_continue_step"].args) == ["attrs", "buf", "len", "mr_addr", "l", "mr"]
    assert list(f["kvm_handle_io"].args) == ["port", "attrs", "data", "direction", "size", "count"]
    assert f["blk_aio_pwritev"].args["offset"] == 4 * 512  # bytes, no longer sectors
    assert re.fullmatch(r"0x5555[0-9a-f]{8} <ide_sector_write_cb>", f["blk_aio_pwritev"].args["cb"])
    assert f["blk_aio_pwritev"].args["opaque"] == f["ide_sector_write"].args["s"]
    assert f["memory_region_dispatch_write"].args["op"] == 1  # MO_16: an outw
    # portio_ops leave impl sizes 0; access_with_adjusted_size made them 1 and 4 before the call (memory.c:
    # 537-542), and gdb shows a caller's parameters as they are now, as the 1.6.1 stack does
    assert (f["access_with_adjusted_size"].args["access_size_min"],
            f["access_with_adjusted_size"].args["access_size_max"]) == (1, 4)
    assert f["ide_data_writew"].args["addr"] == 0x1F0 and f["kvm_handle_io"].args["port"] == 0x1F0
    assert f["kvm_cpu_exec"].args["cpu"] == f["kvm_vcpu_thread_fn"].args["arg"]
    assert f["address_space_rw"].args["as"].endswith(" <address_space_io>")
    # the FlatView is an object of its own (as->current_map), the same one in both flatview frames
    assert f["flatview_write"].args["fv"] == f["flatview_write_continue"].args["fv"]
    assert re.fullmatch(r"0x5555[0-9a-f]{8}", f["flatview_write"].args["fv"])
    assert f["flatview_write"].args["fv"] != f["address_space_write"].args["as"].split()[0]
    assert all(x.stack == "10.2" for x in bt)


def test_raw_co_prw_in_the_coroutine_twice_through_block_io(engine, stack):
    thread, bt = _stops(engine, stack)["raw_co_prw"]
    assert thread == "vcpu0"  # the coroutine was entered by blk_aio_prwv on the vCPU thread
    assert _where(bt) == [
        ("raw_co_prw", "block/file-posix.c", 2575),
        ("raw_co_pwritev", "block/file-posix.c", 2678),
        ("bdrv_driver_pwritev", "block/io.c", 1085),
        ("bdrv_aligned_pwritev", "block/io.c", 2115),
        ("bdrv_co_pwritev_part", "block/io.c", 2308),
        ("bdrv_co_pwritev", "block/io.c", 2225),
        ("raw_co_pwritev", "block/raw-format.c", 275),
        ("bdrv_driver_pwritev", "block/io.c", 1085),
        ("bdrv_aligned_pwritev", "block/io.c", 2115),
        ("bdrv_co_pwritev_part", "block/io.c", 2308),
        ("blk_co_do_pwritev_part", "block/block-backend.c", 1436),
        ("blk_aio_write_entry", "block/block-backend.c", 1631),
        ("coroutine_trampoline", "util/coroutine-ucontext.c", 175)]
    assert list(bt[0].args) == ["bs", "offset_ptr", "bytes", "qiov", "type", "flags"]
    assert bt[0].args["offset_ptr"] == "<optimized out>" and bt[0].args["bytes"] == 512
    # the file node under the format node: two BlockDriverStates, one request (qiov)
    assert bt[0].args["bs"] == bt[1].args["bs"] == bt[2].args["bs"] != bt[6].args["bs"] == bt[7].args["bs"]
    assert bt[4].args["child"] != bt[9].args["child"]
    assert len({f.args["qiov"] for f in bt if "qiov" in f.args}) == 1
    assert list(bt[3].args) == ["child", "req", "offset", "bytes", "align", "qiov", "qiov_offset", "flags"]


def test_handle_aiocb_rw_on_a_pool_worker(engine, stack):
    thread, bt = _stops(engine, stack)["handle_aiocb_rw"]
    assert thread == "worker-1"
    assert _where(bt) == [("handle_aiocb_rw", "block/file-posix.c", 1867),
                          ("worker_thread", "util/thread-pool.c", 111),
                          ("qemu_thread_start", "util/qemu-thread-posix.c", 393)]
    assert list(bt[0].args) == ["opaque"] and list(bt[1].args) == ["opaque"]


def test_the_pwrite_frame_sits_under_its_call_line(emu_stack):
    # handle_aiocb_rw_linear calls pwrite at file-posix.c:1832 (pread at 1837), not at its definition (1825)
    m = Machine(record=True, op="write", lba=4, sectors=1, stack=emu_stack)
    hits = {}
    m.trace.on_enter = lambda tp, args, ctx: hits.setdefault(tp.name, backtrace(ctx.stack, ctx.name, ctx.machine)) \
        if tp.stack == "10.2" and tp.name == "sys_pwrite64" else None
    try:
        m.run()
    finally:
        m.close()
    assert _where(hits["sys_pwrite64"][1:3]) == [("handle_aiocb_rw_linear", "block/file-posix.c", 1832),
                                                 ("handle_aiocb_rw", "block/file-posix.c", 1877)]


def test_thread_pool_co_cb_from_the_completion_bottom_half(emu_stack):
    # thread-pool.c calls elem->common.cb at :200 (198 reschedules the bottom half; 195 is a comment)
    thread, bt = _stops("unicorn", emu_stack)["thread_pool_co_cb"]
    assert thread == "main"
    assert _where(bt[:3]) == [("thread_pool_co_cb", "util/thread-pool.c", 278),
                              ("thread_pool_completion_bh", "util/thread-pool.c", 200),
                              ("aio_bh_call", "util/async.c", 172)]


def test_the_kernel_frames_do_not_show_the_vcpu_as_the_file(emu_stack):
    # kvm_vcpu_ioctl(struct file *filp, ...): the model has no struct file, so gdb's <optimized out>
    # (as on 3.7), never the kvm_vcpu's address
    _thread, bt = _stops("unicorn", emu_stack)["kvm_fast_pio"]
    f = {x.function: x for x in bt if x.file.startswith(("arch/", "virt/"))}
    assert f["kvm_vcpu_ioctl"].args["filp"] == "<optimized out>"
    assert f["kvm_vcpu_ioctl"].args["ioctl"] == 0xAE80  # KVM_RUN
    # QEMU's kvm_vcpu_ioctl sits at its ioctl(2) (kvm-all.c:3395), not at its definition (3383)
    assert [(x.function, x.file, x.line) for x in bt if x.stack == "10.2" and x.file == "accel/kvm/kvm-all.c"][:1] \
        == [("kvm_vcpu_ioctl", "accel/kvm/kvm-all.c", 3395)]


def test_the_read_goes_through_ide_buffered_readv(emu_stack):
    thread, bt = _stops("unicorn", emu_stack, op="read")["blk_aio_preadv"]
    assert [f.function for f in bt[:3]] == ["blk_aio_preadv", "ide_buffered_readv", "ide_sector_read"]
    assert (bt[0].file, bt[0].line, bt[1].line) == ("block/block-backend.c", 1711, 715)
