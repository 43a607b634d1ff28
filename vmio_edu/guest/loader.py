"""Guest RAM and the first CPU state, for any engine.

A real VMM (QEMU, kvmtool) puts the guest in a known state before the first KVM_RUN: registers with
KVM_SET_REGS, segments, control registers and descriptor tables with KVM_SET_SREGS, and whatever
tables that state points at into guest RAM. `boot_state` does exactly that, without knowing which
engine will run the guest: it writes the tables into `ram` and returns a `BootState` made of the very
`kvm_regs` / `kvm_sregs` structures the real ioctls take. The emulated engine translates the same
structures into Unicorn registers.

Modes:
- 16: real mode, as the CPU leaves reset (but CS=0, not 0xf000): nothing is written to RAM.
- 32: flat protected mode, paging off: a GDT and a TSS in RAM.
- 64: long mode: a GDT, a TSS and identity-mapped page tables (2 MiB pages) covering all of RAM.

All tables sit at the fixed addresses in `LAYOUT`, away from the code (0x1000), the stack below 0x8000
and the default guest's blocks and buffers (0x9000-0x4ffff).
"""
from __future__ import annotations

import ctypes
import struct
from dataclasses import dataclass

from ..errors import VmioError
from ..linux.include.uapi.linux.kvm import kvm_dtable, kvm_regs, kvm_segment, kvm_sregs

__all__ = ["BootState", "LAYOUT", "Layout", "LoadError", "boot_state", "load_code"]


class LoadError(VmioError, ValueError):
    """Code or state that does not fit the guest's RAM or mode."""


@dataclass(frozen=True)
class Layout:
    """Guest-physical addresses that the loader uses (all below 0x80000)."""

    code: int = 0x1000          # where programs are loaded by default
    stack_top: int = 0x8000     # default initial SP/ESP/RSP (the stack grows down towards the code)
    gdt: int = 0x70000          # GDT: 0x00 null, 0x08 code, 0x10 data, 0x18 TSS (16 bytes in long mode)
    tss: int = 0x70080          # the task-state segment TR points at (104 bytes, all zero but the I/O map base)
    pml4: int = 0x71000         # long mode: page-map level 4 (one entry used)
    pdpt: int = 0x72000         # long mode: page-directory-pointer table (one entry used)
    pd: int = 0x73000           # long mode: page directory of 2 MiB pages, one entry per 2 MiB of RAM
    end: int = 0x74000          # first byte after the tables


LAYOUT = Layout()

# Selectors in the GDT the loader builds.
CODE_SEL, DATA_SEL, TSS_SEL = 0x08, 0x10, 0x18

# Control-register and EFER bits.
CR0_PE, CR0_ET, CR0_NE, CR0_PG = 1 << 0, 1 << 4, 1 << 5, 1 << 31
CR4_PAE = 1 << 5
EFER_LME, EFER_LMA = 1 << 8, 1 << 10
RFLAGS_RESERVED = 0x2          # bit 1 always reads as 1
APIC_BASE_DEFAULT = 0xFEE00900  # the reset value: xAPIC at 0xfee00000, enabled, bootstrap processor

# Segment types (the 4-bit field of the access byte).
SEG_DATA_RW_ACCESSED = 0x3
SEG_CODE_RX_ACCESSED = 0xB
SEG_TSS_BUSY = 0xB             # 32-bit (or, in long mode, 64-bit) busy TSS
SEG_LDT = 0x2

TSS_SIZE = 104                 # 32-bit and 64-bit TSS are both 0x68 bytes
PAGE_2M = 2 << 20
PTE_P, PTE_RW, PTE_PS = 1 << 0, 1 << 1, 1 << 7


@dataclass
class BootState:
    """The registers a VMM sets before the first KVM_RUN (KVM_SET_REGS and KVM_SET_SREGS)."""

    mode: int            # 16, 32 or 64
    regs: kvm_regs
    sregs: kvm_sregs


def load_code(ram, code: bytes, addr: int) -> None:
    """Copy `code` into guest RAM at guest-physical `addr`; refuse anything that would not fit."""
    size = len(ram)
    if not isinstance(addr, int) or addr < 0:
        raise LoadError(f"load address {addr!r} is not a guest-physical address")
    if addr + len(code) > size:
        raise LoadError(f"{len(code)} bytes of code at {addr:#x} end at {addr + len(code):#x}, "
                        f"past the end of guest RAM ({size:#x} bytes)")
    ram[addr:addr + len(code)] = bytes(code)


def boot_state(ram, mode: int, entry: int, stack: int | None = None) -> BootState:
    """Write the tables `mode` needs into `ram` and return the CPU state that starts at `entry`.

    `stack` is the initial SP/ESP/RSP (default `LAYOUT.stack_top`). Only in modes 32 and 64 is RAM
    written, and only inside LAYOUT.gdt..LAYOUT.end.
    """
    if mode not in (16, 32, 64):
        raise LoadError(f"mode must be 16, 32 or 64, not {mode!r}")
    stack = LAYOUT.stack_top if stack is None else stack
    size = len(ram)
    if not isinstance(entry, int) or not 0 <= entry < size:
        raise LoadError(f"entry {entry!r} is outside guest RAM (0..{size - 1:#x})")
    if not isinstance(stack, int) or not 0 <= stack <= size:
        raise LoadError(f"stack {stack!r} is outside guest RAM (0..{size:#x})")

    regs = kvm_regs()
    regs.rip, regs.rsp, regs.rflags = entry, stack, RFLAGS_RESERVED
    sregs = kvm_sregs()
    sregs.apic_base = APIC_BASE_DEFAULT
    if mode == 16:
        _real_mode(sregs, entry, stack)
    else:
        if size < LAYOUT.end:
            raise LoadError(f"{mode}-bit mode needs at least {LAYOUT.end:#x} bytes of RAM for its tables "
                            f"(GDT at {LAYOUT.gdt:#x}); this guest has {size:#x}")
        _protected_mode(ram, sregs, long_mode=(mode == 64))
    return BootState(mode=mode, regs=regs, sregs=sregs)


# -- real mode ------------------------------------------------------------------------------------------
def _real_mode(sregs: kvm_sregs, entry: int, stack: int) -> None:
    # With CS=0 the whole program must sit in the first 64 KiB, addressed by IP alone.
    if entry > 0xFFFF:
        raise LoadError(f"16-bit entry {entry:#x} does not fit IP with CS=0 (must be below 0x10000)")
    if stack > 0xFFFF:
        raise LoadError(f"16-bit stack {stack:#x} does not fit SP with SS=0 (must be below 0x10000)")
    for name in ("cs", "ds", "es", "fs", "gs", "ss"):
        _set_segment(getattr(sregs, name), selector=0, base=0, limit=0xFFFF,
                     type_=SEG_CODE_RX_ACCESSED if name == "cs" else SEG_DATA_RW_ACCESSED, s=1)
    # TR and LDTR as the CPU (and KVM's vCPU reset) leaves them: unused in real mode but valid.
    _set_segment(sregs.tr, selector=0, base=0, limit=0xFFFF, type_=SEG_TSS_BUSY, s=0)
    _set_segment(sregs.ldt, selector=0, base=0, limit=0xFFFF, type_=SEG_LDT, s=0)
    _set_dtable(sregs.gdt, 0, 0xFFFF)
    _set_dtable(sregs.idt, 0, 0xFFFF)  # the real-mode interrupt vector table at 0 (left empty)
    sregs.cr0 = CR0_ET


# -- protected and long mode ----------------------------------------------------------------------------
def _protected_mode(ram, sregs: kvm_sregs, long_mode: bool) -> None:
    flat = dict(base=0, limit=0xFFFFFFFF, g=1, s=1)
    _set_segment(sregs.cs, selector=CODE_SEL, type_=SEG_CODE_RX_ACCESSED,
                 l=1 if long_mode else 0, db=0 if long_mode else 1, **flat)
    for name in ("ds", "es", "fs", "gs", "ss"):
        _set_segment(getattr(sregs, name), selector=DATA_SEL, type_=SEG_DATA_RW_ACCESSED, db=1, **flat)
    # A busy TSS in TR: VM entry requires a usable TR of type 11 outside real mode.
    _set_segment(sregs.tr, selector=TSS_SEL, base=LAYOUT.tss, limit=TSS_SIZE - 1, type_=SEG_TSS_BUSY, s=0)
    _set_segment(sregs.ldt, selector=0, base=0, limit=0, type_=SEG_LDT, s=0, present=0, unusable=1)

    # The GDT holds exactly the descriptors the segment registers claim to have loaded.
    gdt = bytearray(8)  # entry 0: the null descriptor
    for seg in (sregs.cs, sregs.ds):
        gdt += _descriptor(seg)
    gdt += _descriptor(sregs.tr, wide=long_mode)  # long-mode system descriptors take 16 bytes
    _write(ram, LAYOUT.gdt, bytes(gdt))
    _set_dtable(sregs.gdt, LAYOUT.gdt, len(gdt) - 1)
    _set_dtable(sregs.idt, 0, 0)  # no IDT yet: the guest loads its own with `lidt`

    tss = bytearray(TSS_SIZE)
    struct.pack_into("<H", tss, 0x66, TSS_SIZE)  # I/O map base past the limit: no I/O permission bitmap
    _write(ram, LAYOUT.tss, bytes(tss))

    sregs.cr0 = CR0_PE | CR0_ET | CR0_NE
    if long_mode:
        _identity_map(ram)
        sregs.cr3 = LAYOUT.pml4
        sregs.cr4 = CR4_PAE
        sregs.efer = EFER_LME | EFER_LMA
        sregs.cr0 |= CR0_PG


def _identity_map(ram) -> None:
    """PML4[0] -> PDPT[0] -> PD of 2 MiB pages mapping virtual == physical for the first 1 GiB.

    That is all of RAM plus the MMIO windows above it (e.g. the vmio-echo device at 4 MiB)."""
    if -(-len(ram) // PAGE_2M) > 512:
        raise LoadError(f"64-bit identity map covers at most 1 GiB with one page directory; "
                        f"this guest has {len(ram):#x} bytes of RAM")
    _write(ram, LAYOUT.pml4, struct.pack("<Q", LAYOUT.pdpt | PTE_P | PTE_RW).ljust(4096, b"\0"))
    _write(ram, LAYOUT.pdpt, struct.pack("<Q", LAYOUT.pd | PTE_P | PTE_RW).ljust(4096, b"\0"))
    pd = b"".join(struct.pack("<Q", i * PAGE_2M | PTE_P | PTE_RW | PTE_PS) for i in range(512))
    _write(ram, LAYOUT.pd, pd.ljust(4096, b"\0"))


# -- helpers --------------------------------------------------------------------------------------------
def _set_segment(seg: kvm_segment, *, selector: int, base: int, limit: int, type_: int, s: int,
                 present: int = 1, dpl: int = 0, db: int = 0, l: int = 0, g: int = 0,
                 unusable: int = 0) -> None:
    ctypes.memset(ctypes.addressof(seg), 0, ctypes.sizeof(seg))
    seg.selector, seg.base, seg.limit, seg.type = selector, base, limit, type_
    seg.present, seg.dpl, seg.db, seg.s, seg.l, seg.g = present, dpl, db, s, l, g
    seg.unusable = unusable


def _set_dtable(table: kvm_dtable, base: int, limit: int) -> None:
    table.base, table.limit = base, limit


def _descriptor(seg: kvm_segment, wide: bool = False) -> bytes:
    """Encode a GDT descriptor from a kvm_segment (the inverse of what the CPU caches on a load)."""
    limit = seg.limit >> 12 if seg.g else seg.limit
    if limit > 0xFFFFF:
        raise LoadError(f"segment limit {seg.limit:#x} needs the granularity bit")
    access = seg.type | seg.s << 4 | seg.dpl << 5 | seg.present << 7
    flags = seg.avl | seg.l << 1 | seg.db << 2 | seg.g << 3
    low = ((limit & 0xFFFF) | (seg.base & 0xFFFFFF) << 16 | access << 40
           | (limit >> 16) << 48 | flags << 52 | ((seg.base >> 24) & 0xFF) << 56)
    out = struct.pack("<Q", low)
    if wide:
        out += struct.pack("<Q", seg.base >> 32)
    return out


def _write(ram, addr: int, data: bytes) -> None:
    if addr + len(data) > len(ram):
        raise LoadError(f"table at {addr:#x} ({len(data)} bytes) does not fit in {len(ram):#x} bytes of RAM")
    ram[addr:addr + len(data)] = data
