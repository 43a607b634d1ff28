"""Test helpers for the IDE model.

TEST-ONLY FAKE BLOCK LAYER: `FakeAio` replaces `bdrv_aio_writev/readv` inside hw/ide/core for unit tests
of the state machine. It records each request and lets the test complete it by hand (`req.complete(ret)`),
standing in for the real completion that arrives later from the main loop. It is never used by the model;
tests with the real block layer and threads use `Board` (test_ide_block.py, test_fuzz_regressions.py).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from vmio_edu.qemu.cpus import qemu_mutex_lock_iothread, qemu_mutex_unlock_iothread
from vmio_edu.qemu.hw.core.irq import qemu_allocate_irqs
from vmio_edu.qemu.hw.ide import core
from vmio_edu.qemu.hw.ide.piix import pci_piix_ide_init
from vmio_edu.qemu.ioport import cpu_inb, cpu_outb

from qemu_rig import QemuRig

SECTOR = 512
MAX_POLLS = 200


class FakeBDS:
    """A stand-in BlockDriverState: just what IDE reads (capacity via bdrv_get_geometry, write cache)."""

    def __init__(self, sectors: int = 2048):
        self.filename = "/nonexistent/fake-disk.img"  # hd_geometry_guess finds no MBR: size-based geometry
        self.drv = object()  # "a medium is inserted"
        self.total_sectors = sectors
        self.read_only = False
        self.enable_write_cache = True
        self.nr_bytes, self.nr_ops = [0, 0, 0], [0, 0, 0]  # bdrv_acct_done counts here, by BDRV_ACCT_*
        self.disk = bytearray(sectors * SECTOR)  # what reads return
        for i in range(len(self.disk)):
            self.disk[i] = (i * 7 + i // SECTOR) & 0xFF


@dataclass
class FakeRequest:
    op: str
    sector_num: int
    nb_sectors: int
    qiov: object
    cb: object
    opaque: object
    data: bytes  # for a write: the bytes handed over at submit time
    bds: FakeBDS
    done: bool = False

    def complete(self, ret: int = 0) -> None:
        """What bdrv_co_em_bh does later on the main loop: (for a read, fill the buffer) call the cb."""
        assert not self.done, "request completed twice"
        self.done = True
        if self.op == "read" and ret == 0:
            off = self.sector_num * SECTOR
            data = bytes(self.bds.disk[off:off + self.nb_sectors * SECTOR])
            pos = 0
            for v in self.qiov.iov[:self.qiov.niov]:
                m = v.mem()
                m[:] = data[pos:pos + len(m)]
                pos += len(m)
        self.cb(self.opaque, ret)


@dataclass
class FakeAio:
    bds: FakeBDS
    requests: list[FakeRequest] = field(default_factory=list)

    def _submit(self, op, bs, sector_num, qiov, nb_sectors, cb, opaque):
        assert bs is self.bds
        assert qiov.size == nb_sectors * SECTOR
        data = b"".join(bytes(v.mem()) for v in qiov.iov[:qiov.niov])
        r = FakeRequest(op, sector_num, nb_sectors, qiov, cb, opaque, data, self.bds)
        self.requests.append(r)
        return r

    def writev(self, bs, sector_num, qiov, nb_sectors, cb, opaque):
        return self._submit("write", bs, sector_num, qiov, nb_sectors, cb, opaque)

    def readv(self, bs, sector_num, qiov, nb_sectors, cb, opaque):
        return self._submit("read", bs, sector_num, qiov, nb_sectors, cb, opaque)

    @property
    def pending(self) -> list[FakeRequest]:
        return [r for r in self.requests if not r.done]


class IrqLine:
    """The ISA IRQ 14 line as the board sees it: its level and every change."""

    def __init__(self):
        self.history: list[int] = []
        self.irq = qemu_allocate_irqs(self._handler, None, 1)[0]

    def _handler(self, opaque, n, level):
        self.history.append(level)

    @property
    def level(self) -> int:
        return self.irq.level

    @property
    def raises(self) -> int:
        return self.history.count(1)


class Rig:
    """A PIIX3 IDE controller with a fake disk as primary master, driven by calling the port handlers."""

    def __init__(self, monkeypatch, sectors: int = 2048, address_space_io=None):
        self.bds = FakeBDS(sectors)
        self.aio = FakeAio(self.bds)
        monkeypatch.setattr(core, "bdrv_aio_writev", self.aio.writev)
        monkeypatch.setattr(core, "bdrv_aio_readv", self.aio.readv)
        self.line = IrqLine()
        self.d = pci_piix_ide_init(self.bds, self.line.irq, address_space_io)
        self.bus = self.d.bus[0]
        self.s = self.bus.ifs[0]

    # the guest's port accesses
    def outb(self, port, val):
        if port == 0x3F6:
            core.ide_cmd_write(self.bus, port, val)
        else:
            core.ide_ioport_write(self.bus, port, val)

    def inb(self, port):
        if port == 0x3F6:
            return core.ide_status_read(self.bus, port)
        return core.ide_ioport_read(self.bus, port)

    def outw(self, val):
        core.ide_data_writew(self.bus, 0x1F0, val)

    def inw(self):
        return core.ide_data_readw(self.bus, 0x1F0)

    def altstatus(self):
        return self.inb(0x3F6)

    def status(self):
        """Read 0x1f7: the status, and acknowledges the IRQ."""
        return self.inb(0x1F7)

    def setup_lba28(self, lba, count, drive=0):
        self.outb(0x1F6, 0xE0 | (drive << 4) | ((lba >> 24) & 0x0F))
        self.outb(0x1F2, count & 0xFF)
        self.outb(0x1F3, lba & 0xFF)
        self.outb(0x1F4, (lba >> 8) & 0xFF)
        self.outb(0x1F5, (lba >> 16) & 0xFF)

    def regs_lba28(self):
        return ((self.s.select & 0x0F) << 24) | (self.s.hcyl << 16) | (self.s.lcyl << 8) | self.s.sector


def words_of(data: bytes) -> list[int]:
    return [int.from_bytes(data[i:i + 2], "little") for i in range(0, len(data), 2)]


def sector_pattern(n: int, seed: int = 0) -> bytes:
    return bytes(((i * 13) + seed * 29 + (i >> 8)) & 0xFF for i in range(n * SECTOR))


def disk_image(directory, sectors: int = 64) -> str:
    """A raw image in `directory` with a known pattern (byte i is i*5+1), for the real block layer."""
    path = os.path.join(directory, "disk.img")
    with open(path, "wb") as f:
        f.write(bytes((i * 5 + 1) & 0xFF for i in range(sectors * SECTOR)))
    return path


class Board(QemuRig):
    """PIIX IDE over the real block layer and a raw image, the main loop on "main"; `run(guest)` runs
    guest(board) on a vCPU thread that does the guest's port accesses as kvm_handle_io would."""

    def __init__(self, image, latency=1, hooks=None):
        super().__init__(image, latency=latency, hooks=hooks)
        self.line = IrqLine()
        self.ide = pci_piix_ide_init(self.bs, self.line.irq, self.state.address_space_io)
        self.drive = self.ide.bus[0].ifs[0]
        self.start()

    def run(self, guest):
        self.run_vcpu(lambda: guest(self))

    # guest helpers (run on the vCPU thread)
    def kvm_run(self, n=1):
        for _ in range(n):
            qemu_mutex_unlock_iothread()  # the scheduling point before KVM_RUN
            qemu_mutex_lock_iothread()

    def poll(self, seen):
        """Read altstatus until BSY clears, one KVM_RUN between reads; every value goes into `seen`."""
        for _ in range(MAX_POLLS):
            st = cpu_inb(0x3F6)
            seen.append(st)
            if not st & 0x80:
                return st
            self.kvm_run()
        raise AssertionError("the drive stayed busy")

    def command(self, cmd, lba, count):
        for port, val in ((0x1F6, 0xE0 | (lba >> 24)), (0x1F2, count), (0x1F3, lba & 0xFF),
                          (0x1F4, (lba >> 8) & 0xFF), (0x1F5, (lba >> 16) & 0xFF)):
            cpu_outb(port, val)
        cpu_outb(0x1F7, cmd)
