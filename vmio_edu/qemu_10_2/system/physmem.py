"""system/physmem.c (QEMU v10.2.0): address spaces and the access loop (1.6.1's exec.c).

A CPU-side access walks a *FlatView*, the flattened map of an AddressSpace:

    address_space_rw → address_space_write → flatview_write → flatview_write_continue
      → flatview_write_continue_step (per piece: prepare_mmio_access takes the BQL if the caller does not
        hold it, memory_access_size cuts the piece, memory_region_dispatch_write, bql_unlock)

(reads: address_space_read_full → flatview_read → flatview_read_continue → flatview_read_continue_step →
memory_region_dispatch_read). 1.6.1's `io_mem_write` step is gone, and the BQL is taken *here*, per
piece, because 10.2's `kvm_cpu_exec` handles I/O exits without it.

The model's FlatView is the AddressSpace's root region with its (sorted, non-overlapping) subregions:
`flatview_translate` finds the region under an address. Guest RAM is the machine's mmap (a "pc.ram"
region that `memory_access_is_direct` accepts); an address with nothing mapped lands on the root region
itself, whose ops are `unassigned_io_ops` for the I/O space (reads are all ones) and on io_mem_unassigned
for memory (reads are 0), as in 10.2.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...trace.tracepoint import tracepoint
from ...qemu.memory import MemoryRegion, MemoryRegionOps
from .cpus import bql_locked, bql_lock, bql_unlock
from .memory import memory_region_dispatch_read, memory_region_dispatch_write, size_memop

MEMTX_OK = 0
MEMTX_ERROR = 1 << 0
MEMTX_DECODE_ERROR = 1 << 1
MEMTX_ACCESS_ERROR = 1 << 2
MEMTXATTRS_UNSPECIFIED = 0  # MemTxAttrs { .unspecified = 1 }: the model passes the attributes as an int
_FILE = "../system/physmem.c"


@dataclass
class AddressSpace:
    """`address_space_io` (64 KiB of ports) or `address_space_memory` (guest-physical)."""

    name: str
    root: MemoryRegion
    ram: Any = None  # guest RAM (address_space_memory), mapped at guest-physical 0
    # the memory listeners filtering on this space (AddressSpace.listeners): KVM's, registered by kvm_init
    listeners: list = field(default_factory=list)
    current_map: Any = field(default=None, repr=False)  # its FlatView (address_space_to_flatview)

    def view(self) -> dict:
        return {"name": self.name, "root": self.root.view()}


class FlatView:
    """The flattened map of one AddressSpace (include/exec/memory.h `struct FlatView`), an object of its
    own: a backtrace shows `fv=` as a heap pointer, not as `&address_space_io`. The model reads the map
    off its space's root region (see the module docstring) instead of keeping the flat ranges."""

    def __init__(self, space: AddressSpace) -> None:
        self.space = space

    @property
    def root(self) -> MemoryRegion:
        return self.space.root

    @property
    def ram_mr(self) -> Any:
        return getattr(self.space, "ram_mr", None)


@dataclass
class RamRegion(MemoryRegion):
    """A RAM region ("pc.ram"): accessed by memmove, never through callbacks."""

    ram: Any = field(default=None, repr=False)


def _unassigned_io_read(opaque: Any, addr: int, size: int) -> int:
    return (1 << 64) - 1  # system/ioport.c unassigned_io_read: -1ULL


def _unassigned_io_write(opaque: Any, addr: int, val: int, size: int) -> None:
    pass


unassigned_io_ops = MemoryRegionOps(_unassigned_io_read, _unassigned_io_write)
# io_mem_unassigned (system/memory.c): reads 0; its valid.accepts refuses every access
io_mem_unassigned = MemoryRegion("unassigned", 1 << 64, MemoryRegionOps(lambda o, a, s: 0, lambda o, a, v, s: None))
io_mem_unassigned.rejects = True


def address_space_init_io(name: str = "I/O") -> AddressSpace:
    """`address_space_io` over the "io" root region (unassigned_io_ops, 64 KiB)."""
    return AddressSpace(name, MemoryRegion("io", 0x10000, unassigned_io_ops))


def address_space_init_memory(ram: Any) -> AddressSpace:
    """`address_space_memory` over "system" with "pc.ram" at 0 (the model keeps RAM out of subregions)."""
    space = AddressSpace("memory", MemoryRegion("system", 1 << 32), ram)
    space.ram_mr = RamRegion("pc.ram", len(ram), ram=ram)
    return space


def address_space_to_flatview(space: AddressSpace) -> FlatView:
    """The current FlatView of the space (`as->current_map`; the model makes it on first use, and its map
    follows the root's subregions, so it never goes stale)."""
    if space.current_map is None:
        space.current_map = FlatView(space)
    return space.current_map


def flatview_translate(fv: FlatView, addr: int, plen: int, is_write: bool, attrs: int
                       ) -> tuple[MemoryRegion, int, int]:
    """The region under `addr`, the offset in it (C's *xlat) and how much of `plen` it covers (*plen)."""
    for mr in fv.root.subregions:
        if mr.addr <= addr < mr.addr + mr.size:
            return mr, addr - mr.addr, min(plen, mr.addr + mr.size - addr)
    nxt = min((mr.addr for mr in fv.root.subregions if mr.addr > addr), default=addr + plen)
    l = min(plen, nxt - addr)
    ram_mr = getattr(fv, "ram_mr", None)
    if ram_mr is not None and addr < ram_mr.size:
        return ram_mr, addr, min(l, ram_mr.size - addr)
    if fv.root.ops is not None:
        return fv.root, addr, l  # the I/O space's root answers with unassigned_io_ops
    return io_mem_unassigned, addr, l


def memory_access_is_direct(mr: MemoryRegion, is_write: bool, attrs: int) -> bool:
    """RAM is copied with memmove/memcpy; everything else goes through the region's ops."""
    return isinstance(mr, RamRegion)


def flatview_access_allowed(mr: MemoryRegion, attrs: int, addr: int, len: int) -> bool:  # noqa: A002
    """Only MemTxAttrs.memory transactions can be refused; the CPU's accesses never set it."""
    return True


@tracepoint("qemu-memory", args=("mr", "l", "addr"))
def memory_access_size(mr: MemoryRegion, l: int, addr: int) -> int:
    """How much of `l` bytes one access hands the region: at most valid.max_access_size (4 if unset),
    bounded by the address's alignment unless impl.unaligned (portio regions are), then pow2floor."""
    access_size_max = mr.ops.valid_max_access_size or 4
    if not mr.ops.impl_unaligned:
        align_size_max = addr & -addr
        if align_size_max != 0 and align_size_max < access_size_max:
            access_size_max = align_size_max
    if l > access_size_max:
        l = access_size_max
    return 1 << (l.bit_length() - 1) if l else 0


@tracepoint("qemu-memory", args=("mr",))
def prepare_mmio_access(mr: MemoryRegion) -> bool:
    """Take the BQL for a device access unless the caller holds it (or the region is lockless_io);
    returns whether the caller must drop it again. (No coalesced MMIO on this path.)"""
    release_lock = False
    if not bql_locked() and not getattr(mr, "lockless_io", False):
        bql_lock(_FILE, 3201)
        release_lock = True
    return release_lock


def _ldn_he_p(buf: Any, l: int) -> int:
    return int.from_bytes(bytes(buf[0:l]), "little")  # (an x86 host: host endianness is little)


@tracepoint("qemu-memory", args=("attrs", "buf", "len", "mr_addr", "l", "mr"))
def flatview_write_continue_step(attrs: int, buf: memoryview, len: int, mr_addr: int, l: list,  # noqa: A002
                                 mr: MemoryRegion) -> int:
    """One piece of a write: a device region gets `memory_region_dispatch_write` under the BQL, RAM a
    memmove. `l` is C's `hwaddr *l` (a one-item list): cut down to the access size here."""
    if not flatview_access_allowed(mr, attrs, mr_addr, l[0]):
        return MEMTX_ACCESS_ERROR
    if not memory_access_is_direct(mr, True, attrs):
        release_lock = prepare_mmio_access(mr)
        l[0] = memory_access_size(mr, l[0], mr_addr)
        val = _ldn_he_p(buf, l[0])
        result = memory_region_dispatch_write(mr, mr_addr, val, size_memop(l[0]), attrs)
        if release_lock:
            bql_unlock()
        return result
    mr.ram[mr_addr:mr_addr + l[0]] = bytes(buf[0:l[0]])  # RAM: memmove + invalidate_and_set_dirty
    return MEMTX_OK


@tracepoint("qemu-memory", args=("fv", "addr", "attrs", "ptr", "len", "mr_addr", "l", "mr"))
def flatview_write_continue(fv: FlatView, addr: int, attrs: int, ptr: memoryview, len: int,  # noqa: A002
                            mr_addr: int, l: int, mr: MemoryRegion) -> int:
    """Write piece after piece, translating again after each one, until `len` bytes are done."""
    result = MEMTX_OK
    buf = ptr
    while True:
        pl = [l]
        result |= flatview_write_continue_step(attrs, buf, len, mr_addr, pl, mr)
        l = pl[0]
        len -= l
        buf = buf[l:]
        addr += l
        if not len:
            break
        l = len
        mr, mr_addr, l = flatview_translate(fv, addr, l, True, attrs)
    return result


@tracepoint("qemu-memory", args=("fv", "addr", "attrs", "buf", "len"))
def flatview_write(fv: FlatView, addr: int, attrs: int, buf: memoryview, len: int) -> int:  # noqa: A002
    """Translate the first piece and hand the write to flatview_write_continue."""
    l = len
    mr, mr_addr, l = flatview_translate(fv, addr, l, True, attrs)
    if not flatview_access_allowed(mr, attrs, mr_addr, l):
        return MEMTX_ACCESS_ERROR
    return flatview_write_continue(fv, addr, attrs, buf, len, mr_addr, l, mr)


@tracepoint("qemu-memory", args=("attrs", "buf", "len", "mr_addr", "l", "mr"))
def flatview_read_continue_step(attrs: int, buf: memoryview, len: int, mr_addr: int, l: list,  # noqa: A002
                                mr: MemoryRegion) -> int:
    """One piece of a read: a device region's value (under the BQL) stored into `buf`, or a RAM copy."""
    if not flatview_access_allowed(mr, attrs, mr_addr, l[0]):
        return MEMTX_ACCESS_ERROR
    if not memory_access_is_direct(mr, False, attrs):
        release_lock = prepare_mmio_access(mr)
        l[0] = memory_access_size(mr, l[0], mr_addr)
        val = [0]
        result = memory_region_dispatch_read(mr, mr_addr, val, size_memop(l[0]), attrs)
        buf[0:l[0]] = (val[0] & ((1 << (8 * l[0])) - 1)).to_bytes(l[0], "little")  # stn_he_p
        if release_lock:
            bql_unlock()
        return result
    buf[0:l[0]] = bytes(mr.ram[mr_addr:mr_addr + l[0]])
    return MEMTX_OK


@tracepoint("qemu-memory", args=("fv", "addr", "attrs", "ptr", "len", "mr_addr", "l", "mr"))
def flatview_read_continue(fv: FlatView, addr: int, attrs: int, ptr: memoryview, len: int,  # noqa: A002
                           mr_addr: int, l: int, mr: MemoryRegion) -> int:
    result = MEMTX_OK
    buf = ptr
    while True:
        pl = [l]
        result |= flatview_read_continue_step(attrs, buf, len, mr_addr, pl, mr)
        l = pl[0]
        len -= l
        buf = buf[l:]
        addr += l
        if not len:
            break
        l = len
        mr, mr_addr, l = flatview_translate(fv, addr, l, False, attrs)
    return result


@tracepoint("qemu-memory", args=("fv", "addr", "attrs", "buf", "len"))
def flatview_read(fv: FlatView, addr: int, attrs: int, buf: memoryview, len: int) -> int:  # noqa: A002
    l = len
    mr, mr_addr, l = flatview_translate(fv, addr, l, False, attrs)
    if not flatview_access_allowed(mr, attrs, mr_addr, l):
        return MEMTX_ACCESS_ERROR
    return flatview_read_continue(fv, addr, attrs, buf, len, mr_addr, l, mr)


def _mv(buf: Any) -> memoryview:
    return buf if isinstance(buf, memoryview) else memoryview(buf)


@tracepoint("qemu-memory", args=("as=space", "addr", "attrs", "buf", "len"))
def address_space_read_full(space: AddressSpace, addr: int, attrs: int, buf: Any, len: int) -> int:  # noqa: A002
    """Read `len` bytes (under RCU, not modelled) through the space's current FlatView."""
    result = MEMTX_OK
    if len > 0:
        result = flatview_read(address_space_to_flatview(space), addr, attrs, _mv(buf), len)
    return result


@tracepoint("qemu-memory", args=("as=space", "addr", "attrs", "buf", "len"))
def address_space_write(space: AddressSpace, addr: int, attrs: int, buf: Any, len: int) -> int:  # noqa: A002
    """Write `len` bytes through the space's current FlatView."""
    result = MEMTX_OK
    if len > 0:
        result = flatview_write(address_space_to_flatview(space), addr, attrs, _mv(buf), len)
    return result


@tracepoint("qemu-memory", args=("as=space", "addr", "attrs", "buf", "len", "is_write"))
def address_space_rw(space: AddressSpace, addr: int, attrs: int, buf: Any, len: int,  # noqa: A002
                     is_write: bool) -> int:
    """A read or a write: since QEMU 5.x just the choice between the two."""
    if is_write:
        return address_space_write(space, addr, attrs, buf, len)
    return address_space_read_full(space, addr, attrs, buf, len)
