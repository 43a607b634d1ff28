"""The loader: boot states per mode, the tables it writes, and what it refuses."""
from __future__ import annotations

import mmap
import struct

import pytest

from vmio_edu.errors import VmioError
from vmio_edu.guest import LAYOUT, boot_state, load_code
from vmio_edu.guest.loader import LoadError
from vmio_edu.guest.programs import BUFFER2_ADDR, BUFFER_ADDR, IDT_ADDR, PARAMS_ADDR, RESULT_ADDR

RAM = 2 << 20
SEG_NAMES = ("cs", "ds", "es", "fs", "gs", "ss")


def seg_dict(seg):
    return {f: getattr(seg, f) for f in ("base", "limit", "selector", "type", "present", "dpl", "db", "s",
                                         "l", "g", "avl", "unusable")}


def decode_descriptor(gdt: bytes, selector: int, system: bool = False) -> dict:
    """Decode a GDT entry the way the CPU does when it loads a selector (written here, independently)."""
    (low,) = struct.unpack_from("<Q", gdt, selector & ~7)
    base = (low >> 16) & 0xFFFFFF | ((low >> 56) & 0xFF) << 24
    raw_limit = (low & 0xFFFF) | ((low >> 48) & 0xF) << 16
    access, flags = (low >> 40) & 0xFF, (low >> 52) & 0xF
    g = flags >> 3 & 1
    d = dict(base=base, limit=(raw_limit << 12 | 0xFFF) if g else raw_limit, type=access & 0xF,
             s=access >> 4 & 1, dpl=access >> 5 & 3, present=access >> 7, avl=flags & 1, l=flags >> 1 & 1,
             db=flags >> 2 & 1, g=g)
    if system:  # a long-mode system descriptor: bits 63:32 of the base in the next 8 bytes
        d["base"] |= struct.unpack_from("<I", gdt, (selector & ~7) + 8)[0] << 32
    return d


# -- 16-bit -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make_ram", [lambda: bytearray(RAM), lambda: mmap.mmap(-1, RAM)], ids=["bytearray", "mmap"])
def test_real_mode_state_exact_and_ram_untouched(make_ram):
    ram = make_ram()
    st = boot_state(ram, 16, 0x1000)
    assert st.mode == 16
    assert bytes(ram) == bytes(RAM)                      # nothing at all written
    r, s = st.regs, st.sregs
    assert (r.rip, r.rsp, r.rflags) == (0x1000, 0x8000, 0x2)
    assert [getattr(r, n) for n in ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp",
                                    "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")] == [0] * 15
    for name in SEG_NAMES:
        want = dict(base=0, limit=0xFFFF, selector=0, type=0xB if name == "cs" else 0x3, present=1, dpl=0,
                    db=0, s=1, l=0, g=0, avl=0, unusable=0)
        assert seg_dict(getattr(s, name)) == want, name
    assert (s.tr.type, s.tr.present, s.tr.s, s.tr.unusable) == (0xB, 1, 0, 0)
    assert (s.ldt.type, s.ldt.present, s.ldt.s) == (0x2, 1, 0)
    assert s.cr0 & 1 == 0 and s.cr0 & (1 << 31) == 0     # PE and PG off: real mode
    assert (s.cr3, s.cr4, s.efer) == (0, 0, 0)
    assert (s.idt.base, s.idt.limit) == (0, 0xFFFF)
    assert list(s.interrupt_bitmap) == [0, 0, 0, 0]


def test_real_mode_custom_stack_and_limits():
    ram = bytearray(RAM)
    st = boot_state(ram, 16, 0x7C00, stack=0x7000)
    assert (st.regs.rip, st.regs.rsp) == (0x7C00, 0x7000)
    with pytest.raises(LoadError, match="below 0x10000"):
        boot_state(ram, 16, 0x10000)
    with pytest.raises(LoadError, match="SP"):
        boot_state(ram, 16, 0x1000, stack=0x20000)
    assert bytes(ram) == bytes(RAM)


# -- 32-bit -------------------------------------------------------------------------------------------
def test_protected_mode_state_and_gdt_agree():
    ram = bytearray(RAM)
    st = boot_state(ram, 32, 0x1000)
    s = st.sregs
    assert s.cr0 & 1 and not s.cr0 & (1 << 31)          # PE on, paging off
    assert (s.cr4, s.efer) == (0, 0)
    gdt = bytes(ram[s.gdt.base:s.gdt.base + s.gdt.limit + 1])
    assert s.gdt.base == LAYOUT.gdt and struct.unpack_from("<Q", gdt, 0)[0] == 0
    assert s.cs.selector == 0x08 and s.ds.selector == 0x10
    for name in SEG_NAMES:
        seg = getattr(s, name)
        assert seg.selector + 7 <= s.gdt.limit
        want = {k: v for k, v in seg_dict(seg).items() if k not in ("selector", "unusable")}
        assert decode_descriptor(gdt, seg.selector) == want, name
        assert seg.base == 0 and seg.limit == 0xFFFFFFFF and seg.db == 1 and seg.g == 1
    assert s.cs.type == 0xB and s.ds.type == 0x3
    tss = decode_descriptor(gdt, s.tr.selector)
    assert tss == {k: v for k, v in seg_dict(s.tr).items() if k not in ("selector", "unusable")}
    assert (s.tr.type, s.tr.s, s.tr.base, s.tr.limit) == (0xB, 0, LAYOUT.tss, 0x67)
    assert s.ldt.unusable == 1


# -- 64-bit -------------------------------------------------------------------------------------------
def translate(ram, cr3: int, va: int) -> int | None:
    """A 4-level page walk as the CPU does it (4 KiB, 2 MiB and 1 GiB leaves)."""
    table = cr3 & ~0xFFF
    for level, shift in enumerate((39, 30, 21, 12)):
        (entry,) = struct.unpack_from("<Q", ram, table + ((va >> shift) & 0x1FF) * 8)
        if not entry & 1:
            return None
        if level in (1, 2) and entry & 0x80:                # PS: a large page ends the walk
            size = 1 << shift
            return (entry & 0x000F_FFFF_FFFF_F000 & ~(size - 1)) | (va & (size - 1))
        table = entry & 0x000F_FFFF_FFFF_F000
    return table | (va & 0xFFF)


@pytest.mark.parametrize("size", [RAM, 4 << 20, 0x100000])
def test_long_mode_page_tables_identity_map_all_ram(size):
    ram = bytearray(size)
    st = boot_state(ram, 64, 0x1000)
    s = st.sregs
    for va in list(range(0, size, 0x1000)) + [size - 1, 0x1234, 0x7FFF]:
        assert translate(ram, s.cr3, va) == va, hex(va)
    # The first GiB is mapped, so MMIO windows above RAM (vmio-echo at 4 MiB) are reachable ...
    assert translate(ram, s.cr3, 0x400004) == 0x400004
    assert translate(ram, s.cr3, (1 << 30) - 1) == (1 << 30) - 1
    # ... and nothing beyond it.
    assert translate(ram, s.cr3, 1 << 30) is None
    assert translate(ram, s.cr3, 1 << 39) is None
    # Every table entry is writable and supervisor, so the guest can use its RAM fully.
    (pml4e,) = struct.unpack_from("<Q", ram, s.cr3)
    assert pml4e & 0x3 == 0x3 and not pml4e & 0x4


def test_long_mode_registers():
    ram = bytearray(RAM)
    st = boot_state(ram, 64, 0x1000)
    s, r = st.sregs, st.regs
    assert (r.rip, r.rsp, r.rflags) == (0x1000, 0x8000, 0x2)
    assert s.cr0 & 0x80000001 == 0x80000001                # PG and PE
    assert s.cr4 & 0x20                                     # PAE
    assert s.efer & 0x500 == 0x500                          # LME and LMA
    assert s.cr3 == LAYOUT.pml4
    assert (s.cs.l, s.cs.db) == (1, 0)                      # a 64-bit code segment
    assert (s.idt.base, s.idt.limit) == (0, 0)              # the guest loads its own IDT


def test_long_mode_gdt_decodes_to_the_sregs():
    ram = bytearray(RAM)
    s = boot_state(ram, 64, 0x1000).sregs
    gdt = bytes(ram[s.gdt.base:s.gdt.base + s.gdt.limit + 1])
    assert s.gdt.limit + 1 == 8 * 5                         # null, code, data, 16-byte TSS
    for name in SEG_NAMES:
        seg = getattr(s, name)
        want = {k: v for k, v in seg_dict(seg).items() if k not in ("selector", "unusable")}
        assert decode_descriptor(gdt, seg.selector) == want, name
    tss = decode_descriptor(gdt, s.tr.selector, system=True)
    assert tss == {k: v for k, v in seg_dict(s.tr).items() if k not in ("selector", "unusable")}
    assert (tss["type"], tss["s"], tss["present"], tss["base"], tss["limit"]) == (0xB, 0, 1, LAYOUT.tss, 0x67)
    # The TSS itself: zero, with the I/O map base beyond its limit (no I/O bitmap).
    tss_bytes = bytes(ram[LAYOUT.tss:LAYOUT.tss + 104])
    assert struct.unpack_from("<H", tss_bytes, 0x66)[0] == 104 and not any(tss_bytes[:0x66])


@pytest.mark.parametrize("mode", [32, 64])
def test_tables_stay_inside_the_layout(mode):
    ram = bytearray(RAM)
    boot_state(ram, mode, 0x1000)
    assert not any(ram[:LAYOUT.gdt]) and not any(ram[LAYOUT.end:])
    # ... and the layout keeps clear of the code, the stack and the default guest's blocks and buffers.
    used = [(0x1000, 0x8000), (PARAMS_ADDR, RESULT_ADDR + 0x100), (IDT_ADDR, IDT_ADDR + 0x1000),
            (BUFFER_ADDR, BUFFER_ADDR + 0x20000), (BUFFER2_ADDR, BUFFER2_ADDR + 0x20000)]
    for lo, hi in used:
        assert hi <= LAYOUT.gdt or lo >= LAYOUT.end


def test_boot_state_is_repeatable():
    a, b = bytearray(RAM), bytearray(RAM)
    sa, sb = boot_state(a, 64, 0x1000), boot_state(b, 64, 0x1000)
    assert a == b and bytes(sa.sregs) == bytes(sb.sregs) and bytes(sa.regs) == bytes(sb.regs)


# -- refusals -----------------------------------------------------------------------------------------
def test_load_code_places_bytes():
    ram = bytearray(RAM)
    load_code(ram, b"\x90\xf4", 0x1000)
    assert ram[0x1000:0x1002] == b"\x90\xf4" and ram.count(0) == RAM - 2
    load_code(ram, b"\xcc", RAM - 1)
    assert ram[-1] == 0xCC


@pytest.mark.parametrize("addr, size", [(RAM - 1, 2), (RAM, 1), (-1, 1), (0x1FF000, 0x2000)])
def test_load_code_out_of_bounds(addr, size):
    ram = bytearray(RAM)
    with pytest.raises(LoadError, match="guest RAM|guest-physical") as exc:
        load_code(ram, b"\x90" * size, addr)
    assert isinstance(exc.value, VmioError)
    assert ram.count(0) == RAM                              # nothing written


def test_boot_state_refusals():
    with pytest.raises(LoadError, match="mode"):
        boot_state(bytearray(RAM), 8, 0x1000)
    with pytest.raises(LoadError, match="entry"):
        boot_state(bytearray(RAM), 64, RAM)
    with pytest.raises(LoadError, match="stack"):
        boot_state(bytearray(RAM), 64, 0x1000, stack=RAM + 16)
    with pytest.raises(LoadError, match="at least"):
        boot_state(bytearray(0x10000), 64, 0x1000)

    class HugeRam:  # claims more than 1 GiB without allocating it
        def __len__(self):
            return 0x40200000

        def __setitem__(self, key, value):
            pass

    with pytest.raises(LoadError, match="1 GiB"):
        boot_state(HugeRam(), 64, 0x1000)
