"""The MMIO teaching device, reached through address_space_rw like a KVM_EXIT_MMIO would reach it."""
from vmio_edu.qemu.exec import AddressSpace, address_space_rw
from vmio_edu.qemu.hw.misc.vmio_echo import VMIO_ECHO_BASE, VMIO_ECHO_ID, vmio_echo_init
from vmio_edu.qemu.memory import MemoryRegion


def _mem():
    ram = bytearray(0x10000)
    space = AddressSpace("memory", MemoryRegion("system", 1 << 32), ram)
    return space, vmio_echo_init(space.root), ram


def _rd(space, addr, n):
    buf = bytearray(n)
    address_space_rw(space, addr, buf, n, False)
    return int.from_bytes(buf, "little")


def test_id_echo_invert_count():
    space, s, _ = _mem()
    assert _rd(space, VMIO_ECHO_BASE, 4) == VMIO_ECHO_ID
    address_space_rw(space, VMIO_ECHO_BASE + 4, (0x12345678).to_bytes(4, "little"), 4, True)
    assert _rd(space, VMIO_ECHO_BASE + 4, 4) == 0x12345678
    assert _rd(space, VMIO_ECHO_BASE + 0xC, 4) == 0xEDCBA987
    assert _rd(space, VMIO_ECHO_BASE + 8, 4) == 5  # this read is the fifth access
    address_space_rw(space, VMIO_ECHO_BASE + 5, b"\xff", 1, True)  # one byte lane
    assert s.scratch == 0x1234FF78


def test_ram_still_plain_memory():
    space, s, ram = _mem()
    address_space_rw(space, 0x100, b"abcd", 4, True)
    assert ram[0x100:0x104] == b"abcd" and s.count == 0
