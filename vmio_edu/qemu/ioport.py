"""ioport.c (QEMU v1.6.1): port I/O as seen from the CPU, and the glue from the memory API to old-style
per-port device callbacks (`MemoryRegionPortio` lists, as the IDE controller registers them).

`cpu_outw(0x1f0, v)` turns the port access into an access to the I/O address space: `address_space_write`
(exec.c) → ... → `portio_write` here → the device's `write(opaque, port, val)`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from ..trace.tracepoint import tracepoint
from .exec import address_space_read, address_space_write
from .memory import MemoryRegion, MemoryRegionOps, memory_region_add_subregion
from .state import qemu_state


@dataclass
class MemoryRegionPortio:
    """One entry of a device's port list: ports [offset, offset+len) answering accesses of `size` bytes.

    `read(opaque, port) -> int` and `write(opaque, port, val)` get the absolute port number.
    """

    offset: int
    len: int
    size: int
    read: Callable[[Any, int], int] | None = None
    write: Callable[[Any, int, int], None] | None = None
    base: int = 0  # set by portio_list_add: the first port of the region this entry landed in


@dataclass
class MemoryRegionPortioList:
    """The opaque of one port region: the entries that fall in it, and the device's opaque."""

    ports: list[MemoryRegionPortio]
    portio_opaque: Any


@dataclass
class PortioList:
    ports: list[MemoryRegionPortio] = field(default_factory=list)
    opaque: Any = None
    name: str = ""
    regions: list[MemoryRegion] = field(default_factory=list)


def portio_list_init(piolist: PortioList, callbacks: list[MemoryRegionPortio], opaque: Any, name: str) -> None:
    piolist.ports, piolist.opaque, piolist.name = list(callbacks), opaque, name


@tracepoint("qemu-memory", args=("piolist", "address_space", "start"))
def portio_list_add(piolist: PortioList, address_space, start: int) -> None:
    """Map the list at port `start`. Overlapping entries share one region, as portio_list_add_1 does."""
    address_space = getattr(address_space, "root", address_space)  # an AddressSpace or its root region
    entries = sorted(piolist.ports, key=lambda p: p.offset)
    group: list[MemoryRegionPortio] = []
    hi = None
    for p in entries + [None]:
        if p is not None and (hi is None or p.offset < hi):
            group.append(p)
            hi = max(hi or 0, p.offset + p.len)
            continue
        if group:
            _portio_list_add_1(piolist, address_space, group, start)
        group, hi = ([p], p.offset + p.len) if p is not None else ([], None)


def portio_ops() -> MemoryRegionOps:
    """ioport.c:199-205: the ops of every port-list region. Misaligned accesses are valid and reach the
    device whole (`.valid.unaligned`, `.impl.unaligned`): an outw to 0x1f1 is ide_data_writew(0x1f1)."""
    return MemoryRegionOps(portio_read, portio_write, valid_unaligned=True, impl_unaligned=True)


def _portio_list_add_1(piolist: PortioList, space: MemoryRegion, group: list[MemoryRegionPortio],
                       start: int) -> None:
    off_low = min(p.offset for p in group)
    off_high = max(p.offset + p.len for p in group)
    ports = [MemoryRegionPortio(p.offset - off_low, p.len, p.size, p.read, p.write, start + off_low)
             for p in group]
    mrpio = MemoryRegionPortioList(ports, piolist.opaque)
    mr = MemoryRegion(piolist.name, off_high - off_low, portio_ops(), mrpio)
    memory_region_add_subregion(space, start + off_low, mr)
    piolist.regions.append(mr)


@tracepoint("qemu-memory", args=("mrpio", "offset=addr", "size", "write"))
def find_portio(mrpio: MemoryRegionPortioList, addr: int, size: int, write: bool) -> MemoryRegionPortio | None:
    """The entry covering `addr` for accesses of exactly `size` bytes in this direction."""
    for mrp in mrpio.ports:
        if mrp.offset <= addr < mrp.offset + mrp.len and mrp.size == size and \
                (mrp.write if write else mrp.read) is not None:
            return mrp
    return None


@tracepoint("qemu-memory", args=("opaque=mrpio", "addr", "data", "size"))
def portio_write(mrpio: MemoryRegionPortioList, addr: int, data: int, size: int) -> None:
    """Call the device's per-port write; a 16-bit access with no 16-bit entry becomes two byte writes."""
    mrp = find_portio(mrpio, addr, size, True)
    if mrp is not None:
        mrp.write(mrpio.portio_opaque, mrp.base + addr, data)
    elif size == 2:
        mrp = find_portio(mrpio, addr, 1, True)
        if mrp is not None:
            mrp.write(mrpio.portio_opaque, mrp.base + addr, data & 0xFF)
            mrp.write(mrpio.portio_opaque, mrp.base + addr + 1, data >> 8)


@tracepoint("qemu-memory", args=("opaque=mrpio", "addr", "size"))
def portio_read(mrpio: MemoryRegionPortioList, addr: int, size: int) -> int:
    """Call the device's per-port read; with no entry the bus floats high (all ones)."""
    mrp = find_portio(mrpio, addr, size, False)
    if mrp is not None:
        return mrp.read(mrpio.portio_opaque, mrp.base + addr)
    if size == 2:
        mrp = find_portio(mrpio, addr, 1, False)
        if mrp is not None:
            return mrp.read(mrpio.portio_opaque, mrp.base + addr) | \
                (mrp.read(mrpio.portio_opaque, mrp.base + addr + 1) << 8)
    return (1 << (size * 8)) - 1


def _out(addr: int, val: int, size: int) -> None:
    address_space_write(qemu_state().address_space_io, addr, val.to_bytes(size, "little"), size)


def _in(addr: int, size: int) -> int:
    buf = bytearray(size)
    address_space_read(qemu_state().address_space_io, addr, buf, size)
    return int.from_bytes(buf, "little")


@tracepoint("qemu-cpu", args=("addr", "val"))
def cpu_outb(addr: int, val: int) -> None:
    """An 8-bit OUT from the guest, as an access to the I/O address space."""
    _out(addr, val, 1)


@tracepoint("qemu-cpu", args=("addr", "val"))
def cpu_outw(addr: int, val: int) -> None:
    """A 16-bit OUT: `stw_p(buf, val)` then `address_space_write(&address_space_io, addr, buf, 2)`."""
    _out(addr, val, 2)


@tracepoint("qemu-cpu", args=("addr", "val"))
def cpu_outl(addr: int, val: int) -> None:
    _out(addr, val, 4)


@tracepoint("qemu-cpu", args=("addr",))
def cpu_inb(addr: int) -> int:
    return _in(addr, 1)


@tracepoint("qemu-cpu", args=("addr",))
def cpu_inw(addr: int) -> int:
    """A 16-bit IN: `address_space_read(&address_space_io, addr, buf, 2)` then `lduw_p(buf)`."""
    return _in(addr, 2)


@tracepoint("qemu-cpu", args=("addr",))
def cpu_inl(addr: int) -> int:
    return _in(addr, 4)
