"""Linear → guest-physical translation for the three paging formats."""
from __future__ import annotations

import struct

import pytest

from vmio_edu.cpu.mmu import CR0_PE, CR0_PG, CR4_PAE, CR4_PSE, EFER_LMA, PageFault, Paging, translate

P, RW, PS = 1, 2, 0x80


class Mem:
    def __init__(self) -> None:
        self.b = bytearray(1 << 20)

    def q(self, addr: int, v: int) -> None:
        struct.pack_into("<Q", self.b, addr, v)

    def d(self, addr: int, v: int) -> None:
        struct.pack_into("<I", self.b, addr, v)

    def read(self, addr: int, n: int) -> bytes:
        return bytes(self.b[addr:addr + n])


def test_paging_off_is_identity():
    assert translate(Paging(CR0_PE, 0, 0, 0), 0x12345, Mem().read) == 0x12345


def test_32bit_paging_4k_and_4m_pages():
    m = Mem()
    m.d(0x1000 + 1 * 4, 0x2000 | P | RW)          # PDE for 0x00400000: a page table at 0x2000
    m.d(0x2000 + 3 * 4, 0x7000 | P)               # PTE for 0x00403000 -> 0x7000
    m.d(0x1000 + 2 * 4, 0x00C00000 | P | PS)      # PDE for 0x00800000: a 4 MiB page at 0xC00000
    p = Paging(CR0_PE | CR0_PG, 0x1000, CR4_PSE, 0)
    assert translate(p, 0x00403ABC, m.read) == 0x7ABC
    assert translate(p, 0x00812345, m.read) == 0xC12345
    with pytest.raises(PageFault):
        translate(p, 0x00C00000, m.read)


def test_pae_2m_page():
    m = Mem()
    m.q(0x1000, 0x2000 | P)                        # PDPTE 0
    m.q(0x2000 + 3 * 8, 0x00600000 | P | PS)       # PDE 3 -> 2 MiB page at 6 MiB
    p = Paging(CR0_PE | CR0_PG, 0x1000, CR4_PAE, 0)
    assert translate(p, 0x0060_1234 + 0, m.read) == 0x0060_1234
    assert translate(p, 3 * 0x200000 + 0x55, m.read) == 0x600055


def test_long_mode_1g_2m_4k():
    m = Mem()
    m.q(0x1000, 0x2000 | P)                        # PML4[0]
    m.q(0x2000 + 1 * 8, 0x80000000 | P | PS)       # PDPT[1]: 1 GiB page -> 2 GiB
    m.q(0x2000, 0x3000 | P)                        # PDPT[0] -> PD
    m.q(0x3000 + 2 * 8, 0x00A00000 | P | PS)       # PD[2]: 2 MiB page
    m.q(0x3000 + 0, 0x4000 | P)                    # PD[0] -> PT
    m.q(0x4000 + 5 * 8, 0x9000 | P)                # PT[5] -> 0x9000
    p = Paging(CR0_PE | CR0_PG, 0x1000, CR4_PAE, EFER_LMA)
    assert translate(p, 0x4000_1234, m.read) == 0x8000_1234
    assert translate(p, 0x0040_0042, m.read) == 0x00A0_0042
    assert translate(p, 0x5123, m.read) == 0x9123
    with pytest.raises(PageFault, match="PML4"):
        translate(p, 1 << 39, m.read)
