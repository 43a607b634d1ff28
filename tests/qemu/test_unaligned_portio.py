"""Misaligned wide port I/O, as QEMU 1.6.1 does it.

From the v1.6.1 sources: portio_ops sets `.valid.unaligned = true` and `.impl.unaligned = true`
(ioport.c:203-204), so exec.c memory_access_size does not cut the access by the alignment of the address,
memory.c memory_region_access_valid lets it through, and ioport.c find_portio picks the entry whose
[offset, offset+len) covers the port for that size. IDE's list (hw/ide/core.c:2266) has {0, 8, 1},
{0, 2, 2} and {0, 4, 4}: an outw to 0x1f1 is ide_data_writew(0x1f1) and an outl to 0x1f2 is
ide_data_writel(0x1f2), not byte writes to the task-file registers.
"""
from vmio_edu.qemu.exec import AddressSpace, address_space_read, address_space_write, memory_access_size
from vmio_edu.qemu.ioport import MemoryRegionPortio, PortioList, portio_list_add, portio_list_init
from vmio_edu.qemu.memory import MemoryRegion, MemoryRegionOps, memory_region_access_valid


class Dev:
    def __init__(self):
        self.log = []

    def wb(self, addr, val):
        self.log.append(("b", addr, val))

    def ww(self, addr, val):
        self.log.append(("w", addr, val))

    def wl(self, addr, val):
        self.log.append(("l", addr, val))

    def rb(self, addr):
        self.log.append(("rb", addr))
        return 0x50

    def rw(self, addr):
        self.log.append(("rw", addr))
        return 0xABCD

    def rl(self, addr):
        self.log.append(("rl", addr))
        return 0x12345678


def _ide_like():
    """The shape of ide_portio_list at 0x1f0."""
    d = Dev()
    io = AddressSpace("I/O", MemoryRegion("io", 0x10000))
    pl = PortioList()
    portio_list_init(pl, [MemoryRegionPortio(0, 8, 1, Dev.rb, Dev.wb), MemoryRegionPortio(0, 2, 2, Dev.rw, Dev.ww),
                          MemoryRegionPortio(0, 4, 4, Dev.rl, Dev.wl)], d, "ide")
    portio_list_add(pl, io, 0x1F0)
    return d, io


def test_outw_to_0x1f1_reaches_the_word_handler_whole():
    d, io = _ide_like()
    address_space_write(io, 0x1F1, (0xBEEF).to_bytes(2, "little"), 2)
    assert d.log == [("w", 0x1F1, 0xBEEF)]


def test_outl_to_0x1f2_reaches_the_long_handler_whole():
    d, io = _ide_like()
    address_space_write(io, 0x1F2, (0xCAFEF00D).to_bytes(4, "little"), 4)
    assert d.log == [("l", 0x1F2, 0xCAFEF00D)]


def test_outl_to_0x1f1_and_outw_to_0x1f3():
    d, io = _ide_like()
    address_space_write(io, 0x1F1, (0x11223344).to_bytes(4, "little"), 4)  # {0,4,4} covers offset 1
    address_space_write(io, 0x1F3, (0x5566).to_bytes(2, "little"), 2)  # {0,2,2} does not cover 3: bytes
    assert d.log == [("l", 0x1F1, 0x11223344), ("b", 0x1F3, 0x66), ("b", 0x1F4, 0x55)]


def test_misaligned_reads_too():
    d, io = _ide_like()
    w, l4 = bytearray(2), bytearray(4)
    address_space_read(io, 0x1F1, w, 2)
    address_space_read(io, 0x1F3, l4, 4)
    assert d.log == [("rw", 0x1F1), ("rl", 0x1F3)]
    assert int.from_bytes(w, "little") == 0xABCD and int.from_bytes(l4, "little") == 0x12345678


def test_memory_access_size_as_exec_c():
    aligned = MemoryRegion("mmio", 0x100, MemoryRegionOps())
    unaligned = MemoryRegion("pio", 0x100, MemoryRegionOps(impl_unaligned=True))
    small = MemoryRegion("max2", 0x100, MemoryRegionOps(valid_max_access_size=2, impl_unaligned=True))
    # bounded by the address's alignment unless impl.unaligned
    assert [memory_access_size(aligned, 4, a) for a in (0, 1, 2, 3, 4, 6)] == [4, 1, 2, 1, 4, 2]
    assert [memory_access_size(unaligned, 4, a) for a in (0, 1, 2, 3)] == [4, 4, 4, 4]
    # never more than valid.max_access_size (default 4), rounded down to a power of two
    assert memory_access_size(unaligned, 8, 1) == 4 and memory_access_size(small, 4, 1) == 2
    assert memory_access_size(unaligned, 3, 1) == 2 and memory_access_size(aligned, 3, 0) == 2


def test_memory_region_access_valid_refuses_misaligned_unless_valid_unaligned():
    strict = MemoryRegion("mmio", 0x100, MemoryRegionOps())
    loose = MemoryRegion("pio", 0x100, MemoryRegionOps(valid_unaligned=True))
    assert memory_region_access_valid(strict, 2, 2, True) and not memory_region_access_valid(strict, 1, 2, True)
    assert not memory_region_access_valid(strict, 2, 4, False)
    assert memory_region_access_valid(loose, 1, 2, True) and memory_region_access_valid(loose, 3, 4, False)
