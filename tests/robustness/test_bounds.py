"""LBAs and sector counts at and past the end of the image, and a sector count of 0 (which means 256).

QEMU 1.6.1's IDE does PIO one sector per request (core.c:794, 1155), and each request is checked by the
block layer (block.c bdrv_co_do_writev/readv → bdrv_check_request: -EIO past the end of a non-growable
BDS). So a transfer that starts inside the image and runs past its end moves the sectors that fit, then
the first sector past the end fails with -EIO, which ide_sector_write_cb/ide_sector_read_cb turn into
ABRT (status 0x41, error 0x04, IRQ) via ide_handle_rw_error (werror=enospc / rerror=report report EIO).
Nothing is written past the end: the image keeps its size.
"""
import os

import pytest

from robustness_helpers import assert_image_matches
from vmio_edu import Machine
from vmio_edu.qemu.hw.ide.core import describe_sector

SECTOR = 512


def _drive(m):
    return m.ide.bus[0].ifs[0]


@pytest.mark.parametrize("polling", [False, True])
def test_write_running_past_the_end_writes_what_fits_then_aborts(disk, pwrite_log, polling):
    size = os.path.getsize(disk.path)
    with Machine(image=disk.path, op="write", lba=62, sectors=4, polling=polling) as m:  # 64 sectors
        m.run()
        r, s = m.guest_result(), _drive(m)
        fd = m.bs.file.opaque.fd
        sent = m.pattern
    assert (r["status"], r["error"], r["outcome"]) == (0x41, 0x04, 1)
    assert r["sectors_done"] == 3  # the third block went out; its write failed
    assert r["irqs"] == (0 if polling else 3)
    assert s.last_io_error["name"] == "EIO" and s.last_io_error["sector_num"] == 64
    assert describe_sector(s) == 64 and s.nsector == 2  # the registers stop at the failing sector
    done = pwrite_log.completed(fd)
    assert done == [(62, sent[:SECTOR]), (63, sent[SECTOR:2 * SECTOR])]  # no pwrite was even tried at 64
    assert len(pwrite_log.calls) == 2
    assert os.path.getsize(disk.path) == size
    assert_image_matches(disk, disk.reference, done)


def test_read_running_past_the_end_returns_what_fits_then_aborts(disk):
    with Machine(image=disk.path, op="read", lba=62, sectors=4) as m:
        m.run()
        r = m.guest_result()
    assert (r["status"], r["error"], r["sectors_done"]) == (0x41, 0x04, 2)
    assert r["read_back"][:2 * SECTOR] == disk.ref_sector(62, 2)
    assert_image_matches(disk, disk.reference, {})


@pytest.mark.parametrize("lba", [64, 65, (1 << 28) - 1])
def test_write_starting_past_the_end_changes_nothing(disk, pwrite_log, lba):
    with Machine(image=disk.path, op="write", lba=lba, sectors=1) as m:
        m.run()
        r = m.guest_result()
    assert (r["status"], r["error"]) == (0x41, 0x04)
    assert pwrite_log.calls == []
    assert_image_matches(disk, disk.reference, {})


def test_last_sector_with_count_1_succeeds(disk, pwrite_log):
    with Machine(image=disk.path, op="both", lba=63, sectors=1) as m:
        m.run()
        r = m.guest_result()
        sent = m.pattern[:SECTOR]
    assert (r["status"], r["error"], r["outcome"]) == (0x50, 0, 0)
    assert r["read_back"] == sent
    assert_image_matches(disk, disk.reference, {63: sent})


def test_count_0_near_the_end_is_256_not_0(disk, pwrite_log):
    """Count 0 at LBA 62 of 64 sectors: were 0 read as "no sectors", nothing would move; as 256, two sectors
    are written and the third fails with ABRT."""
    with Machine(image=disk.path, op="write", lba=62, sectors=0) as m:
        m.run()
        r = m.guest_result()
        sent, s = m.pattern, _drive(m)
    assert (r["status"], r["error"], r["sectors_done"]) == (0x41, 0x04, 3)
    assert s.nsector == 254  # 256 - the two sectors that fitted
    assert_image_matches(disk, disk.reference, {62: sent[:2 * SECTOR]})


def test_count_0_read_moves_256_sectors(make_disk):
    d = make_disk(sectors=300)
    with Machine(image=d.path, op="read", lba=20, sectors=0) as m:
        m.run()
        r, s = m.guest_result(), _drive(m)
        data_in = [x for x in m.exits if x.reason == "IO" and x.port == 0x1F0 and x.direction == "in"]
    assert (r["status"], r["error"], r["sectors_done"]) == (0x50, 0, 256)
    assert len(r["read_back"]) == 256 * SECTOR and r["read_back"] == d.ref_sector(20, 256)
    assert [x.count for x in data_in] == [256] * 256  # rep insw: one exit of 256 words per sector
    assert describe_sector(s) == 276 and s.nsector == 0  # the 257th sector (276) was not touched
    assert_image_matches(d, d.reference, {})


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["unicorn", pytest.param("kvm", marks=pytest.mark.kvm)])
def test_count_0_write_moves_256_sectors(make_disk, pwrite_log, engine, request):
    """A full 256-sector PIO write: 65536 OUT exits (about 15 s emulated, 5 s on real KVM)."""
    if engine == "kvm":
        request.getfixturevalue("need_kvm")
    d = make_disk(sectors=300)
    with Machine(image=d.path, op="write", lba=20, sectors=0, polling=True, engine=engine) as m:
        m.run()
        r, s = m.guest_result(), _drive(m)
        sent = m.pattern
        words = sum(1 for x in m.exits if x.reason == "IO" and x.port == 0x1F0 and x.direction == "out")
    assert (r["status"], r["error"], r["sectors_done"]) == (0x50, 0, 256)
    assert len(sent) == 256 * SECTOR and words == 256 * 256
    assert describe_sector(s) == 276 and s.nsector == 0
    assert [c.pos // SECTOR for c in pwrite_log.calls] == list(range(20, 276))
    assert_image_matches(d, d.reference, {20: sent})  # 20..275 written, 276 (the 257th) untouched
