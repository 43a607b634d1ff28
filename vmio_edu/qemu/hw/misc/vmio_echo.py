"""A tiny memory-mapped device for learning the MMIO path (not in QEMU 1.6.1; QEMU's later `edu`
device, hw/misc/edu.c, plays the same role).

Four 32-bit registers at `VMIO_ECHO_BASE`:
  0x0 ID       read-only, 0x45434830 ("ECH0")
  0x4 SCRATCH  reads back the last value written
  0x8 COUNT    how many accesses the device has seen (reads and writes, this one included)
  0xc INVERT   reads as ~SCRATCH
A guest `mov dword [0x400004], eax` exits with KVM_EXIT_MMIO, then `cpu_physical_memory_rw` →
`address_space_rw` → `io_mem_write` → `memory_region_dispatch_write` → ... → `vmio_echo_write`.
"""
from __future__ import annotations

from dataclasses import dataclass

from ....trace.tracepoint import tracepoint
from ...memory import MemoryRegion, MemoryRegionOps, memory_region_add_subregion

VMIO_ECHO_BASE = 0x400000  # 4 MiB: above guest RAM, inside the guest's identity map
VMIO_ECHO_ID = 0x45434830


@dataclass
class VmioEchoState:
    scratch: int = 0
    count: int = 0

    def view(self) -> dict:
        return {"scratch": self.scratch, "count": self.count}


@tracepoint("qemu-memory", args=("addr", "size"))
def vmio_echo_read(s: VmioEchoState, addr: int, size: int) -> int:
    """Answer a guest read of register `addr` (byte offset in the block)."""
    s.count += 1
    reg, shift = addr & ~3, (addr & 3) * 8
    value = {0x0: VMIO_ECHO_ID, 0x4: s.scratch, 0x8: s.count, 0xC: ~s.scratch & 0xFFFFFFFF}.get(reg, 0)
    return (value >> shift) & ((1 << (size * 8)) - 1)


@tracepoint("qemu-memory", args=("addr", "val", "size"))
def vmio_echo_write(s: VmioEchoState, addr: int, val: int, size: int) -> None:
    """Take a guest write: only SCRATCH keeps it (byte lanes merge like a real 32-bit register)."""
    s.count += 1
    if addr & ~3 == 0x4:
        shift, mask = (addr & 3) * 8, (1 << (size * 8)) - 1
        s.scratch = (s.scratch & ~(mask << shift) | (val & mask) << shift) & 0xFFFFFFFF


def vmio_echo_init(system_memory: MemoryRegion, base: int = VMIO_ECHO_BASE) -> VmioEchoState:
    """Create the device and map its 16-byte window into guest-physical memory."""
    s = VmioEchoState()
    ops = MemoryRegionOps(read=vmio_echo_read, write=vmio_echo_write, impl_min_access_size=1,
                          impl_max_access_size=4)
    memory_region_add_subregion(system_memory, base, MemoryRegion("vmio-echo", 0x10, ops, s))
    return s
