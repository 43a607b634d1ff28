"""The IDE port lists mapped into an I/O address space through ioport.c's portio lists: the guest's
accesses reach the right handler with the absolute port number (addr=496 for 0x1f0)."""
from __future__ import annotations

import pytest

from vmio_edu.qemu.exec import AddressSpace, address_space_read, address_space_write
from vmio_edu.qemu.memory import MemoryRegion
from vmio_edu.trace.tracepoint import ThreadContext, current_context, set_context

from idebench import SECTOR, Rig, sector_pattern, words_of


class Calls:
    """Trace hooks that note each qemu-ide call with its shown arguments."""

    def __init__(self):
        self.calls = []

    def enter(self, tp, args, ctx):
        if tp.layer == "qemu-ide":
            # the numbers (objects such as the IDEBus `opaque` are the backtrace's business)
            self.calls.append((tp.name, {k: v for k, v in zip(tp.argnames, args) if isinstance(v, int)}))

    def leave(self, tp, result, ctx):
        pass


@pytest.fixture
def io(monkeypatch):
    space = AddressSpace("I/O", MemoryRegion("io", 0x10000))
    rig = Rig(monkeypatch, address_space_io=space)
    calls = Calls()
    old = current_context()
    set_context(ThreadContext("vcpu0", hooks=calls))
    yield space, rig, calls
    set_context(old)


def outb(space, port, val):
    address_space_write(space, port, bytes([val]), 1)


def outw(space, port, val):
    address_space_write(space, port, val.to_bytes(2, "little"), 2)


def inb(space, port):
    buf = bytearray(1)
    address_space_read(space, port, buf, 1)
    return buf[0]


def inw(space, port):
    buf = bytearray(2)
    address_space_read(space, port, buf, 2)
    return int.from_bytes(buf, "little")


def test_write_through_the_memory_api_reaches_the_handlers_with_absolute_ports(io):
    space, rig, calls = io
    data = sector_pattern(1, seed=2)
    for port, val in ((0x1F6, 0xE0), (0x1F2, 1), (0x1F3, 9), (0x1F4, 0), (0x1F5, 0), (0x1F7, 0x30)):
        outb(space, port, val)
    assert inb(space, 0x3F6) == 0x58
    for w in words_of(data):
        outw(space, 0x1F0, w)
    assert inb(space, 0x3F6) == 0xD0
    [req] = rig.aio.requests
    assert req.sector_num == 9 and req.data == data
    writes = [a for n, a in calls.calls if n == "ide_data_writew"]
    assert len(writes) == 256 and {a["addr"] for a in writes} == {496}
    assert writes[0]["val"] == words_of(data)[0]
    assert ("ide_ioport_write", {"addr": 0x1F7, "val": 0x30}) in calls.calls
    assert ("ide_status_read", {"addr": 0x3F6}) in calls.calls
    # the 256th word's call chain: ide_data_writew -> ide_sector_write (-> the block layer)
    names = [n for n, _ in calls.calls]
    last_w = len(names) - 1 - names[::-1].index("ide_data_writew")
    assert "ide_sector_write" in names[last_w:]


def test_identify_read_through_the_memory_api(io):
    space, rig, calls = io
    outb(space, 0x1F7, 0xEC)
    assert inb(space, 0x1F7) == 0x58 and rig.line.level == 0  # status read through 0x1f7 acks
    words = [inw(space, 0x1F0) for _ in range(256)]
    assert words[0] == 0x0040 and words[60] == 2048 & 0xFFFF
    assert inw(space, 0x1F0) == 0  # past the window
    assert inb(space, 0x1F0) == 0xFF  # byte read of the data port
    assert {a["addr"] for n, a in calls.calls if n == "ide_data_readw"} == {496}


def test_dword_data_port_and_secondary_channel(io):
    space, rig, calls = io
    outb(space, 0x1F7, 0x30)
    data = sector_pattern(1, seed=4)
    for i in range(0, SECTOR, 4):
        address_space_write(space, 0x1F0, data[i:i + 4], 4)
    assert rig.aio.requests[0].data == data
    # the secondary channel (0x170/0x376) is mapped but has no drives: status reads 0
    assert inb(space, 0x177) == 0 and inb(space, 0x376) == 0
    assert inb(space, 0x170) == 0xFF
