"""util/iov.c (QEMU v10.2.0): QEMUIOVector. The types are 1.6.1's (vmio_edu.qemu.util.iov): an iovec is a
buffer plus an offset; what 10.2 added on this path is `qemu_iovec_init_buf` (one iovec over a buffer,
kept inside the vector: IDE's `qemu_iovec_init_buf(&s->qiov, s->io_buffer, n * 512)`) and a `bytes`
argument to `qemu_iovec_from_buf`.
"""
from __future__ import annotations

from typing import Any

from ...qemu.util.iov import (QEMUIOVector, iov_from_buf, iov_memset, iov_to_buf, iovec,  # noqa: F401
                              qemu_iovec_init_external)


def qemu_iovec_init_buf(qiov: QEMUIOVector, buf: Any, len: int) -> None:  # noqa: A002
    """A vector of one element (`local_iov`) over `len` bytes of `buf`; nalloc -1 (it owns no array)."""
    qiov.iov, qiov.niov, qiov.nalloc, qiov.size = [iovec(buf, len)], 1, -1, len


def qemu_iovec_from_buf(qiov: QEMUIOVector, offset: int, buf: Any, bytes_: int) -> int:
    """Copy `bytes_` bytes of `buf` into the vector at `offset`."""
    return iov_from_buf(qiov.iov, qiov.niov, offset, bytes(buf[:bytes_]))


def qemu_iovec_to_buf(qiov: QEMUIOVector, offset: int, bytes_: int) -> bytes:
    return iov_to_buf(qiov.iov, qiov.niov, offset, bytes_)
