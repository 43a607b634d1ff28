"""Opening and closing images (bdrv_open over raw-posix's raw_open), and the I/O vector helpers."""
from __future__ import annotations

import errno
import os
import stat

import pytest

from blockbench import SECTOR
from vmio_edu.errors import ImageError
from vmio_edu.qemu.block import (BDRV_ACCT_WRITE, BlockAcctCookie, bdrv_acct_done, bdrv_acct_start, bdrv_close, bdrv_get_geometry, bdrv_getlength, bdrv_is_read_only, bdrv_open,
                                 bdrv_aio_writev)
from vmio_edu.qemu.util.iov import (QEMUIOVector, iov_memset, iovec, qemu_iovec_add, qemu_iovec_init,
                                    qemu_iovec_init_external, qemu_iovec_to_buf)


def test_open_gives_raw_over_file_with_a_real_fd(image):
    bs = bdrv_open(image)
    try:
        assert bs.drv.format_name == "raw" and bs.file.drv.format_name == "file"
        fd = bs.file.opaque.fd
        assert os.fstat(fd).st_ino == os.stat(image).st_ino
        assert bdrv_get_geometry(bs) == 16 and bdrv_getlength(bs) == 16 * SECTOR
        assert not bdrv_is_read_only(bs) and bs.file.growable and not bs.growable
    finally:
        bdrv_close(bs)
    with pytest.raises(OSError):
        os.fstat(fd)  # the fd was really closed
    bdrv_close(bs)  # a second close is harmless
    assert bdrv_getlength(bs) == -errno.ENOMEDIUM


def test_accounting_counts_bytes_and_ops(image):
    bs = bdrv_open(image)
    try:
        cookie = BlockAcctCookie()
        bdrv_acct_start(bs, cookie, 2 * SECTOR, BDRV_ACCT_WRITE)
        assert bs.view()["wr_ops"] == 0
        bdrv_acct_done(bs, cookie)
        assert (bs.view()["wr_bytes"], bs.view()["wr_ops"], bs.view()["rd_ops"]) == (1024, 1, 0)
    finally:
        bdrv_close(bs)


def test_partial_last_sector_is_not_counted(tmp_path):
    path = os.fspath(tmp_path / "odd.img")
    with open(path, "wb") as f:
        f.write(bytes(3 * SECTOR + 100))
    bs = bdrv_open(path)
    try:
        assert bdrv_get_geometry(bs) == 3
    finally:
        bdrv_close(bs)


def test_missing_image_is_an_image_error_naming_it(tmp_path):
    path = os.fspath(tmp_path / "nope.img")
    with pytest.raises(ImageError) as e:
        bdrv_open(path)
    assert path in str(e.value) and "No such file" in str(e.value)


def test_directory_is_an_image_error(tmp_path):
    with pytest.raises(ImageError) as e:
        bdrv_open(os.fspath(tmp_path))
    assert os.fspath(tmp_path) in str(e.value) and "Is a directory" in str(e.value)
    with pytest.raises(ImageError):
        bdrv_open(os.fspath(tmp_path), readonly=True)


def test_fifo_is_an_image_error(tmp_path):
    path = os.fspath(tmp_path / "fifo")
    os.mkfifo(path)
    with pytest.raises(ImageError) as e:
        bdrv_open(path, readonly=True)
    assert path in str(e.value)


def test_read_only_file_opened_read_write_is_an_image_error(image):
    os.chmod(image, stat.S_IRUSR | stat.S_IRGRP)
    before = open(image, "rb").read()
    with pytest.raises(ImageError) as e:
        bdrv_open(image)
    msg = str(e.value)
    assert image in msg and "Permission denied" in msg and "readonly=True" in msg
    for bs in (bdrv_open(image, readonly=True), bdrv_open(image, 0)):  # reading it is fine
        try:
            assert bdrv_is_read_only(bs) and bs.file.read_only and bdrv_get_geometry(bs) == 16
        finally:
            bdrv_close(bs)
    assert open(image, "rb").read() == before


def test_no_fd_is_leaked_by_failed_opens(tmp_path):
    def fds():
        return len(os.listdir("/proc/self/fd"))
    n = fds()
    for bad in (os.fspath(tmp_path), os.fspath(tmp_path / "missing")):
        with pytest.raises(ImageError):
            bdrv_open(bad)
    assert fds() == n


def test_request_whose_qiov_size_disagrees_is_refused_before_any_io(image):
    bs = bdrv_open(image)
    try:
        qiov = QEMUIOVector()
        qemu_iovec_init_external(qiov, iovec(bytearray(SECTOR), SECTOR))
        with pytest.raises(ValueError, match="512 bytes but the request is 2 sectors"):
            bdrv_aio_writev(bs, 0, qiov, 2, lambda o, r: None, None)
    finally:
        bdrv_close(bs)


def test_iovec_points_into_its_buffer_with_an_offset():
    buf = bytearray(range(16))
    v = iovec(buf, 4, iov_offset=8)
    assert bytes(v.mem()) == bytes([8, 9, 10, 11])
    v.mem()[0] = 0xFF
    assert buf[8] == 0xFF
    with pytest.raises(ValueError):
        iovec(buf, 10, iov_offset=8).mem()


def test_iov_memset_and_to_buf_cross_iovec_boundaries():
    a, b = bytearray(b"A" * 4), bytearray(b"B" * 4)
    qiov = QEMUIOVector()
    qemu_iovec_init(qiov, 2)
    qemu_iovec_add(qiov, a, 4)
    qemu_iovec_add(qiov, b, 4)
    assert qiov.niov == 2 and qiov.size == 8
    assert iov_memset(qiov.iov, qiov.niov, 3, 0, 3) == 3
    assert bytes(a) == b"AAA\0" and bytes(b) == b"\0\0BB"
    assert qemu_iovec_to_buf(qiov, 2, 5) == b"A\0\0\0B"
    ext = QEMUIOVector()
    with pytest.raises(ValueError):
        qemu_iovec_init_external(ext, [iovec(a, 4)])
        qemu_iovec_add(ext, b, 4)
