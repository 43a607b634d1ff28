"""Linear → guest-physical translation, the way the CPU walks the guest's page tables.

Unicorn walks the page tables itself while it runs guest code, but it only lets us read and write
*physical* memory. The kernel model needs linear addresses too: KVM's emulator stores `rep ins` data at
ES:RDI, and the CPU pushes interrupt frames on SS:RSP. This module does the walk: 32-bit paging (4 KiB
and 4 MiB pages), PAE, and 4-level long-mode paging (4 KiB, 2 MiB and 1 GiB pages).

Access rights (U/S, R/W with CR0.WP, NX) are not checked: the guests here run at CPL 0.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Callable

CR0_PE, CR0_PG = 1 << 0, 1 << 31
CR4_PSE, CR4_PAE = 1 << 4, 1 << 5
EFER_LMA = 1 << 10
PTE_P, PTE_PS = 1 << 0, 1 << 7
ADDR_MASK = 0x000F_FFFF_FFFF_F000


class PageFault(Exception):
    """The linear address is not mapped (#PF)."""

    def __init__(self, linear: int, why: str):
        super().__init__(f"page fault at linear {linear:#x}: {why}")
        self.linear, self.why = linear, why


@dataclass(frozen=True)
class Paging:
    """The control registers that decide how linear addresses translate."""

    cr0: int
    cr3: int
    cr4: int
    efer: int

    @property
    def enabled(self) -> bool:
        return bool(self.cr0 & CR0_PG and self.cr0 & CR0_PE)


# The levels of the 8-byte-entry walks: (index shift, name, frame mask if the level may map a large page).
_LONG_MODE_LEVELS = ((39, "PML4 entry", None), (30, "PDPT entry", 0x000F_FFFF_C000_0000),
                     (21, "page-directory entry", 0x000F_FFFF_FFE0_0000), (12, "page-table entry", None))
_PAE_LEVELS = ((30, "PDPT entry", None),) + _LONG_MODE_LEVELS[2:]  # PAE PDPTEs map no 1 GiB pages


def _walk_wide(table: int, linear: int, levels: tuple, entry: Callable[[int, bool], int]) -> int:
    """Walk 512-entry tables of 8-byte entries from `table` (4-level and PAE paging)."""
    for shift, what, large_mask in levels:
        e = entry(table + ((linear >> shift) & 0x1FF) * 8, True)
        if not e & PTE_P:
            raise PageFault(linear, f"{what} not present")
        if large_mask is not None and e & PTE_PS:
            return (e & large_mask) | (linear & ((1 << shift) - 1))
        table = e & ADDR_MASK
    return table | (linear & 0xFFF)


def translate(p: Paging, linear: int, read_phys: Callable[[int, int], bytes]) -> int:
    """The guest-physical address of `linear`; raises PageFault when a level is not present."""
    if not p.enabled:
        return linear & 0xFFFF_FFFF if not p.efer & EFER_LMA else linear

    def entry(addr: int, wide: bool) -> int:
        raw = read_phys(addr, 8 if wide else 4)
        return struct.unpack("<Q" if wide else "<I", raw)[0]

    if p.efer & EFER_LMA:  # 4-level paging
        return _walk_wide(p.cr3 & ADDR_MASK, linear, _LONG_MODE_LEVELS, entry)
    linear &= 0xFFFF_FFFF
    if p.cr4 & CR4_PAE:  # PAE: 4 PDPTEs at CR3
        return _walk_wide(p.cr3 & 0xFFFF_FFE0, linear, _PAE_LEVELS, entry)

    e = entry((p.cr3 & 0xFFFF_F000) + (linear >> 22) * 4, False)  # 32-bit paging
    if not e & PTE_P:
        raise PageFault(linear, "page-directory entry not present")
    if e & PTE_PS and p.cr4 & CR4_PSE:
        return (e & 0xFFC0_0000) | ((e >> 13) & 0xFF) << 32 | (linear & 0x3F_FFFF)
    e = entry((e & 0xFFFF_F000) + ((linear >> 12) & 0x3FF) * 4, False)
    if not e & PTE_P:
        raise PageFault(linear, "page-table entry not present")
    return (e & 0xFFFF_F000) | (linear & 0xFFF)
