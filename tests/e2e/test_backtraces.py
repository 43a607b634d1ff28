"""The frames at bdrv_aio_writev (write) and paio_submit (read) are the ones gdb shows in real QEMU."""
from vmio_edu import Machine
from vmio_edu.trace.backtrace import backtrace


def _stop_at(function, **kw):
    m = Machine(record=True, **kw)
    hit = {}

    def on_enter(tp, args, ctx):
        if tp.name == function and not hit:
            hit["bt"] = backtrace(ctx.stack, ctx.name)
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
    assert f["bdrv_aio_writev"].args["cb"] == "ide_sector_write_cb"
    assert f["ide_data_writew"].args["addr"] == 496
    assert f["portio_write"].args["addr"] == 0 and f["portio_write"].args["size"] == 2
    assert f["address_space_rw"].args == {"addr": 496, "len": 2, "is_write": "true"}
    assert f["kvm_handle_io"].args == {"port": 496, "direction": 1, "size": 2, "count": 1}
    lines = {x.function: (x.file, x.line) for x in bt}
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
                     "bdrv_co_do_rw"]
    lines = [(f.file, f.line) for f in hit["bt"][1:]]
    assert lines[:4] == [("block/raw-posix.c", 828), ("block/raw-posix.c", 836), ("block.c", 4017),
                         ("block.c", 4034)]
    assert hit["bt"][0].args.get("nb_sectors") == 1 and hit["bt"][0].args.get("sector_num") == 2


def test_same_inputs_same_trace():
    def fp():
        with Machine(op="both", lba=9, sectors=2, seed=5, record=True) as m:
            m.run()
            return m.trace.fingerprint(), [x.key() for x in m.exits]
    a, b = fp(), fp()
    assert len(a[0]) > 1000
    assert a == b
