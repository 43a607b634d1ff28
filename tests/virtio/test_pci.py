"""hw/pci (QEMU 1.6.1): config mechanism #1, BAR sizing and mapping, PIIX3's INTx routing, and
bdrv_aio_multiwrite's merging, driven directly (no guest)."""
import struct

from vmio_edu.qemu.block import BlockRequest, MultiwriteCB, multiwrite_merge
from vmio_edu.qemu.hw.core.irq import IRQState
from vmio_edu.qemu.hw.pci.pci import PCI_BAR_UNMAPPED, PCI_DEVFN, PCI_STATUS_INTERRUPT
from vmio_edu.qemu.hw.pci.pci_host import pci_host_config_read, pci_host_config_write, pci_host_data_read, \
    pci_host_data_write
from vmio_edu.qemu.hw.pci_host.piix import i440fx_init
from vmio_edu.qemu.hw.virtio.virtio_pci import virtio_blk_pci_init
from vmio_edu.qemu.hw.block.virtio_blk import virtio_blk_device_init
from vmio_edu.qemu.block import bdrv_close, bdrv_open
from vmio_edu.qemu.memory import MemoryRegion
from vmio_edu.qemu.util.iov import QEMUIOVector, iovec, qemu_iovec_init_external


class Board:
    """i440FX + PIIX3 + virtio-blk-pci at 00:04.0, with ISA lines that note their levels."""

    def __init__(self, tmp_path):
        img = tmp_path / "d.img"
        img.write_bytes(bytes(1 << 20))
        self.bs = bdrv_open(str(img))
        self.io = MemoryRegion("io", 0x10000)
        self.levels = {}
        isa = [IRQState(lambda _, n, level: self.levels.__setitem__(n, level), None, i) for i in range(16)]
        self.pci = i440fx_init(self.io, isa)
        self.proxy = virtio_blk_pci_init(self.pci.bus, PCI_DEVFN(4, 0), virtio_blk_device_init(self.bs))

    def cfg(self, devfn, reg, val=None, size=4):
        host = self.pci.host
        pci_host_config_write(host, 0, 0x80000000 | devfn << 8 | (reg & 0xFC), 4)
        if val is None:
            return pci_host_data_read(host, reg & 3, size) & ((1 << 8 * size) - 1)
        pci_host_data_write(host, reg & 3, val, size)


def test_config_mechanism_1(tmp_path):
    b = Board(tmp_path)
    try:
        assert b.cfg(PCI_DEVFN(0, 0), 0) == 0x12378086  # i440FX
        assert b.cfg(PCI_DEVFN(1, 0), 0) == 0x70008086  # PIIX3
        assert b.cfg(PCI_DEVFN(4, 0), 0) == 0x10011AF4  # virtio-blk
        assert b.cfg(PCI_DEVFN(4, 0), 0x08) >> 8 == 0x010000  # class: SCSI storage; revision 0
        assert b.cfg(PCI_DEVFN(4, 0), 0x2C) == 0x00021AF4  # subsystem: Red Hat, VIRTIO_ID_BLOCK
        assert b.cfg(PCI_DEVFN(4, 0), 0x3D, size=1) == 1  # INTA#
        assert b.cfg(PCI_DEVFN(3, 0), 0) == 0xFFFFFFFF  # an empty slot
        assert b.cfg(PCI_DEVFN(4, 0), 0x02, size=2) == 0x1001  # a word through 0xcfe
        # without the enable bit: data reads all ones, writes vanish
        pci_host_config_write(b.pci.host, 0, PCI_DEVFN(4, 0) << 8 | 0x3C, 4)
        assert pci_host_data_read(b.pci.host, 0, 4) == 0xFFFFFFFF
        # only a 32-bit write at offset 0 latches the address
        pci_host_config_write(b.pci.host, 0, 0x12, 1)
        assert pci_host_config_read(b.pci.host, 0, 4) == PCI_DEVFN(4, 0) << 8 | 0x3C
    finally:
        bdrv_close(b.bs)


def test_bar_sizing_and_mapping(tmp_path):
    b = Board(tmp_path)
    try:
        dev = PCI_DEVFN(4, 0)
        b.cfg(dev, 0x10, 0xFFFFFFFF)
        assert b.cfg(dev, 0x10) == 0xFFFFFFC1  # 64 bytes, I/O space
        b.cfg(dev, 0x10, 0xC000)
        region = b.proxy.pci_dev.io_regions[0]
        assert region.addr == PCI_BAR_UNMAPPED  # I/O decoding is still off
        b.cfg(dev, 0x04, 0x0005, size=2)  # I/O + bus master
        assert region.addr == 0xC000 and b.proxy.bar in b.io.subregions
        b.cfg(dev, 0x04, 0, size=2)
        assert region.addr == PCI_BAR_UNMAPPED and b.proxy.bar not in b.io.subregions
        b.cfg(dev, 0x00, 0xFFFFFFFF)  # vendor/device are read-only
        assert b.cfg(dev, 0) == 0x10011AF4
    finally:
        bdrv_close(b.bs)


def test_intx_goes_through_the_piix3_pirq_routing(tmp_path):
    b = Board(tmp_path)
    try:
        irq = b.proxy.pci_dev.irq[0]
        irq.handler(irq.opaque, 0, 1)  # INTA# of slot 4 -> PIRQD, routing still off (0x80)
        assert b.levels == {} and b.proxy.pci_dev.config[0x06] & PCI_STATUS_INTERRUPT
        b.cfg(PCI_DEVFN(1, 0), 0x60, 0x0B0B0A0A)  # PIRQA-D -> 10, 10, 11, 11 (SeaBIOS)
        assert b.levels.get(11) == 1  # the pending level shows up as soon as it is routed
        irq.handler(irq.opaque, 0, 0)
        assert b.levels[11] == 0 and not b.proxy.pci_dev.config[0x06] & PCI_STATUS_INTERRUPT
        b.cfg(PCI_DEVFN(4, 0), 0x04, 0x0400, size=2)  # INTx disable
        irq.handler(irq.opaque, 0, 1)
        assert b.levels[11] == 0
    finally:
        bdrv_close(b.bs)


def _req(sector, data):
    q = QEMUIOVector()
    qemu_iovec_init_external(q, [iovec(bytearray(data), len(data))])
    return BlockRequest(sector, len(data) // 512, q, cb=None, opaque=sector)


def test_multiwrite_merge_sorts_merges_and_keeps_gaps():
    a, b_, c, d = (bytes([n]) * 512 * k for n, k in ((1, 4), (2, 4), (3, 2), (4, 1)))
    reqs = [_req(8, a), _req(0, b_), _req(4, c), _req(20, d)]
    mcb = MultiwriteCB(num_callbacks=4, callbacks=[{"cb": None, "opaque": r.opaque, "free_qiov": None} for r in reqs])
    n = multiwrite_merge(None, reqs, 4, mcb)
    # [0,4) + [4,6) sequential, then [8,12) starts past 6: a gap keeps it apart; [20,21) alone
    assert n == 3
    assert [(r.sector, r.nb_sectors) for r in reqs[:n]] == [(0, 6), (8, 4), (20, 1)]
    merged = b"".join(bytes(v.mem()) for v in reqs[0].qiov.iov[:reqs[0].qiov.niov])
    assert merged == b_ + c


def test_multiwrite_merge_overlap_takes_the_later_request():
    first, second = b"\x01" * 512 * 8, b"\x02" * 512 * 6
    reqs = [_req(0, first), _req(4, second)]
    mcb = MultiwriteCB(num_callbacks=2, callbacks=[{"cb": None, "opaque": None, "free_qiov": None}] * 2)
    assert multiwrite_merge(None, reqs, 2, mcb) == 1
    assert (reqs[0].sector, reqs[0].nb_sectors) == (0, 10)
    merged = b"".join(bytes(v.mem()) for v in reqs[0].qiov.iov[:reqs[0].qiov.niov])
    assert merged == first[:4 * 512] + second  # the first one's tail is dropped
    assert struct.unpack("<I", merged[-4:])[0] == 0x02020202


def test_the_ide_board_is_unchanged():
    from vmio_edu import Machine
    with Machine(op="write") as m:  # disk="ide": no PCI host bridge ports, no virtio device
        assert m.virtio is None and "pci" not in m.state.extra
        assert all(r.name not in ("pci-conf-idx", "pci-conf-data") for r in m.state.address_space_io.root.subregions)
