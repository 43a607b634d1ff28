"""exec.c (QEMU v1.6.1): address spaces and `address_space_rw`, the loop every CPU-side access goes through.

`address_space_rw` finds the region under each address (`address_space_translate`). RAM is copied
directly; anything else is cut into accesses the region accepts (`memory_access_size`) and sent to
`io_mem_write` / `io_mem_read` (memory.c).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..trace.tracepoint import tracepoint
from .memory import MemoryRegion, io_mem_read, io_mem_write


@dataclass
class AddressSpace:
    """`address_space_io` (64 KiB of ports) or `address_space_memory` (guest-physical)."""

    name: str
    root: MemoryRegion
    ram: Any = None  # the guest RAM buffer (for address_space_memory), mapped at guest-physical 0
    listeners: list = field(default_factory=list, compare=False, repr=False)  # MemoryListeners (memory.py)
    ioeventfds: list = field(default_factory=list, compare=False, repr=False)  # as->ioeventfds

    def __post_init__(self) -> None:
        self.root.address_space = self  # model: how a region finds its address space (memory.py)

    def view(self) -> dict:
        return {"name": self.name, "root": self.root.view()}


def address_space_translate(space: AddressSpace, addr: int, length: int) -> tuple[MemoryRegion | None, int, int]:
    """The region under `addr`, the offset inside it, and how many bytes of `length` it covers."""
    for mr in space.root.subregions:
        if mr.addr <= addr < mr.addr + mr.size:
            return mr, addr - mr.addr, min(length, mr.addr + mr.size - addr)
    nxt = min((mr.addr for mr in space.root.subregions if mr.addr > addr), default=addr + length)
    return None, addr, min(length, nxt - addr)


@tracepoint("qemu-memory", args=("mr", "l", "addr"))
def memory_access_size(mr: MemoryRegion, l: int, addr: int) -> int:
    """How much of `l` bytes to hand to the region in one access: at most `valid.max_access_size` (4), and,
    unless the region takes misaligned accesses (`impl.unaligned`, as the port I/O regions do,
    ioport.c:203-204), no more than the alignment of `addr`; then rounded down to a power of two. So an
    outw to 0x1f1 reaches the IDE data port's region whole, as ide_data_writew(0x1f1)."""
    access_size_max = mr.ops.valid_max_access_size or 4 if mr.ops is not None else 4
    if mr.ops is None or not mr.ops.impl_unaligned:
        align_size_max = addr & -addr
        if align_size_max != 0 and align_size_max < access_size_max:
            access_size_max = align_size_max
    if l > access_size_max:
        l = access_size_max
    if l & (l - 1):
        l = 1 << (l.bit_length() - 1)
    return l


@tracepoint("qemu-memory", args=("as=space", "addr", "buf", "len", "is_write"))
def address_space_rw(space: AddressSpace, addr: int, buf: bytearray | bytes, len: int, is_write: bool) -> bool:
    """Move `len` bytes between `buf` and the address space, one region piece at a time."""
    pos = 0
    while len > 0:
        mr, addr1, l = address_space_translate(space, addr, len)
        if mr is None and space.ram is not None and addr + l <= _ram_size(space):
            if is_write:
                space.ram[addr:addr + l] = buf[pos:pos + l]
            else:
                buf[pos:pos + l] = space.ram[addr:addr + l]
        elif mr is None:  # nothing there: writes vanish, reads float high
            if not is_write:
                buf[pos:pos + l] = b"\xff" * l
        else:
            l = memory_access_size(mr, l, addr1)
            if is_write:
                io_mem_write(mr, addr1, int.from_bytes(buf[pos:pos + l], "little"), l)
            else:
                buf[pos:pos + l] = io_mem_read(mr, addr1, l).to_bytes(l, "little")
        len -= l
        pos += l
        addr += l
    return False


def _ram_size(space: AddressSpace) -> int:
    return len(space.ram)


@tracepoint("qemu-memory", args=("as=space", "addr", "buf", "len"))
def address_space_write(space: AddressSpace, addr: int, buf: bytes, len: int) -> bool:
    return address_space_rw(space, addr, buf, len, True)


@tracepoint("qemu-memory", args=("as=space", "addr", "buf", "len"))
def address_space_read(space: AddressSpace, addr: int, buf: bytearray, len: int) -> bool:
    return address_space_rw(space, addr, buf, len, False)


@tracepoint("qemu-memory", args=("addr", "buf", "len", "is_write"))
def cpu_physical_memory_rw(addr: int, buf: bytearray, len: int, is_write: bool) -> None:
    """Guest-physical access from device or MMIO-exit code: address_space_rw on address_space_memory."""
    from .state import qemu_state
    address_space_rw(qemu_state().address_space_memory, addr, buf, len, is_write)


# -- loads/stores of guest-physical memory by devices (exec.c ldl_phys & co.) ------------------------------
# Untraced: a virtqueue walk does dozens of them; the functions that call them are the stages. As in
# 1.6.1's ldl_phys_internal & co. (exec.c:2266-2470), RAM is read and written in place (qemu_get_ram_ptr)
# and only a device region goes through io_mem_read/io_mem_write: they never call address_space_rw, so
# no address_space_rw stage appears under virtqueue_pop and its helpers.
def _phys_rw(addr: int, n: int, data: bytes | None = None) -> bytes:
    from .state import qemu_state
    space = qemu_state().address_space_memory
    mr, addr1, l = address_space_translate(space, addr, n)
    if mr is None and space.ram is not None and l == n and addr + n <= _ram_size(space):
        if data is None:
            return bytes(space.ram[addr:addr + n])  # the RAM case
        space.ram[addr:addr + n] = data
        return bytes(data)
    if mr is not None and l == n and n in (1, 2, 4, 8):  # the I/O case
        if data is None:
            return io_mem_read(mr, addr1, n).to_bytes(n, "little")
        io_mem_write(mr, addr1, int.from_bytes(data, "little"), n)
        return bytes(data)
    buf = bytearray(n) if data is None else bytearray(data)  # across a boundary, or nothing mapped
    address_space_rw(space, addr, buf, n, data is not None)
    return bytes(buf)


def ldq_phys(addr: int) -> int:
    return int.from_bytes(_phys_rw(addr, 8), "little")


def ldl_phys(addr: int) -> int:
    return int.from_bytes(_phys_rw(addr, 4), "little")


def lduw_phys(addr: int) -> int:
    return int.from_bytes(_phys_rw(addr, 2), "little")


def stl_phys(addr: int, val: int) -> None:
    _phys_rw(addr, 4, (val & 0xFFFFFFFF).to_bytes(4, "little"))


def stw_phys(addr: int, val: int) -> None:
    _phys_rw(addr, 2, (val & 0xFFFF).to_bytes(2, "little"))


TARGET_PAGE_SIZE = 4096


@dataclass
class _BounceBuffer:
    """exec.c's single bounce buffer: what address_space_map hands out for memory that is not RAM."""

    buffer: bytearray | None = None
    addr: int = 0


def cpu_physical_memory_map(addr: int, plen: list[int], is_write: bool):
    """Map guest-physical [addr, addr + plen[0]) for a device to access directly (address_space_map).

    RAM maps in place: the result is an iovec over guest RAM (the device reads and writes the guest's
    pages). Anything else gets the one bounce buffer (a page; 1.6.1 does not cap the length, see below);
    a second such map while it is in use gets None. Returns None or an `iovec`.
    """
    from .state import qemu_state
    from .util.iov import iovec
    space = qemu_state().address_space_memory
    length = plen[0]
    if length == 0:
        return None  # exec.c:2166: nothing to map is a failed map (virtio then stops with exit(1))
    mr, _, l = address_space_translate(space, addr, length)
    ram_size = _ram_size(space)
    if mr is None and addr < ram_size:
        l = min(length, ram_size - addr)
        plen[0] = l
        return iovec(space.ram, l, addr)
    bounce = qemu_state().extra.setdefault("bounce", _BounceBuffer())
    if bounce.buffer is not None:
        return None
    if length > TARGET_PAGE_SIZE:
        from ..errors import GuestFault
        raise GuestFault(
            f"a device mapped {length} bytes at {addr:#x}, which is not RAM: QEMU 1.6.1's address_space_map "
            f"(exec.c:2176) reads them into its one-page ({TARGET_PAGE_SIZE}-byte) bounce buffer without "
            "capping the length, overrunning the heap; that is undefined behaviour in the real QEMU (later "
            "releases cap the map at a page, and virtio then stops with 'virtio: trying to map MMIO memory'). "
            "vmio-edu stops here instead, before anything is written")
    l = length
    bounce.buffer, bounce.addr = bytearray(l), addr  # unassigned memory reads as 0 (memory.c:875)
    if not is_write and mr is not None:
        address_space_rw(space, addr, bounce.buffer, l, False)
    plen[0] = l
    return iovec(bounce.buffer, l, 0)


def cpu_physical_memory_unmap(buffer, len: int, is_write: bool, access_len: int) -> None:  # noqa: A002
    """Give a mapping back; the bounce buffer is written out (for a device write) and freed."""
    from .state import qemu_state
    bounce = qemu_state().extra.get("bounce")
    if bounce is None or buffer is None or buffer.iov_base is not bounce.buffer:
        return
    if is_write:
        address_space_rw(qemu_state().address_space_memory, bounce.addr, bounce.buffer, access_len, True)
    bounce.buffer = None
