"""memory.c (QEMU v1.6.1): MemoryRegions and the dispatch of an access to a device's callbacks.

A PIO or MMIO access that is not plain RAM reaches a device through
`io_mem_write` → `memory_region_dispatch_write` → `access_with_adjusted_size` →
`memory_region_write_accessor` → `ops.write`. For port I/O, `ops` is ioport.c's `portio_ops`, so the next
stage is `portio_write`. Reads mirror this.

ioeventfds (API, stable): `memory_region_add_eventfd(mr, addr, size, match_data, data, e)` and
`memory_region_del_eventfd(...)` attach an EventNotifier to a write of `size` bytes at offset `addr` of
`mr` (of value `data` if `match_data`). At the commit that follows, `address_space_update_ioeventfds`
recomputes the address space's set (each region's eventfds shifted to where the region is mapped: mapping
the region later with `memory_region_add_subregion` registers them then) and calls the `eventfd_add` /
`eventfd_del` of the `MemoryListener`s registered on that address space (`memory_listener_register`):
with KVM, kvm-all.c's `kvm_io_listener` (ports) and `kvm_memory_listener` (MMIO) make the KVM_IOEVENTFD
ioctl. The model has no FlatView: a region's place is found by walking up its `parent`s to the root of
an AddressSpace.
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
    ioeventfds: list["MemoryRegionIoeventfd"] = field(default_factory=list, compare=False, repr=False)
    parent: "MemoryRegion | None" = field(default=None, compare=False, repr=False)
    address_space: Any = field(default=None, compare=False, repr=False)  # model: set on an AddressSpace's root

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
    sub.parent = parent
    parent.subregions.append(sub)
    parent.subregions.sort(key=lambda r: r.addr)
    if _has_ioeventfds(sub):  # the commit: the region's ioeventfds now have an address
        memory_region_transaction_commit(parent)


def memory_region_del_subregion(parent: MemoryRegion, sub: MemoryRegion) -> None:
    """Unmap `sub` from `parent` (a PCI BAR moving or being disabled: pci_update_mappings); its
    ioeventfds leave the address space with it."""
    parent.subregions.remove(sub)
    sub.parent = None
    if _has_ioeventfds(sub):
        memory_region_transaction_commit(parent)


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


# ==========================================================================================================
# ioeventfds (memory.c:1352-1416, 601-690) and memory listeners
# ==========================================================================================================
@dataclass
class MemoryRegionIoeventfd:
    """One eventfd on a region: `addr`/`size` relative to the region (absolute once in an address space's
    set), `data` compared only if `match_data`, `e` the EventNotifier."""

    addr: int
    size: int
    match_data: bool
    data: int
    e: Any

    def key(self) -> tuple:
        """memory_region_ioeventfd_before's order: address, size, match_data, data (if matched), notifier
        (the C compares the pointer; the model the notifier's fd)."""
        return (self.addr, self.size, self.match_data, self.data if self.match_data else 0,
                getattr(self.e, "rfd", id(self.e)))

    def view(self) -> dict:
        return {"addr": self.addr, "size": self.size, "match_data": self.match_data, "data": self.data,
                "fd": getattr(self.e, "rfd", None)}


@dataclass
class MemoryListener:
    """include/exec/memory.h: callbacks on an address space's changes (only the eventfd ones here)."""

    name: str
    eventfd_add: Callable[..., None] | None = None  # (listener, section, match_data, data, e)
    eventfd_del: Callable[..., None] | None = None
    priority: int = 0
    address_space_filter: Any = None
    opaque: Any = None  # model: what the C callbacks reach as globals (kvm-all.c's kvm_state)


@dataclass
class MemoryRegionSection:
    """The part of a region a listener is told about: here its address space, absolute address, size."""

    address_space: Any
    offset_within_address_space: int
    size: int
    mr: "MemoryRegion | None" = None


def _has_ioeventfds(mr: MemoryRegion) -> bool:
    return bool(mr.ioeventfds) or any(_has_ioeventfds(r) for r in mr.subregions)


def _address_space_of(mr: MemoryRegion) -> Any:
    while mr.parent is not None:
        mr = mr.parent
    return mr.address_space


def memory_listener_register(listener: MemoryListener, filter: Any) -> None:  # noqa: A002 - the C name
    """Listen to address space `filter`. (The model keeps the listeners on the address space they
    filter on, in priority order; QEMU keeps one global list and skips the others.)"""
    listener.address_space_filter = filter
    filter.listeners.append(listener)
    filter.listeners.sort(key=lambda x: x.priority)


def memory_listener_unregister(listener: MemoryListener) -> None:
    space = listener.address_space_filter
    if space is not None and listener in space.listeners:
        space.listeners.remove(listener)


def memory_region_transaction_commit(mr: MemoryRegion) -> None:
    """The end of a change to the memory map: bring the ioeventfds of the address space `mr` lives in up to
    date. (QEMU updates every address space; a region outside any address space has nothing to update.)"""
    space = _address_space_of(mr)
    if space is not None:
        address_space_update_ioeventfds(space)


def _collect(mr: MemoryRegion, base: int, out: list[MemoryRegionIoeventfd]) -> None:
    for fd in mr.ioeventfds:
        out.append(MemoryRegionIoeventfd(base + fd.addr, fd.size, fd.match_data, fd.data, fd.e))
    for sub in mr.subregions:
        _collect(sub, base + sub.addr, out)


@tracepoint("qemu-memory", args=("as=space",))
def address_space_update_ioeventfds(space: Any) -> None:
    """Recompute the address space's ioeventfds (each region's, at the region's address) and hand the
    difference to the listeners."""
    new: list[MemoryRegionIoeventfd] = []
    _collect(space.root, 0, new)
    new.sort(key=MemoryRegionIoeventfd.key)
    address_space_add_del_ioeventfds(space, new, space.ioeventfds)
    space.ioeventfds = new


@tracepoint("qemu-memory", args=("as=space", "fds_new", "fds_old"))
def address_space_add_del_ioeventfds(space: Any, fds_new: list[MemoryRegionIoeventfd],
                                     fds_old: list[MemoryRegionIoeventfd]) -> None:
    """Walk both sorted sets: an old one missing from the new set goes to `eventfd_del` (listeners in
    order), a new one missing from the old set to `eventfd_add` (listeners in reverse order)."""
    old_keys = {fd.key() for fd in fds_old}
    new_keys = {fd.key() for fd in fds_new}
    events = [(fd.key(), 0, fd) for fd in fds_old if fd.key() not in new_keys] + \
             [(fd.key(), 1, fd) for fd in fds_new if fd.key() not in old_keys]
    for _, add, fd in sorted(events, key=lambda x: (x[0], x[1])):
        section = MemoryRegionSection(space, fd.addr, fd.size)
        if add:
            for listener in reversed(space.listeners):
                if listener.eventfd_add is not None:
                    listener.eventfd_add(listener, section, fd.match_data, fd.data, fd.e)
        else:
            for listener in space.listeners:
                if listener.eventfd_del is not None:
                    listener.eventfd_del(listener, section, fd.match_data, fd.data, fd.e)


@tracepoint("qemu-memory", args=("mr", "addr", "size", "match_data", "data", "e"))
def memory_region_add_eventfd(mr: MemoryRegion, addr: int, size: int, match_data: bool, data: int,
                              e: Any) -> None:
    """Signal `e` instead of calling the region's write callback when the guest writes `size` bytes at
    offset `addr` (with value `data` if `match_data`). With KVM the write is then handled in the kernel."""
    mrfd = MemoryRegionIoeventfd(addr, size, bool(match_data), data, e)
    i = 0
    while i < len(mr.ioeventfds) and not mrfd.key() < mr.ioeventfds[i].key():
        i += 1
    mr.ioeventfds.insert(i, mrfd)
    memory_region_transaction_commit(mr)


@tracepoint("qemu-memory", args=("mr", "addr", "size", "match_data", "data", "e"))
def memory_region_del_eventfd(mr: MemoryRegion, addr: int, size: int, match_data: bool, data: int,
                              e: Any) -> None:
    """Undo `memory_region_add_eventfd` (the same arguments; QEMU asserts it was added)."""
    key = MemoryRegionIoeventfd(addr, size, bool(match_data), data, e).key()
    for i, fd in enumerate(mr.ioeventfds):
        if fd.key() == key:
            del mr.ioeventfds[i]
            break
    else:
        raise ValueError(f"memory_region_del_eventfd: {mr.name} has no eventfd at {addr:#x}+{size} "
                         "(QEMU aborts: assert(i != mr->ioeventfd_nb))")
    memory_region_transaction_commit(mr)
