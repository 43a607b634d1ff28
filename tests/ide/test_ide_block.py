"""IDE on the real block layer: the scheduler's threads, a raw image, the coroutine, the thread pool and
the main loop. A model thread plays the vCPU: it does the guest's port accesses (cpu_outb/cpu_inb, as
kvm_handle_io would) and, between status polls, drops the BQL like KVM_RUN does."""
from __future__ import annotations

import errno
import os

import pytest

from vmio_edu.qemu.cpus import qemu_mutex_lock_iothread
from vmio_edu.qemu.ioport import cpu_inb, cpu_inw, cpu_outw

from idebench import SECTOR, Board, disk_image, sector_pattern, words_of



class Threads:
    """Trace hooks: which thread entered which function, in order."""

    def __init__(self):
        self.enters = []

    def enter(self, tp, args, ctx):
        self.enters.append((tp.name, ctx.name))

    def leave(self, tp, result, ctx):
        pass

    def threads_of(self, name):
        return [t for n, t in self.enters if n == name]


@pytest.fixture
def image(tmp_path):
    return disk_image(tmp_path)


@pytest.fixture
def board_factory():
    made = []

    def make(*a, **kw):
        b = Board(*a, **kw)
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()


def test_write_then_read_two_sectors_through_the_real_block_layer(image, board_factory):
    data = sector_pattern(2, seed=8)
    rec = Threads()
    b = board_factory(image, hooks=rec)
    before = open(image, "rb").read()
    out = {}

    def guest(b):
        seen = out["write"] = []
        b.command(0x30, 5, 2)
        for i in range(2):
            seen.append(cpu_inb(0x3F6))
            for w in words_of(data[i * SECTOR:(i + 1) * SECTOR]):
                cpu_outw(0x1F0, w)
            b.poll(seen)
            out.setdefault("irq", []).append(b.line.level)
            seen.append(cpu_inb(0x1F7))  # ack
        seen = out["read"] = []
        b.command(0x20, 5, 2)
        got = b""
        for i in range(2):
            b.poll(seen)
            got += b"".join(cpu_inw(0x1F0).to_bytes(2, "little") for _ in range(256))
        seen.append(cpu_inb(0x1F7))
        out["data"] = got

    b.run(guest)
    after = open(image, "rb").read()
    assert after[5 * SECTOR:7 * SECTOR] == data
    assert after[:5 * SECTOR] == before[:5 * SECTOR] and after[7 * SECTOR:] == before[7 * SECTOR:]
    assert out["data"] == data
    w = out["write"]
    # 0x58 with the window open; BSY (0xD0) polled at least once while the pool writes; then 0x58 for
    # the next sector, and 0x50 at the end
    assert w[0] == 0x58 and w[1] == 0xD0 and 0x58 in w[2:] and w[-1] == 0x50
    assert out["irq"] == [1, 1]
    r = out["read"]
    assert r[0] == 0xD0 and r.count(0x58) == 2 and r[-1] == 0x50
    assert b.line.raises == 4  # two per command: one per sector
    assert rec.threads_of("ide_sector_write") == ["vcpu0", "vcpu0"]
    assert rec.threads_of("bdrv_aio_writev") == ["vcpu0", "vcpu0"]
    assert rec.threads_of("ide_sector_write_cb") == ["main", "main"]
    assert rec.threads_of("ide_sector_read_cb") == ["main", "main"]
    assert rec.threads_of("bmdma_irq").count("main") >= 4


def test_past_the_end_write_becomes_abrt(image, board_factory):
    b = board_factory(image)
    out = {}

    def guest(b):
        b.command(0x30, 1000, 1)  # the image has 64 sectors
        for w in words_of(sector_pattern(1)):
            cpu_outw(0x1F0, w)
        out["status"] = b.poll([])
        out["error"] = cpu_inb(0x1F1)

    before = open(image, "rb").read()
    b.run(guest)
    assert (out["status"], out["error"]) == (0x41, 0x04)
    assert b.line.raises == 1
    assert open(image, "rb").read() == before
    err = b.ide.bus[0].ifs[0].last_io_error
    assert err["name"] == "EIO" and err["errno"] == errno.EIO and err["sector_num"] == 1000


def test_real_enospc_stops_the_vm_with_the_reason_recorded(image, board_factory):
    """A genuine ENOSPC from pwrite (the image's fd is swapped for /dev/full, a test-only trick): with
    QEMU 1.6.1's default werror=enospc the guest gets no error and no IRQ, and the VM stops."""
    b = board_factory(image)
    full = os.open("/dev/full", os.O_RDWR)
    try:
        os.dup2(full, b.bs.file.opaque.fd)
    finally:
        os.close(full)
    out = {}

    def guest(b):
        b.command(0x30, 2, 1)
        for w in words_of(sector_pattern(1)):
            cpu_outw(0x1F0, w)
        out["status"] = b.poll(out.setdefault("seen", []))
        b.kvm_run()  # the next KVM_RUN: a stopped VM does not come back from here
        out["resumed"] = True

    sched = b.sched
    sched.spawn("vcpu0", lambda: (qemu_mutex_lock_iothread(), guest(b)), vcpu=True)
    parked = sched.resume()
    assert parked.reason == "stop" and parked.thread == "vcpu0"
    assert "resumed" not in out
    assert b.state.extra["runstate"] == "io-error"
    assert "ENOSPC" in b.state.extra["vm_stop_reason"]
    s = b.ide.bus[0].ifs[0]
    assert out["seen"][0] == 0xD0 and "status" not in out  # stopped before the guest polls again
    assert s.status == 0x50  # BSY dropped, no ERR: the guest is not told
    assert b.line.raises == 0
    assert s.nsector == 1 and s.sector == 2  # nothing advanced: the retry writes the same sector
    assert b.ide.bus[0].error_status == 0x10 and b.ide.bmdma[0].unit == 0  # BM_STATUS_PIO_RETRY
    assert s.last_io_error["name"] == "ENOSPC" and s.last_io_error["action"] == "stop"
    assert b.bs.iostatus == "nospace"
