"""The image under a running machine: read-only, deleted, truncated, a full host disk, a failing fd.

Each test changes the file at an exact point of the run (a hook just before the n-th real pwrite), then
checks what the guest saw, what the toolkit says, that the machine closes, and that the image holds
exactly what the completed pwrites put there.
"""
import errno
import os

import pytest

from robustness_helpers import assert_closed_cleanly, assert_image_matches, open_fds
from vmio_edu import Machine
from vmio_edu.errors import ImageError
from vmio_edu.qemu.hw.ide.core import bdrv_set_on_error, describe_sector

SECTOR = 512


def _drive(m):
    return m.ide.bus[0].ifs[0]


def _swap_fd(fd, path, flags):
    """Point `fd` at another open file (test-only: what the kernel would do to a full or broken disk)."""
    new = os.open(path, flags)
    try:
        os.dup2(new, fd)
    finally:
        os.close(new)


# -- read-only --------------------------------------------------------------------------------------------
def test_read_only_image_fails_the_first_block_and_still_reads(disk, pwrite_log):
    """readonly=True (like -drive readonly=on): bdrv_co_do_writev refuses with -EACCES before any pwrite;
    werror=enospc reports it: ABRT after the first block. Reads work."""
    with Machine(image=disk.path, op="write", lba=4, sectors=3, readonly=True) as m:
        m.run()
        r, s = m.guest_result(), _drive(m)
    assert (r["status"], r["error"], r["sectors_done"]) == (0x41, 0x04, 1)
    assert s.last_io_error["name"] == "EACCES" and s.last_io_error["sector_num"] == 4
    assert pwrite_log.calls == []
    with Machine(image=disk.path, op="read", lba=4, sectors=3, readonly=True) as m:
        m.run()
        r = m.guest_result()
    assert (r["status"], r["read_back"]) == (0x50, disk.ref_sector(4, 3))
    assert_image_matches(disk, disk.reference, {})


# -- deleted ----------------------------------------------------------------------------------------------
def test_image_deleted_mid_run_keeps_working_on_the_open_file(disk, pwrite_log):
    """POSIX: unlinking the image removes its name, not the open file. QEMU's fd keeps working, the guest
    sees nothing, and the writes land in the now nameless file, which is freed when the machine closes.
    The toolkit says so when asked for the image's bytes by name."""
    fds = open_fds()
    m = Machine(image=disk.path, op="both", lba=6, sectors=3)
    fd = m.bs.file.opaque.fd
    pwrite_log.before[1] = lambda fd, pos: os.unlink(disk.path)  # after the first sector is written
    m.run()
    r = m.guest_result()
    assert (r["status"], r["error"], r["outcome"]) == (0x50, 0, 0)
    assert r["read_back"] == m.pattern[:3 * SECTOR]
    assert not disk.path.exists()
    link = os.readlink(f"/proc/self/fd/{fd}")
    assert link.endswith("(deleted)")
    with open(f"/proc/self/fd/{fd}", "rb") as f:  # the unlinked file itself
        assert_image_matches(f.read(), disk.reference, pwrite_log.completed(fd))
    assert pwrite_log.completed(fd) == [(6 + i, m.pattern[i * SECTOR:(i + 1) * SECTOR]) for i in range(3)]
    for call in (m.image_changes, lambda: m.image_bytes(6)):
        with pytest.raises(ImageError, match="no longer there|removed"):
            call()
    m.close()
    assert_closed_cleanly(m, fds)


# -- truncated --------------------------------------------------------------------------------------------
def test_image_truncated_mid_run(disk, pwrite_log):
    """QEMU 1.6.1 keeps the size it read at open (bs->total_sectors; block.c bdrv_getlength of a
    non-growable BDS), so a file shrunk under it is not noticed: a write past the new end grows the file
    again (the gap reads as zeros), a read past it is short and raw-posix zero-fills it (the file BDS is
    growable). Sector 10 was written before the cut and is lost; the guest reads it back as zeros."""
    m = Machine(image=disk.path, op="both", lba=10, sectors=4)
    fd = m.bs.file.opaque.fd
    pwrite_log.before[1] = lambda fd, pos: os.truncate(disk.path, 8 * SECTOR)
    m.run()
    r = m.guest_result()
    assert (r["status"], r["error"], r["outcome"]) == (0x50, 0, 0)  # the guest is never told
    assert r["read_back"][:SECTOR] == bytes(SECTOR)  # lost with the cut
    assert r["read_back"][SECTOR:] == m.pattern[SECTOR:4 * SECTOR]
    assert m.bs.total_sectors == 64  # still the size seen at open
    m.close()
    assert os.path.getsize(disk.path) == 14 * SECTOR
    completed_after_cut = [w for w in pwrite_log.completed(fd) if w[0] != 10]
    assert [s for s, _ in completed_after_cut] == [11, 12, 13]
    assert_image_matches(disk, disk.reference[:8 * SECTOR], completed_after_cut)


def test_read_past_a_truncated_end_gives_zeros(disk):
    m = Machine(image=disk.path, op="read", lba=30, sectors=2)
    os.truncate(disk.path, 8 * SECTOR)  # after open: the drive still says 64 sectors
    m.run()
    r = m.guest_result()
    assert (r["status"], r["error"]) == (0x50, 0)
    assert r["read_back"] == bytes(2 * SECTOR)
    m.close()
    assert_image_matches(disk, disk.reference[:8 * SECTOR], {})


# -- a full host disk: ENOSPC from the real pwrite --------------------------------------------------------
def test_disk_fills_mid_write_stops_the_vm_after_the_completed_sectors(disk, pwrite_log):
    """werror=enospc (QEMU 1.6.1's default, blockdev.c:521): the 3rd sector's pwrite gets ENOSPC, the VM
    stops (vm_stop(RUN_STATE_IO_ERROR)), the guest is told nothing, and run() raises ImageError saying so.
    Sectors 8 and 9 are on disk; nothing else changed."""
    fds = open_fds()
    m = Machine(image=disk.path, op="write", lba=8, sectors=4)
    fd = m.bs.file.opaque.fd
    pwrite_log.before[2] = lambda fd, pos: _swap_fd(fd, "/dev/full", os.O_WRONLY)
    with pytest.raises(ImageError, match="werror=enospc") as e:
        m.run()
    assert "ENOSPC" in str(e.value) and "free space" in str(e.value)
    s = _drive(m)
    assert m.state.extra["runstate"] == "io-error" and m.bs.iostatus == "nospace"
    assert s.status == 0x50 and s.error == 0  # no ERR: the guest is not told
    assert describe_sector(s) == 10 and s.nsector == 2  # nothing advanced: cont would retry sector 10
    assert s.last_io_error["action"] == "stop" and s.last_io_error["sector_num"] == 10
    assert not m.guest_result()["done"]
    exits = len(m.exits)
    with pytest.raises(ImageError, match="werror=enospc"):  # still stopped: QEMU waits for 'cont'
        m.run()
    assert len(m.exits) == exits
    [failed] = pwrite_log.failed()
    assert failed.result.errno == errno.ENOSPC and failed.pos == 10 * SECTOR
    done = pwrite_log.completed(fd)
    assert done == [(8, m.pattern[:SECTOR]), (9, m.pattern[SECTOR:2 * SECTOR])]
    m.close()
    assert_closed_cleanly(m, fds)
    assert_image_matches(disk, disk.reference, done)


def test_disk_fills_with_werror_report_gives_the_guest_abrt(disk, pwrite_log):
    """-drive werror=report: the same ENOSPC reaches the guest as ABRT (0x41/0x04) with an IRQ."""
    m = Machine(image=disk.path, op="write", lba=8, sectors=4)
    bdrv_set_on_error(m.bs, "report", "report")
    fd = m.bs.file.opaque.fd
    pwrite_log.before[2] = lambda fd, pos: _swap_fd(fd, "/dev/full", os.O_WRONLY)
    m.run()
    r, s = m.guest_result(), _drive(m)
    assert (r["status"], r["error"], r["sectors_done"], r["irqs"]) == (0x41, 0x04, 3, 3)
    assert "ENOSPC" in s.abort_reason and "sector 10" in s.abort_reason
    done = pwrite_log.completed(fd)
    m.close()
    assert [w[0] for w in done] == [8, 9]
    assert_image_matches(disk, disk.reference, done)


def test_other_write_errors_reach_the_guest_as_abrt(disk, pwrite_log):
    """A pwrite that fails with anything but ENOSPC (here EBADF: the fd turned read-only, as after a
    read-only remount) is reported to the guest even under werror=enospc."""
    m = Machine(image=disk.path, op="write", lba=8, sectors=4)
    fd = m.bs.file.opaque.fd
    pwrite_log.before[1] = lambda fd, pos: _swap_fd(fd, disk.path, os.O_RDONLY)
    m.run()
    r, s = m.guest_result(), _drive(m)
    assert (r["status"], r["error"], r["sectors_done"]) == (0x41, 0x04, 2)
    assert s.last_io_error["name"] == "EBADF" and s.last_io_error["action"] == "report"
    assert "runstate" not in m.state.extra
    done = pwrite_log.completed(fd)
    m.close()
    assert [w[0] for w in done] == [8]
    assert_image_matches(disk, disk.reference, done)
