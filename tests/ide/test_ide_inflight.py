"""IDE with a request in flight, and the error policies and drive set-ups the other tests do not reach.

From QEMU 1.6.1 hw/ide/core.c: the data port takes words only while DRQ is set and the transfer is PIO
out (ide_data_writew, core.c:1890-1908), so a write while BSY is dropped and cannot submit a second
request; a bus reset (ide_bus_reset, core.c:2042, on system_reset) runs ide_reset (core.c:1984), which
cancels the in-flight request with bdrv_aio_cancel, which for the block
layer's coroutine requests (block.c:3829 bdrv_aio_co_cancel_em) waits for it to finish, running the
AioContext, so the write reaches the disk and its callback runs before the registers are reset;
werror=stop stops the VM on any write error (ide_handle_rw_error → bdrv_error_action); a slave with no
drive ignores commands (ide_exec_cmd: `if (s != bus->ifs && !s->bs) return`).
"""
from __future__ import annotations

import errno

import pytest

from vmio_edu.qemu.hw.ide import core
from vmio_edu.qemu.ioport import cpu_inb, cpu_outb, cpu_outw

from idebench import SECTOR, Board, Rig, disk_image, sector_pattern, words_of


class Calls:
    """Trace hooks: (function, thread) of every entry."""

    def __init__(self):
        self.enters = []

    def enter(self, tp, args, ctx):
        self.enters.append((tp.name, ctx.name))

    def leave(self, tp, result, ctx):
        pass


@pytest.fixture
def rig(monkeypatch):
    return Rig(monkeypatch)


def test_data_port_writes_while_bsy_submit_no_second_request(rig):
    data = sector_pattern(1, seed=11)
    rig.setup_lba28(7, 2)
    rig.outb(0x1F7, 0x30)
    for w in words_of(data):
        rig.outw(w)
    assert rig.altstatus() == 0xD0  # BSY, DRQ clear: the first sector is in flight
    [first] = rig.aio.requests
    buf = bytes(rig.s.io_buffer[:SECTOR])
    for w in words_of(sector_pattern(1, seed=12)):  # a full sector's worth while BSY
        rig.outw(w)
    assert rig.aio.requests == [first]  # no second bdrv_aio_writev
    assert bytes(rig.s.io_buffer[:SECTOR]) == buf and rig.s.data_ptr == rig.s.data_end
    first.complete(0)
    assert rig.altstatus() == 0x58 and rig.s.nsector == 1  # the second sector's window opens only now


def test_werror_stop_stops_the_vm_on_eio(rig):
    core.bdrv_set_on_error(rig.bds, "report", "stop")
    rig.setup_lba28(9, 1)
    rig.outb(0x1F7, 0x30)
    for w in words_of(sector_pattern(1)):
        rig.outw(w)
    rig.aio.pending[0].complete(-errno.EIO)
    err = rig.s.last_io_error
    assert (err["name"], err["action"], err["policy"]) == ("EIO", "stop", "werror=stop")
    assert rig.altstatus() == 0x50 and rig.line.raises == 0  # the guest sees nothing: the VM is stopped
    assert rig.s.nsector == 1 and rig.regs_lba28() == 9  # nothing advanced; `cont` retries the sector
    assert rig.bds.iostatus == "failed"


def test_werror_stop_on_the_read_side_is_rerror(rig):
    core.bdrv_set_on_error(rig.bds, "stop", "report")
    rig.setup_lba28(4, 1)
    rig.outb(0x1F7, 0x20)
    rig.aio.pending[0].complete(-errno.EIO)
    assert rig.s.last_io_error["action"] == "stop" and rig.line.raises == 0


def test_a_slave_with_no_drive_ignores_commands_and_reads_zero(rig):
    rig.outb(0x1F6, 0xF0)  # select the slave (none on this channel)
    rig.outb(0x1F2, 1)
    rig.outb(0x1F7, 0xEC)  # IDENTIFY: dropped, no IRQ, no request
    assert rig.line.raises == 0 and rig.aio.requests == []
    assert rig.inb(0x1F7) == 0 and rig.altstatus() == 0
    rig.outb(0x1F6, 0xE0)  # the master still works
    rig.outb(0x1F7, 0xEC)
    assert rig.altstatus() == 0x58 and rig.line.raises == 1


def test_reset_with_a_write_in_flight_waits_for_it(tmp_path):
    """A bus reset while the pool writes a sector: bdrv_aio_cancel runs the AioContext on the resetting
    thread until the pwrite is done and ide_sector_write_cb has run, then the drive is reset. The sector
    is on disk, the drive is idle with the reset signature. (SRST through 0x3f6 does not reset the drive
    in 1.6.1, ide_cmd_write: only this reset cancels.)"""
    image = disk_image(tmp_path)
    data = sector_pattern(1, seed=21)
    calls = Calls()
    b = Board(image, hooks=calls)
    out = {}
    try:
        def guest(b):
            b.command(0x30, 6, 2)
            for w in words_of(data):
                cpu_outw(0x1F0, w)
            out["busy"] = cpu_inb(0x3F6)
            out["inflight"] = b.drive.pio_aiocb is not None
            core.ide_bus_reset(b.ide.bus[0])  # system_reset, with the BQL held
            out["after_reset"] = b.drive.pio_aiocb
            out["status"] = cpu_inb(0x1F7)
            out["nsector"], out["sector"] = cpu_inb(0x1F2), cpu_inb(0x1F3)
        b.run(guest)
    finally:
        b.close()
    assert out["busy"] == 0xD0 and out["inflight"]
    assert out["after_reset"] is None
    # the cancel ran on the vCPU and waited there: the completion callback ran inside it, on vcpu0
    names = [(n, t) for n, t in calls.enters]
    i = names.index(("bdrv_aio_cancel", "vcpu0"))
    assert ("ide_sector_write_cb", "vcpu0") in names[i:] and ("sys_pwrite64", "worker-1") in names
    assert names.index(("ide_reset", "vcpu0")) < i
    assert out["status"] == 0x50 and (out["nsector"], out["sector"]) == (1, 1)  # the reset signature
    with open(image, "rb") as f:
        f.seek(6 * SECTOR)
        assert f.read(SECTOR) == data  # the cancelled write still landed (1.6.1 waits for it)


def test_a_drive_whose_medium_is_gone_aborts_reads_with_enomedium(tmp_path):
    """The drive stays, its BlockDriverState has no medium (bdrv_close, as `eject` leaves it): READ SECTORS
    reaches bdrv_co_do_readv, which returns -ENOMEDIUM (block.c:2511 `if (!drv)`), and rerror=report
    aborts the command (0x41/0x04) with an IRQ. Nothing is read from any file."""
    from vmio_edu.qemu.block import bdrv_close
    b = Board(disk_image(tmp_path))
    out = {}
    try:
        bdrv_close(b.bs)

        def guest(b):
            b.command(0x20, 3, 1)
            out["status"] = b.poll([])
            out["error"] = cpu_inb(0x1F1)
        b.run(guest)
    finally:
        b.close()
    assert (out["status"], out["error"]) == (0x41, 0x04) and b.line.raises == 1
    err = b.drive.last_io_error
    assert err["name"] == "ENOMEDIUM" and err["action"] == "report"
