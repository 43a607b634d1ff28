"""fs/read_write.c (Linux v6.12): the host system calls QEMU 10.2's thread-pool worker makes.

The calls are real (os.pwrite / os.preadv on the disk image); the wrappers make them visible as the `host`
stage of a trace, with 6.12's lines. Since 4.x the syscall bodies live in `ksys_pwrite64` /
`ksys_pread64` (fs/read_write.c:785 / 751), which `SYSCALL_DEFINE4(pwrite64)` / `(pread64)` (805 / 771)
call, so a 6.12 trace shows two host stages where 3.7's (`vmio_edu.linux.fs.read_write`) showed one.
QEMU 10.2's `handle_aiocb_rw_linear` calls pwrite()/pread(), `handle_aiocb_rw_vector` pwritev()/preadv().
"""
from __future__ import annotations

import os

from ...trace.tracepoint import tracepoint


@tracepoint("host", args=("fd", "buf", "count", "pos"))
def ksys_pwrite64(fd: int, buf: bytes | memoryview, count: int, pos: int) -> int:
    """Write `count` bytes at byte offset `pos` of the file (vfs_write): the bytes reach the disk image."""
    return os.pwrite(fd, buf[:count], pos)


@tracepoint("host", args=("fd", "buf", "count", "pos"))
def sys_pwrite64(fd: int, buf: bytes | memoryview, count: int, pos: int) -> int:
    """pwrite(2): SYSCALL_DEFINE4(pwrite64) hands its arguments to `ksys_pwrite64`."""
    return ksys_pwrite64(fd, buf, count, pos)


@tracepoint("host", args=("fd", "buf", "count", "pos"))
def ksys_pread64(fd: int, buf: memoryview, count: int, pos: int) -> int:
    """Read up to `count` bytes at `pos` into `buf` (vfs_read; the bytes land in place)."""
    return os.preadv(fd, [buf[:count]], pos)


@tracepoint("host", args=("fd", "buf", "count", "pos"))
def sys_pread64(fd: int, buf: memoryview, count: int, pos: int) -> int:
    """pread(2): SYSCALL_DEFINE4(pread64) hands its arguments to `ksys_pread64`."""
    return ksys_pread64(fd, buf, count, pos)


@tracepoint("host", args=("fd", "vec=bufs", "pos_l=pos"))
def sys_pwritev(fd: int, bufs: list, pos: int) -> int:
    """pwritev(2): SYSCALL_DEFINE5(pwritev) → do_pwritev → vfs_writev."""
    return os.pwritev(fd, bufs, pos)


@tracepoint("host", args=("fd", "vec=bufs", "pos_l=pos"))
def sys_preadv(fd: int, bufs: list, pos: int) -> int:
    """preadv(2): SYSCALL_DEFINE5(preadv) → do_preadv → vfs_readv."""
    return os.preadv(fd, bufs, pos)
