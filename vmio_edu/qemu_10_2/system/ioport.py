"""system/ioport.c (QEMU v10.2.0): old-style per-port device callbacks behind the memory API.

A device such as IDE registers a `MemoryRegionPortio` list; `portio_list_add` maps it as regions whose
ops are `portio_ops`, so an access lands in `portio_write(opaque, addr, data, size)` → the entry's
`write(portio_opaque, port, val)`. `cpu_outw` and friends still exist in 10.2 (system/ioport.c:61-109) but
KVM's PIO exits no longer use them (accel/kvm/kvm-all.c calls address_space_rw).

Changes since 1.6.1: the port passed on is `mrpio->mr.addr + addr`; a 16-bit access with only a byte
entry becomes two byte accesses only while the second byte is still inside that entry; a region spans
`off_low .. off_low + len + size - 1` of its first entry (portio_list_add), so the IDE list is one 8-port
region whose 2- and 4-byte data entries have len 1 (an outw to 0x1f1 is two byte writes in 10.2).
"""
from __future__ import annotations

from typing import Any

from ...trace.tracepoint import tracepoint
from ...qemu.ioport import MemoryRegionPortio, MemoryRegionPortioList, PortioList  # noqa: F401 - the types
from ...qemu.memory import MemoryRegion, MemoryRegionOps, memory_region_add_subregion


@tracepoint("qemu-memory", args=("mrpio", "offset", "size", "write"))
def find_portio(mrpio: MemoryRegionPortioList, offset: int, size: int, write: bool) -> MemoryRegionPortio | None:
    """The entry covering `offset` for accesses of exactly `size` bytes in this direction."""
    for mrp in mrpio.ports:
        if mrp.offset <= offset < mrp.offset + mrp.len and size == mrp.size and \
                (mrp.write if write else mrp.read) is not None:
            return mrp
    return None


@tracepoint("qemu-memory", args=("opaque=mrpio", "addr", "size"))
def portio_read(mrpio: MemoryRegionPortioList, addr: int, size: int) -> int:
    """The device's per-port read; all ones with no entry (two byte reads for a 16-bit access with only a
    byte entry, 0xff for the half past the entry's end)."""
    base = mrpio.mr.addr
    mrp = find_portio(mrpio, addr, size, False)
    data = (1 << (size * 8)) - 1
    if mrp is not None:
        data = mrp.read(mrpio.portio_opaque, base + addr)
    elif size == 2:
        mrp = find_portio(mrpio, addr, 1, False)
        if mrp is not None:
            data = mrp.read(mrpio.portio_opaque, base + addr)
            if addr + 1 < mrp.offset + mrp.len:
                data |= mrp.read(mrpio.portio_opaque, base + addr + 1) << 8
            else:
                data |= 0xFF00
    return data


@tracepoint("qemu-memory", args=("opaque=mrpio", "addr", "data", "size"))
def portio_write(mrpio: MemoryRegionPortioList, addr: int, data: int, size: int) -> None:
    """The device's per-port write; a 16-bit access with only a byte entry becomes byte writes."""
    base = mrpio.mr.addr
    mrp = find_portio(mrpio, addr, size, True)
    if mrp is not None:
        mrp.write(mrpio.portio_opaque, base + addr, data)
    elif size == 2:
        mrp = find_portio(mrpio, addr, 1, True)
        if mrp is not None:
            mrp.write(mrpio.portio_opaque, base + addr, data & 0xFF)
            if addr + 1 < mrp.offset + mrp.len:
                mrp.write(mrpio.portio_opaque, base + addr + 1, data >> 8)


# system/ioport.c portio_ops: little-endian, misaligned accesses valid and passed whole
portio_ops = MemoryRegionOps(portio_read, portio_write, valid_unaligned=True, impl_unaligned=True)


def portio_list_init(piolist: PortioList, owner: Any, callbacks: list[MemoryRegionPortio], opaque: Any,
                     name: str) -> None:
    piolist.ports, piolist.opaque, piolist.name = list(callbacks), opaque, name
    piolist.regions = []


def _portio_list_add_1(piolist: PortioList, pio_init: list[MemoryRegionPortio], start: int, off_low: int,
                       off_high: int, address_space: MemoryRegion) -> None:
    """One region for a run of entries: offsets made zero-based, ops = portio_ops."""
    ports = [MemoryRegionPortio(p.offset - off_low, p.len, p.size, p.read, p.write) for p in pio_init]
    mrpio = MemoryRegionPortioList(ports, piolist.opaque)
    mrpio.mr = MemoryRegion(piolist.name, off_high - off_low, portio_ops, mrpio)
    memory_region_add_subregion(address_space, start + off_low, mrpio.mr)
    piolist.regions.append(mrpio.mr)


@tracepoint("qemu-memory", args=("piolist", "address_space", "start"))
def portio_list_add(piolist: PortioList, address_space: Any, start: int) -> None:
    """Map the (offset-sorted) list at port `start`, one region per run without a hole."""
    address_space = getattr(address_space, "root", address_space)
    ports = piolist.ports
    first = 0
    off_last = off_low = ports[0].offset
    off_high = off_low + ports[0].len + ports[0].size - 1
    for i in range(1, len(ports)):
        pio = ports[i]
        off_last = pio.offset
        if off_last > off_high:  # a hole: close the run
            _portio_list_add_1(piolist, ports[first:i], start, off_low, off_high, address_space)
            first = i
            off_low = off_last
            off_high = off_low + pio.len + pio.size - 1
        elif off_last + pio.len > off_high:
            off_high = off_last + pio.len + ports[first].size - 1
    _portio_list_add_1(piolist, ports[first:], start, off_low, off_high, address_space)
