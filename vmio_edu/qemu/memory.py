"""memory.c (QEMU v1.6.1): MemoryRegions and the dispatch of an access to a device's callbacks.

A PIO or MMIO access that is not plain RAM reaches a device through
`io_mem_write` → `memory_region_dispatch_write` → `access_with_adjusted_size` →
`memory_region_write_accessor` → `ops.write`. For port I/O, `ops` is ioport.c's `portio_ops`, so the next
stage is `portio_write`. Reads mirror this.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from ..trace.tracepoint import tracepoint


@dataclass
class MemoryRegionOps:
    """include/exec/memory.h: a device's read/write callbacks and the access sizes it implements."""

    read: Callable[[Any, int, int], int] | None = None  # read(opaque, addr, size)
    write: Callable[[Any, int, int, int], None] | None = None  # write(opaque, addr, data, size)
    impl_min_access_size: int = 0  # 0 means "1"
    impl_max_access_size: int = 0  # 0 means "4"
    impl_unaligned: bool = False  # the callbacks take misaligned accesses whole (exec.c memory_access_size)
    valid_max_access_size: int = 0  # the largest access a CPU may make; 0 means "4"
    valid_unaligned: bool = False  # misaligned accesses are valid (else memory_region_access_valid refuses)


@dataclass
class MemoryRegion:
    """A device window (or a container) at `addr` in its parent's space, `size` bytes long."""

    name: str
    size: int
    ops: MemoryRegionOps | None = None
    opaque: Any = None
    addr: int = 0
    subregions: list["MemoryRegion"] = field(default_factory=list)

    def view(self) -> dict:
        return {"name": self.name, "addr": self.addr, "size": self.size,
                "subregions": [r.view() for r in self.subregions]}


def memory_region_init_io(name: str, size: int, ops: MemoryRegionOps, opaque: Any) -> MemoryRegion:
    return MemoryRegion(name, size, ops, opaque)


def memory_region_add_subregion(parent: MemoryRegion, offset: int, sub: MemoryRegion) -> None:
    """Map `sub` at `offset` in `parent`. Overlaps are refused (the model has no priorities)."""
    for r in parent.subregions:
        if offset < r.addr + r.size and r.addr < offset + sub.size:
            raise ValueError(f"{sub.name} at {offset:#x} overlaps {r.name} at {r.addr:#x}")
    sub.addr = offset
    parent.subregions.append(sub)
    parent.subregions.sort(key=lambda r: r.addr)


def memory_region_del_subregion(parent: MemoryRegion, sub: MemoryRegion) -> None:
    """Unmap `sub` from `parent` (a PCI BAR moving or being disabled: pci_update_mappings)."""
    parent.subregions.remove(sub)


def _sizes(mr: MemoryRegion) -> tuple[int, int]:
    return mr.ops.impl_min_access_size or 1, mr.ops.impl_max_access_size or 4


@tracepoint("qemu-memory", args=("mr", "addr", "val", "size"))
def io_mem_write(mr: MemoryRegion, addr: int, val: int, size: int) -> bool:
    """Write `val` to a non-RAM region: just the entry into the dispatcher."""
    return memory_region_dispatch_write(mr, addr, val, size)


@tracepoint("qemu-memory", args=("mr", "addr", "size"))
def io_mem_read(mr: MemoryRegion, addr: int, size: int) -> int:
    return memory_region_dispatch_read(mr, addr, size)


def memory_region_access_valid(mr: MemoryRegion, addr: int, size: int, is_write: bool) -> bool:
    """memory.c:900: a misaligned access is invalid unless the region says `valid.unaligned` (the model's
    regions have no `valid.accepts` callback, so the rest of the C check always passes)."""
    return mr.ops.valid_unaligned or not addr & (size - 1)


@tracepoint("qemu-memory", args=("mr", "addr", "data", "size"))
def memory_region_dispatch_write(mr: MemoryRegion, addr: int, data: int, size: int) -> bool:
    """Split the access into sizes the device implements and call the write accessor for each piece.
    An invalid access goes to unassigned_mem_write (which does nothing) and returns true."""
    if not memory_region_access_valid(mr, addr, size, True):
        return True
    lo, hi = _sizes(mr)
    access_with_adjusted_size(addr, [data], size, lo, hi, memory_region_write_accessor, mr)
    return False


@tracepoint("qemu-memory", args=("mr", "addr", "size"))
def memory_region_dispatch_read(mr: MemoryRegion, addr: int, size: int) -> int:
    """An invalid access reads unassigned_mem_read's 0 (memory.c:866 at v1.6.1)."""
    if not memory_region_access_valid(mr, addr, size, False):
        return 0
    return memory_region_dispatch_read1(mr, addr, size)


@tracepoint("qemu-memory", args=("mr", "addr", "size"))
def memory_region_dispatch_read1(mr: MemoryRegion, addr: int, size: int) -> int:
    lo, hi = _sizes(mr)
    value = [0]
    access_with_adjusted_size(addr, value, size, lo, hi, memory_region_read_accessor, mr)
    return value[0]


@tracepoint("qemu-memory", args=("addr", "value", "size", "access_size_min", "access_size_max", "access", "mr=opaque"))
def access_with_adjusted_size(addr: int, value: list, size: int, access_size_min: int, access_size_max: int,
                              access: Callable, opaque: MemoryRegion) -> None:
    """Cut an access of `size` bytes into device-sized pieces (`value` is a one-item list: C's pointer)."""
    access_size = max(min(size, access_size_max), access_size_min)
    access_mask = (1 << (access_size * 8)) - 1
    for i in range(0, size, access_size):  # little-endian target: piece i sits at shift i*8
        access(opaque, addr + i, value, access_size, i * 8, access_mask)


@tracepoint("qemu-memory", args=("mr", "addr", "value", "size", "shift", "mask"))
def memory_region_write_accessor(mr: MemoryRegion, addr: int, value: list, size: int, shift: int,
                                 mask: int) -> None:
    """Hand one piece of the value to the device's write callback."""
    mr.ops.write(mr.opaque, addr, (value[0] >> shift) & mask, size)


@tracepoint("qemu-memory", args=("mr", "addr", "value", "size", "shift", "mask"))
def memory_region_read_accessor(mr: MemoryRegion, addr: int, value: list, size: int, shift: int,
                                mask: int) -> None:
    tmp = mr.ops.read(mr.opaque, addr, size)
    value[0] |= (tmp & mask) << shift
