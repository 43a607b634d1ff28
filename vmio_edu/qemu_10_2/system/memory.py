"""system/memory.c (QEMU v10.2.0): dispatching an access to a MemoryRegion's callbacks (1.6.1's memory.c).

    memory_region_dispatch_write(mr, addr, data, op, attrs) → access_with_adjusted_size
      → memory_region_write_accessor → mr->ops->write (portio_write for the IDE ports)

Differences from 1.6.1 on this path: the size travels as a MemOp (`op`, log2 of the size: MO_16 = 1 for
an outw) and every stage takes the transaction attributes; `access_with_adjusted_size` applies the
device's re-entrancy guard (`mem_reentrancy_guard`: a device access may not start another access to the
same device) and ORs the MemTxResults of the pieces. The region types are vmio_edu.qemu.memory's (the
fields this path reads did not change).
"""
from __future__ import annotations

from typing import Callable

from ...trace.tracepoint import tracepoint
from ...qemu.memory import MemoryRegion, MemoryRegionOps, memory_region_add_subregion  # noqa: F401

MEMTX_OK, MEMTX_DECODE_ERROR, MEMTX_ACCESS_ERROR = 0, 1 << 1, 1 << 2
MO_8, MO_16, MO_32, MO_64 = 0, 1, 2, 3


def size_memop(size: int) -> int:
    """include/exec/memop.h: the MemOp of an access of `size` bytes (ctz32(size))."""
    return (size & -size).bit_length() - 1


def memop_size(op: int) -> int:
    return 1 << (op & 3)


def memory_region_access_valid(mr: MemoryRegion, addr: int, size: int, is_write: bool, attrs: int) -> bool:
    """system/memory.c:1401: refused by valid.accepts (io_mem_unassigned refuses all), misaligned without
    valid.unaligned, or outside valid.min/max_access_size when a max is given."""
    if getattr(mr, "rejects", False):
        return False
    if not mr.ops.valid_unaligned and addr & (size - 1):
        return False
    vmax = mr.ops.valid_max_access_size
    if not vmax:
        return True
    return getattr(mr.ops, "valid_min_access_size", 0) <= size <= vmax


@tracepoint("qemu-memory", args=("mr", "addr", "value", "size", "shift", "mask", "attrs"))
def memory_region_write_accessor(mr: MemoryRegion, addr: int, value: list, size: int, shift: int, mask: int,
                                 attrs: int) -> int:
    """Hand one piece of `*value` to the device's write callback."""
    tmp = (value[0] >> shift) & mask  # memory_region_shift_write_access
    mr.ops.write(mr.opaque, addr, tmp, size)
    return MEMTX_OK


@tracepoint("qemu-memory", args=("mr", "addr", "value", "size", "shift", "mask", "attrs"))
def memory_region_read_accessor(mr: MemoryRegion, addr: int, value: list, size: int, shift: int, mask: int,
                                attrs: int) -> int:
    """Read one piece from the device's read callback into `*value`."""
    tmp = mr.ops.read(mr.opaque, addr, size)
    value[0] |= (tmp & mask) << shift  # memory_region_shift_read_access
    return MEMTX_OK


@tracepoint("qemu-memory", args=("addr", "value", "size", "access_size_min", "access_size_max", "access_fn",
                                 "mr", "attrs"))
def access_with_adjusted_size(addr: int, value: list, size: int, access_size_min: int, access_size_max: int,
                              access_fn: Callable, mr: MemoryRegion, attrs: int) -> int:
    """Cut an access of `size` bytes into pieces the device implements (little-endian devices: piece i at
    shift i*8), under the device's re-entrancy guard. `value` is C's uint64_t * (a one-item list)."""
    if not access_size_min:
        access_size_min = 1
    if not access_size_max:
        access_size_max = 4
    dev = getattr(mr, "dev", None)
    guard = dev is not None
    if guard:
        if getattr(dev, "engaged_in_io", False):
            return MEMTX_ACCESS_ERROR  # "Blocked re-entrant IO on MemoryRegion"
        dev.engaged_in_io = True
    r = MEMTX_OK
    access_size = max(min(size, access_size_max), access_size_min)
    access_mask = (1 << (access_size * 8)) - 1
    for i in range(0, size, access_size):
        r |= access_fn(mr, addr + i, value, access_size, i * 8, access_mask, attrs)
    if guard:
        dev.engaged_in_io = False
    return r


@tracepoint("qemu-memory", args=("mr", "addr", "data", "op", "attrs"))
def memory_region_dispatch_write(mr: MemoryRegion, addr: int, data: int, op: int, attrs: int) -> int:
    """Check the access, then cut it for the device's write accessor. An invalid access goes to
    unassigned_mem_write (nothing) and returns MEMTX_DECODE_ERROR. (Under KVM ioeventfds are the
    kernel's: the eventfd check here is skipped, as `!kvm_enabled()` says.)"""
    size = memop_size(op)
    if not memory_region_access_valid(mr, addr, size, True, attrs):
        return MEMTX_DECODE_ERROR
    v = [data]
    return access_with_adjusted_size(addr, v, size, mr.ops.impl_min_access_size, mr.ops.impl_max_access_size,
                                     memory_region_write_accessor, mr, attrs)


@tracepoint("qemu-memory", args=("mr", "addr", "pval", "size", "attrs"))
def memory_region_dispatch_read1(mr: MemoryRegion, addr: int, pval: list, size: int, attrs: int) -> int:
    pval[0] = 0
    return access_with_adjusted_size(addr, pval, size, mr.ops.impl_min_access_size, mr.ops.impl_max_access_size,
                                     memory_region_read_accessor, mr, attrs)


@tracepoint("qemu-memory", args=("mr", "addr", "pval", "op", "attrs"))
def memory_region_dispatch_read(mr: MemoryRegion, addr: int, pval: list, op: int, attrs: int) -> int:
    """An invalid access reads unassigned_mem_read's 0 and returns MEMTX_DECODE_ERROR."""
    size = memop_size(op)
    if not memory_region_access_valid(mr, addr, size, False, attrs):
        pval[0] = 0
        return MEMTX_DECODE_ERROR
    return memory_region_dispatch_read1(mr, addr, pval, size, attrs)
