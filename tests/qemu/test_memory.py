"""The memory API dispatch chain for port I/O, with a small port device registered like IDE does."""
import pytest

from vmio_edu.qemu.exec import AddressSpace, address_space_read, address_space_write
from vmio_edu.qemu.ioport import MemoryRegionPortio, PortioList, portio_list_add, portio_list_init
from vmio_edu.qemu.memory import MemoryRegion
from vmio_edu.trace.recorder import Recorder
from vmio_edu.trace.backtrace import backtrace
from vmio_edu.trace.tracepoint import ThreadContext, set_context


class Dev:
    def __init__(self):
        self.log = []
        self.bt = None

    def wb(self, addr, val):
        self.log.append(("wb", addr, val))

    def rb(self, addr):
        return 0x50 + (addr & 7)

    def ww(self, addr, val):
        self.log.append(("ww", addr, val))
        if self.bt:
            self.bt()

    def rw(self, addr):
        return 0xABCD


def _space(dev, with_word=True):
    io = AddressSpace("I/O", MemoryRegion("io", 0x10000))
    lst = [MemoryRegionPortio(0, 8, 1, Dev.rb, Dev.wb)]
    if with_word:
        lst.append(MemoryRegionPortio(0, 2, 2, Dev.rw, Dev.ww))
    pl = PortioList()
    portio_list_init(pl, lst, dev, "dev")
    portio_list_add(pl, io, 0x1F0)
    return io, pl


def test_word_write_reaches_word_handler_with_absolute_port():
    d = Dev()
    io, pl = _space(d)
    assert len(pl.regions) == 1 and pl.regions[0].addr == 0x1F0 and pl.regions[0].size == 8
    address_space_write(io, 0x1F0, (0x1234).to_bytes(2, "little"), 2)
    address_space_write(io, 0x1F7, b"\x30", 1)
    assert d.log == [("ww", 0x1F0, 0x1234), ("wb", 0x1F7, 0x30)]


def test_word_access_without_word_entry_splits_into_bytes():
    d = Dev()
    io, _ = _space(d, with_word=False)
    address_space_write(io, 0x1F2, (0x0201).to_bytes(2, "little"), 2)
    assert d.log == [("wb", 0x1F2, 0x01), ("wb", 0x1F3, 0x02)]


def test_reads_and_unassigned_ports():
    d = Dev()
    io, _ = _space(d)
    buf = bytearray(2)
    address_space_read(io, 0x1F0, buf, 2)
    assert int.from_bytes(buf, "little") == 0xABCD
    b1 = bytearray(1)
    address_space_read(io, 0x1F7, b1, 1)
    assert b1[0] == 0x57
    address_space_read(io, 0x60, b1, 1)
    assert b1[0] == 0xFF  # nothing decodes port 0x60 here: the bus floats high


def test_overlapping_lists_are_refused():
    io, _ = _space(Dev())
    pl = PortioList()
    portio_list_init(pl, [MemoryRegionPortio(0, 1, 1, Dev.rb, Dev.wb)], Dev(), "other")
    with pytest.raises(ValueError, match="overlaps"):
        portio_list_add(pl, io, 0x1F3)


def test_dispatch_frames_match_gdb():
    d = Dev()
    io, _ = _space(d)
    rec = Recorder()
    ctx = ThreadContext("vcpu0", hooks=rec)
    frames = {}

    d.bt = lambda: frames.setdefault("bt", backtrace(ctx.stack, "vcpu0"))
    set_context(ctx)
    try:
        from vmio_edu.qemu.ioport import cpu_outw
        from vmio_edu.qemu.state import QemuState
        ctx.machine = QemuState(sched=None, address_space_io=io)
        cpu_outw(0x1F0, 0x4242)
    finally:
        set_context(None)
    bt = frames["bt"]
    names = [f.function for f in bt]
    assert names == ["portio_write", "memory_region_write_accessor", "access_with_adjusted_size",
                     "memory_region_dispatch_write", "io_mem_write", "address_space_rw",
                     "address_space_write", "cpu_outw"]
    by = {f.function: f for f in bt}
    def ints(f):  # the numbers; pointers are addresses (checked below)
        return {k: v for k, v in by[f].args.items() if isinstance(v, int) or v in ("true", "false")}
    assert ints("portio_write") == {"addr": 0, "data": 0x4242, "size": 2}
    assert ints("memory_region_write_accessor") == {"addr": 0, "size": 2, "shift": 0, "mask": 65535}
    assert ints("access_with_adjusted_size") == {"addr": 0, "size": 2, "access_size_min": 1, "access_size_max": 4}
    assert ints("address_space_rw") == {"addr": 496, "len": 2, "is_write": "true"}
    assert by["access_with_adjusted_size"].args["mr"] == by["memory_region_write_accessor"].args["mr"]
    assert by["cpu_outw"].args["addr"] == 496
    # caller frames sit on their call lines at v1.6.1 (source map calls_at)
    assert (by["cpu_outw"].file, by["cpu_outw"].line) == ("ioport.c", 77)
    assert (by["address_space_write"].file, by["address_space_write"].line) == ("exec.c", 2035)
    assert (by["io_mem_write"].file, by["io_mem_write"].line) == ("memory.c", 1748)
    assert (by["memory_region_dispatch_write"].file, by["memory_region_dispatch_write"].line) == ("memory.c", 984)
    assert (by["memory_region_write_accessor"].file, by["memory_region_write_accessor"].line) == ("memory.c", 440)
