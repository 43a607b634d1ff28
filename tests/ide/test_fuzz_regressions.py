"""Plain tests for what the IDE fuzz (tests/robustness/test_fuzz_ide.py) ran into.

The fuzz found no crash, no inconsistent status and no stray write in the model. What it did find are
QEMU 1.6.1 behaviours that look like bugs but are the real thing: `ide_cmd_write` (SRST) and an aborted
DEVICE RESET cancel nothing, so a request in flight outlives the command that started it and completes
later on a drive that already looks idle. These tests pin that behaviour (it is why the fuzz's shadow
has an "overlap" mode) on the real block layer and threads.
"""
from __future__ import annotations

import pytest

from vmio_edu.qemu.ioport import cpu_inb, cpu_inw, cpu_outb, cpu_outw

from idebench import SECTOR, Board, disk_image, sector_pattern, words_of


@pytest.fixture
def board(tmp_path):
    path = disk_image(tmp_path)
    b = Board(path)
    b.path = path
    yield b
    b.close()


def test_srst_pulse_does_not_cancel_a_sector_write_in_flight(board):
    """SRST 0→1→0 while the pool still has the write: status goes 0xD0 → 0x90 → 0x50 with the signature
    in the task file, yet the write lands on its sector, and its late completion still runs
    ide_sector_write_cb (count 1 from the signature → 0, window closed, IRQ, LBA register moved on)."""
    data = sector_pattern(1, seed=3)
    before = open(board.path, "rb").read()
    seen = {}

    def guest(b):
        b.command(0x30, 7, 1)
        for w in words_of(data):
            cpu_outw(0x1F0, w)
        seen["in flight"] = cpu_inb(0x3F6)
        cpu_outb(0x3F6, 0x04)
        seen["srst high"] = cpu_inb(0x3F6)
        cpu_outb(0x3F6, 0x00)
        seen["srst low"] = cpu_inb(0x3F6)
        seen["signature"] = [cpu_inb(p) for p in (0x1F2, 0x1F3, 0x1F4, 0x1F5)]
        seen["raises before"] = board.line.raises
        b.kvm_run(10)  # the pool writes, the main loop completes
        seen["after"] = cpu_inb(0x3F6)
        seen["data port"] = cpu_inw(0x1F0)

    board.run(guest)
    after = open(board.path, "rb").read()
    assert seen["in flight"] == 0xD0
    assert seen["srst high"] == 0x90 and seen["srst low"] == 0x50
    assert seen["signature"] == [1, 1, 0, 0]
    assert seen["raises before"] == 0
    assert after[7 * SECTOR:8 * SECTOR] == data
    assert after[:7 * SECTOR] == before[:7 * SECTOR] and after[8 * SECTOR:] == before[8 * SECTOR:]
    assert seen["after"] == 0x50 and seen["data port"] == 0  # no window: the count ran out
    assert board.line.raises == 1  # the late ide_sector_write_cb raised IRQ 14
    assert board.drive.nsector == 0 and board.drive.sector == 2  # CHS sector 1 → 2 after the reset


def test_device_reset_aborts_but_the_read_in_flight_still_completes_without_a_window(board):
    """DEVICE RESET (0x08) is the one command taken while BSY; a hard disk aborts it (0x41, ABRT). The
    read already submitted completes later: BSY was already gone and ERR keeps DRQ off, so the guest
    gets no data window, only the IRQ; status and error stay consistent."""
    seen = {}

    def guest(b):
        b.command(0x20, 2, 1)
        seen["in flight"] = cpu_inb(0x3F6)
        cpu_outb(0x1F7, 0x08)
        seen["aborted"] = (cpu_inb(0x3F6), cpu_inb(0x1F1))
        b.kvm_run(10)
        seen["after"] = (cpu_inb(0x3F6), cpu_inb(0x1F1))
        seen["data port"] = cpu_inw(0x1F0)

    board.run(guest)
    assert seen["in flight"] == 0xD0
    assert seen["aborted"] == (0x41, 0x04)
    assert seen["after"] == (0x41, 0x04)
    assert seen["data port"] == 0
    assert board.line.raises == 2  # the abort, then the late ide_sector_read_cb
    assert board.drive.pio_aiocb is None


def test_a_read_in_flight_across_srst_opens_its_window_after_the_reset(board):
    """The fuzz's first finding, minimised: READ of 2 sectors, the first read out, SRST pulsed while the
    second is in flight. The late completion opens a window (0x58 after SRST low) holding sector 3 of
    the image, and counts it off the signature's count of 1, so the command then ends (0x50)."""
    image = open(board.path, "rb").read()
    seen = {}

    def guest(b):
        b.command(0x20, 2, 2)
        b.kvm_run(10)
        first = b"".join(cpu_inw(0x1F0).to_bytes(2, "little") for _ in range(256))
        seen["first"] = first
        seen["in flight"] = cpu_inb(0x3F6)
        cpu_outb(0x3F6, 0x04)
        cpu_outb(0x3F6, 0x00)
        b.kvm_run(10)
        seen["late"] = cpu_inb(0x3F6)
        seen["second"] = b"".join(cpu_inw(0x1F0).to_bytes(2, "little") for _ in range(256))
        seen["end"] = cpu_inb(0x3F6)

    board.run(guest)
    assert seen["first"] == image[2 * SECTOR:3 * SECTOR]
    assert seen["in flight"] == 0xD0
    assert seen["late"] == 0x58
    assert seen["second"] == image[3 * SECTOR:4 * SECTOR]
    assert seen["end"] == 0x50


def test_after_srst_a_late_write_completion_opens_a_window_where_the_guest_points_the_registers(board):
    """The corner that forced the fuzz to trust the block layer's requests during an overlap: after SRST
    low the task file is writable again while the old write is still out. The guest sets count 3 and
    LBA 40 but issues no command; the late ide_sector_write_cb counts one sector off (3 → 2), opens a
    new write window (0x58) and moves the LBA on to 41. The next 256 words go to sector 41, which no
    WRITE command ever addressed. QEMU 1.6.1 does the same (nothing is cancelled or re-checked)."""
    first, second = sector_pattern(1, seed=5), sector_pattern(1, seed=6)
    before = open(board.path, "rb").read()
    seen = {}

    def guest(b):
        b.command(0x30, 7, 1)
        for w in words_of(first):
            cpu_outw(0x1F0, w)
        cpu_outb(0x3F6, 0x04)
        cpu_outb(0x3F6, 0x00)
        for port, val in ((0x1F6, 0xE0), (0x1F2, 3), (0x1F3, 40), (0x1F4, 0), (0x1F5, 0)):
            cpu_outb(port, val)  # accepted: the drive shows 0x50
        b.kvm_run(10)
        seen["late"] = cpu_inb(0x3F6)
        for w in words_of(second):
            cpu_outw(0x1F0, w)
        b.kvm_run(10)
        seen["end"] = cpu_inb(0x3F6)

    board.run(guest)
    after = open(board.path, "rb").read()
    assert seen["late"] == 0x58
    assert after[7 * SECTOR:8 * SECTOR] == first
    assert after[41 * SECTOR:42 * SECTOR] == second
    changed = {i for i in range(64) if after[i * SECTOR:(i + 1) * SECTOR] != before[i * SECTOR:(i + 1) * SECTOR]}
    assert changed == {7, 41}
    assert seen["end"] == 0x58 and board.drive.nsector == 1  # and a third window waits for sector 42
