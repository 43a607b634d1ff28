"""The IDE PIO state machine (QEMU 1.6.1 hw/ide/core.c), driven through its port handlers, with the
test-only fake block layer of idebench.py completing requests by hand."""
from __future__ import annotations

import errno

import pytest

from vmio_edu.qemu.hw.ide import core
from vmio_edu.qemu.hw.ide.internal import (ABRT_ERR, BM_STATUS_INT, BM_STATUS_PIO_RETRY, BUSY_STAT, DRQ_STAT,
                                           ERR_STAT, READY_STAT, SEEK_STAT)

from idebench import SECTOR, Rig, sector_pattern, words_of


@pytest.fixture
def rig(monkeypatch):
    return Rig(monkeypatch)


def write_sector_words(rig, data):
    for w in words_of(data):
        rig.outw(w)


# -- WRITE SECTORS -------------------------------------------------------------------------------------
def test_write_one_sector_status_sequence_irq_and_registers(rig):
    data = sector_pattern(1, seed=3)
    rig.setup_lba28(0x000123, 1)
    rig.outb(0x1F7, 0x30)
    assert rig.altstatus() == 0x58  # DRDY|DSC|DRQ
    assert rig.line.raises == 0  # no IRQ before the first block
    write_sector_words(rig, data[:-2])
    assert rig.altstatus() == 0x58 and rig.aio.requests == []  # nothing submitted before the last word
    rig.outw(words_of(data)[-1])
    assert rig.altstatus() == 0xD0  # BSY|DRDY|DSC while the write is in flight
    [req] = rig.aio.requests
    assert (req.op, req.sector_num, req.nb_sectors) == ("write", 0x123, 1)
    assert req.data == data  # io_buffer bytes handed to the block layer = the words written
    assert req.cb is core.ide_sector_write_cb and req.opaque is rig.s
    assert rig.line.raises == 0
    req.complete(0)
    assert rig.altstatus() == 0x50  # DRDY|DSC, window closed
    assert rig.line.level == 1 and rig.line.raises == 1  # IRQ 14
    assert rig.s.nsector == 0
    assert rig.regs_lba28() == 0x124  # the LBA registers advanced
    assert rig.d.bmdma[0].status & BM_STATUS_INT  # bmdma_irq saw the raise


def test_write_three_sectors(rig):
    data = sector_pattern(3, seed=5)
    rig.setup_lba28(0x0ABCDE, 3)
    rig.outb(0x1F7, 0x30)
    statuses, nsectors, lbas = [], [], []
    for i in range(3):
        assert rig.altstatus() == 0x58
        write_sector_words(rig, data[i * SECTOR:(i + 1) * SECTOR])
        statuses.append(rig.altstatus())
        req = rig.aio.pending[0]
        assert req.sector_num == 0x0ABCDE + i and req.data == data[i * SECTOR:(i + 1) * SECTOR]
        req.complete(0)
        statuses.append(rig.altstatus())
        nsectors.append(rig.s.nsector)
        lbas.append(rig.regs_lba28())
        assert rig.line.level == 1
        assert rig.status() == statuses[-1]  # the guest's status read acknowledges the IRQ
        assert rig.line.level == 0
    assert statuses == [0xD0, 0x58, 0xD0, 0x58, 0xD0, 0x50]
    assert nsectors == [2, 1, 0]
    assert lbas == [0x0ABCDF, 0x0ABCE0, 0x0ABCE1]
    assert rig.line.raises == 3
    assert len(rig.aio.requests) == 3


def test_writes_past_the_window_are_ignored(rig):
    rig.setup_lba28(1, 1)
    rig.outb(0x1F7, 0x30)
    write_sector_words(rig, sector_pattern(1))
    rig.aio.pending[0].complete(0)
    before = bytes(rig.s.io_buffer[:SECTOR])
    rig.outw(0xBEEF)  # DRQ is clear: ignored
    assert bytes(rig.s.io_buffer[:SECTOR]) == before and len(rig.aio.requests) == 1


def test_dword_writes_fill_a_sector_in_128_accesses(rig):
    data = sector_pattern(1, seed=9)
    rig.setup_lba28(7, 1)
    rig.outb(0x1F7, 0x30)
    for i in range(0, SECTOR, 4):
        core.ide_data_writel(rig.bus, 0x1F0, int.from_bytes(data[i:i + 4], "little"))
    [req] = rig.aio.requests
    assert req.sector_num == 7 and req.data == data


# -- READ SECTORS --------------------------------------------------------------------------------------
def test_read_two_sectors(rig):
    lba = 0x000200
    expected = bytes(rig.bds.disk[lba * SECTOR:(lba + 2) * SECTOR])
    rig.setup_lba28(lba, 2)
    rig.outb(0x1F7, 0x20)
    assert rig.altstatus() == 0xD0  # the first read starts at once
    assert rig.line.raises == 0
    got = b""
    for i in range(2):
        [req] = rig.aio.pending
        assert (req.op, req.sector_num, req.nb_sectors) == ("read", lba + i, 1)  # each sector one aio
        req.complete(0)
        assert rig.line.raises == i + 1 and rig.line.level == 1
        assert rig.status() == 0x58  # acknowledges
        assert rig.s.nsector == 1 - i
        words = [rig.inw() for _ in range(256)]
        got += b"".join(w.to_bytes(2, "little") for w in words)
        assert rig.altstatus() == (0xD0 if i == 0 else 0x50)
    assert got == expected
    assert rig.line.raises == 2  # no extra IRQ at the end
    assert len(rig.aio.requests) == 2
    assert rig.regs_lba28() == lba + 2
    assert rig.inw() == 0  # past the window: 0, and nothing moves
    assert core.ide_data_readl(rig.bus, 0x1F0) == 0


def test_byte_read_of_the_data_port_is_ff(rig):
    rig.setup_lba28(0, 1)
    rig.outb(0x1F7, 0x20)
    rig.aio.pending[0].complete(0)
    assert rig.inb(0x1F0) == 0xFF
    assert rig.s.data_ptr == 0  # a byte read does not move the window


# -- IDENTIFY ------------------------------------------------------------------------------------------
def ata_string(words, first, count):
    raw = b"".join(w.to_bytes(2, "big") for w in words[first:first + count])  # ATA strings: byte-swapped
    return raw.decode("ascii")


def test_identify(rig):
    rig.outb(0x1F6, 0xA0)
    rig.outb(0x1F7, 0xEC)
    assert rig.altstatus() == 0x58
    assert rig.line.raises == 1  # IDENTIFY raises the IRQ with the data ready
    assert rig.status() == 0x58 and rig.line.level == 0
    words = [rig.inw() for _ in range(256)]
    assert rig.altstatus() == 0x50 and rig.line.raises == 1
    assert rig.inw() == 0
    assert words[0] == 0x0040
    assert ata_string(words, 27, 20) == "QEMU HARDDISK".ljust(40)
    assert ata_string(words, 10, 10) == "QM00001".ljust(20)
    assert ata_string(words, 23, 4) == "1.6.1".ljust(8)
    nb = rig.bds.total_sectors
    assert words[60] | (words[61] << 16) == nb  # LBA28 capacity
    assert sum(words[100 + i] << (16 * i) for i in range(4)) == nb  # LBA48 capacity
    assert words[49] & (1 << 9)  # LBA supported
    assert words[83] & (1 << 10)  # LBA48 supported
    assert (words[1], words[3], words[6]) == (2, 16, 63)  # 2048 sectors: guess_chs_for_size
    assert words[47] == 0x8010 and words[59] == 0x0110  # MAX_MULT_SECTORS 16
    # the raw bytes: "QEMU" is stored as "EQUM"
    assert bytes(rig.s.identify_data[54:58]) == b"EQUM"


def test_identify_is_cached_and_byte_identical(rig):
    rig.outb(0x1F7, 0xEC)
    first = bytes(rig.s.io_buffer[:SECTOR])
    [rig.inw() for _ in range(256)]
    rig.s.io_buffer[:SECTOR] = bytes(SECTOR)
    rig.outb(0x1F7, 0xEC)
    assert bytes(rig.s.io_buffer[:SECTOR]) == first


# -- errors --------------------------------------------------------------------------------------------
def test_unknown_command_aborts_with_irq(rig):
    rig.outb(0x1F7, 0x77)
    assert rig.altstatus() == 0x41  # DRDY|ERR
    assert rig.inb(0x1F1) == 0x04  # ABRT
    assert rig.line.raises == 1
    assert "0x77" in rig.s.abort_reason
    assert rig.aio.requests == []


def test_real_command_not_modelled_is_aborted_and_explained(rig):
    rig.outb(0x1F7, 0xEF)  # SET FEATURES: real QEMU runs it
    assert rig.altstatus() == 0x41
    assert "SET FEATURES" in rig.s.abort_reason and "does not run" in rig.s.abort_reason


def test_nop_command_sets_dsc_and_raises_irq(rig):
    core.ide_cmd_write(rig.bus, 0x3F6, 0)
    rig.s.status = READY_STAT  # DSC off, to see the table's SET_DSC put it back
    rig.outb(0x1F7, 0x10)  # RECALIBRATE: cmd_nop with SET_DSC
    assert rig.altstatus() == READY_STAT | SEEK_STAT
    assert rig.line.raises == 1


def test_eio_on_write_reports_abrt(rig):
    rig.setup_lba28(5000, 1)  # past the end of the 2048-sector disk
    rig.outb(0x1F7, 0x30)
    write_sector_words(rig, sector_pattern(1))
    req = rig.aio.pending[0]
    assert req.sector_num == 5000
    req.complete(-errno.EIO)
    assert rig.altstatus() == 0x41 and rig.inb(0x1F1) == ABRT_ERR
    assert rig.line.raises == 1
    err = rig.s.last_io_error
    assert err["name"] == "EIO" and err["action"] == "report" and err["policy"] == "werror=enospc"
    assert err["sector_num"] == 5000
    assert rig.bus.error_status == 0
    assert "EIO" in rig.s.abort_reason


def test_eio_on_read_reports_abrt(rig):
    rig.setup_lba28(9000, 1)
    rig.outb(0x1F7, 0x20)
    rig.aio.pending[0].complete(-errno.EIO)
    assert rig.altstatus() == 0x41 and rig.inb(0x1F1) == 0x04
    assert rig.line.raises == 1
    assert rig.s.last_io_error["policy"] == "rerror=report"
    assert rig.inw() == 0  # no window was opened


def test_enospc_stops_the_vm_and_the_retry_writes_the_same_sector(rig, monkeypatch):
    from vmio_edu.qemu.hw.ide import pci
    data = sector_pattern(1, seed=7)
    rig.setup_lba28(42, 2)
    rig.outb(0x1F7, 0x30)
    write_sector_words(rig, data)
    first = rig.aio.pending[0]
    first.complete(-errno.ENOSPC)
    # werror=enospc: the VM stops; the guest sees no error, no IRQ, nothing advanced
    assert rig.altstatus() == 0x50
    assert rig.line.raises == 0
    assert rig.s.nsector == 2 and rig.regs_lba28() == 42
    assert rig.bus.error_status == BM_STATUS_PIO_RETRY and rig.d.bmdma[0].unit == 0
    err = rig.s.last_io_error
    assert (err["name"], err["action"], err["policy"]) == ("ENOSPC", "stop", "werror=enospc")
    assert "vm_stop" in err["why"] and "cont" in err["why"]
    assert rig.bds.iostatus == "nospace"
    assert rig.s.view()["last_io_error"]["action"] == "stop"

    # `cont`: the run-state handler schedules the restart BH (run at once by this test-only fake)
    class BH:
        def __init__(self, cb, opaque):
            self.cb, self.opaque = cb, opaque
    monkeypatch.setattr(pci, "qemu_bh_new", lambda cb, opaque: BH(cb, opaque))
    monkeypatch.setattr(pci, "qemu_bh_schedule", lambda bh: bh.cb(bh.opaque))
    monkeypatch.setattr(pci, "qemu_bh_delete", lambda bh: None)
    [(cb, opaque)] = rig.d.vm_change_state_handlers[:1]
    cb(opaque, 1, "running")
    retry = rig.aio.pending[0]
    assert retry is not first and retry.sector_num == 42 and retry.data == data
    assert rig.altstatus() == 0xD0 and rig.bus.error_status == 0
    retry.complete(0)
    assert rig.altstatus() == 0x58 and rig.line.raises == 1 and rig.s.nsector == 1


def test_werror_report_turns_enospc_into_abrt(rig):
    core.bdrv_set_on_error(rig.bds, "report", "report")
    rig.setup_lba28(3, 1)
    rig.outb(0x1F7, 0x30)
    write_sector_words(rig, sector_pattern(1))
    rig.aio.pending[0].complete(-errno.ENOSPC)
    assert rig.altstatus() == 0x41 and rig.inb(0x1F1) == 0x04 and rig.line.raises == 1
    assert rig.s.last_io_error["action"] == "report"


def test_unknown_error_policy_is_refused(rig):
    with pytest.raises(core.IDEModelError, match="policy"):
        core.bdrv_set_on_error(rig.bds, "report", "retry-forever")


# -- IRQ masking and acknowledge ------------------------------------------------------------------------
def test_nien_masks_the_irq(rig):
    rig.outb(0x3F6, 0x02)  # nIEN
    rig.outb(0x1F7, 0xEC)
    assert rig.altstatus() == 0x58
    rig.outb(0x1F7, 0x77)  # ignored: DRQ is set
    [rig.inw() for _ in range(256)]
    rig.outb(0x1F7, 0x77)
    assert rig.altstatus() == 0x41
    rig.setup_lba28(1, 1)
    rig.outb(0x1F7, 0x20)
    rig.aio.pending[0].complete(0)
    assert rig.altstatus() == 0x58
    assert rig.line.raises == 0 and rig.line.level == 0


def test_status_read_acks_but_altstatus_does_not(rig):
    rig.outb(0x1F7, 0xEC)
    assert rig.line.level == 1
    for _ in range(3):
        assert rig.altstatus() == 0x58
    assert rig.line.level == 1
    assert rig.status() == 0x58
    assert rig.line.level == 0 and rig.line.history[-1] == 0


# -- reset, busy rules, addressing ---------------------------------------------------------------------
def test_srst_through_device_control(rig):
    rig.setup_lba28(0x55, 9)
    rig.outb(0x3F6, 0x04)  # SRST up
    assert rig.altstatus() == BUSY_STAT | SEEK_STAT
    assert rig.s.error == 0x01
    rig.outb(0x1F2, 0x33)  # ignored while BSY
    assert rig.s.nsector == 9
    rig.outb(0x3F6, 0x00)  # SRST down
    assert rig.altstatus() == 0x50
    s = rig.s
    assert (s.nsector, s.sector, s.lcyl, s.hcyl) == (1, 1, 0, 0)  # disk signature
    slave = rig.bus.ifs[1]
    assert (slave.lcyl, slave.hcyl) == (0xFF, 0xFF)  # no disk there
    assert rig.line.raises == 0


def test_task_file_writes_ignored_while_drq_or_bsy(rig):
    rig.setup_lba28(0x10, 1)
    rig.outb(0x1F7, 0x30)
    assert rig.altstatus() & DRQ_STAT
    for port in range(0x1F1, 0x1F7):
        rig.outb(port, 0x99)
    assert rig.regs_lba28() == 0x10 and rig.s.nsector == 1 and rig.bus.unit == 0
    rig.outb(0x1F7, 0xEC)  # a command while DRQ: ignored too
    assert rig.s.end_transfer_func is core.ide_sector_write
    write_sector_words(rig, sector_pattern(1))
    assert rig.altstatus() & BUSY_STAT
    rig.outb(0x1F3, 0x77)
    assert rig.s.sector == 0x10


def test_count_zero_means_256(rig):
    rig.setup_lba28(0, 0)
    rig.outb(0x1F7, 0x30)
    assert rig.s.nsector == 256
    write_sector_words(rig, sector_pattern(1))
    rig.aio.pending[0].complete(0)
    assert rig.s.nsector == 255 and rig.altstatus() == 0x58
    assert rig.inb(0x1F2) == 255


def test_registers_go_to_both_drives_and_missing_slave_reads_zero(rig):
    rig.outb(0x1F6, 0xF0)  # select the slave (LBA)
    assert rig.bus.unit == 1
    rig.outb(0x1F2, 0x12)
    rig.outb(0x1F3, 0x34)
    master, slave = rig.bus.ifs
    assert master.nsector == slave.nsector == 0x12 and master.sector == slave.sector == 0x34
    # bit 4 is forced per drive; the later task-file writes cleared bit 7 (QEMU's HOB bit) on both
    assert master.select == 0x60 and slave.select == 0x70
    assert rig.status() == 0 and rig.altstatus() == 0 and rig.inb(0x1F1) == 0
    rig.outb(0x1F7, 0xEC)  # commands to a missing slave are ignored
    assert slave.command is None and rig.line.raises == 0
    assert rig.inw() == 0
    rig.outb(0x1F6, 0xE0)
    assert rig.status() == 0x50


def test_hob_registers_keep_the_previous_byte(rig):
    rig.outb(0x1F3, 0x11)
    rig.outb(0x1F3, 0x22)
    assert (rig.s.hob_sector, rig.s.sector) == (0x11, 0x22)


def test_lba48_write_uses_hob_bytes(rig):
    rig.outb(0x1F6, 0x40)
    for hi, lo, port in ((0x00, 0x02, 0x1F2), (0x00, 0x01, 0x1F3), (0x00, 0x00, 0x1F4), (0x00, 0x00, 0x1F5)):
        rig.outb(port, hi)
        rig.outb(port, lo)
    rig.outb(0x1F7, 0x34)  # WRITE SECTORS EXT
    assert rig.s.lba48 == 1 and rig.s.nsector == 2
    write_sector_words(rig, sector_pattern(1))
    assert rig.aio.pending[0].sector_num == 1
    rig.aio.pending[0].complete(0)
    assert (rig.s.sector, rig.s.hob_sector) == (2, 0)


def test_lba48_count_and_sector_from_hob():
    s = core.IDEState(select=0x40, lba48=1, hob_hcyl=0x01, hob_lcyl=0x02, hob_sector=0x03, hcyl=0x04,
                      lcyl=0x05, sector=0x06)
    assert core.ide_get_sector(s) == 0x010203040506
    core.ide_set_sector(s, 0x0A0B0C0D0E0F)
    assert (s.hob_hcyl, s.hob_lcyl, s.hob_sector, s.hcyl, s.lcyl, s.sector) == (0xA, 0xB, 0xC, 0xD, 0xE, 0xF)
    s.nsector, s.hob_nsector = 0, 0
    core.ide_cmd_lba48_transform(s, 1)
    assert s.nsector == 65536
    s.nsector, s.hob_nsector = 0x34, 0x12
    core.ide_cmd_lba48_transform(s, 1)
    assert s.nsector == 0x1234


def test_chs_addressing(rig):
    # geometry of a 2048-sector disk: 2 cylinders, 16 heads, 63 sectors
    rig.outb(0x1F6, 0xA0 | 15)  # CHS, head 15
    rig.outb(0x1F2, 1)
    rig.outb(0x1F3, 63)  # sector 63 (1-based)
    rig.outb(0x1F4, 0)
    rig.outb(0x1F5, 0)
    rig.outb(0x1F7, 0x30)
    write_sector_words(rig, sector_pattern(1))
    req = rig.aio.pending[0]
    assert req.sector_num == 15 * 63 + 62
    req.complete(0)
    # the next sector is cylinder 1, head 0, sector 1
    assert (rig.s.hcyl, rig.s.lcyl, rig.s.select & 0x0F, rig.s.sector) == (0, 1, 0, 1)


# -- views ---------------------------------------------------------------------------------------------
def test_view_shows_registers_status_window_and_command(rig):
    rig.setup_lba28(0x77, 1)
    rig.outb(0x1F7, 0x30)
    for w in words_of(sector_pattern(1))[:10]:
        rig.outw(w)
    v = rig.s.view()
    assert v["status_text"] == "DRDY|DSC|DRQ"
    assert v["status_bits"]["DRQ"] and not v["status_bits"]["BSY"]
    assert v["command"] == {"opcode": 0x30, "name": "WIN_WRITE"}
    assert v["end_transfer_func"] == "ide_sector_write"
    assert v["buffer"]["words_done"] == 10 and v["buffer"]["remaining"] == SECTOR - 20
    assert v["buffer"]["window"].startswith("host-to-device")
    assert v["registers"]["sector"] == 0x77 and v["sector_num"] == 0x77 and v["addressing"] == "LBA28"
    b = rig.bus.view()
    assert b["unit"] == 0 and b["drives"][0]["command"]["name"] == "WIN_WRITE"
    assert b["drives"][1]["present"] is False


def test_state_is_plain_data_a_snapshot_can_copy(rig):
    import copy
    rig.setup_lba28(3, 1)
    rig.outb(0x1F7, 0x30)
    snap = copy.deepcopy(rig.d)
    write_sector_words(rig, sector_pattern(1))
    s2 = snap.bus[0].ifs[0]
    assert s2.status == 0x58 and s2.data_ptr == 0 and s2.end_transfer_func is core.ide_sector_write
    assert rig.s.status == 0xD0


def test_unexpected_end_function_is_a_clear_model_error(rig):
    rig.s.status |= DRQ_STAT
    rig.s.end_transfer_func = print
    with pytest.raises(core.IDEModelError, match="end_transfer_func"):
        rig.outw(1)


def test_err_status_suppresses_drq_in_transfer_start(rig):
    rig.s.status = READY_STAT | ERR_STAT
    core.ide_transfer_start(rig.s, rig.s.io_buffer, 512, core.ide_transfer_stop)
    assert not rig.s.status & DRQ_STAT and rig.s.data_end == 512
