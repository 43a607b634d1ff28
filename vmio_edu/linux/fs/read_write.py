"""fs/read_write.c (Linux v3.7): the host system calls the thread-pool worker makes.

These are the real syscalls (os.pwrite/os.preadv); the wrappers only make them visible as the `host`
stage of a trace. QEMU 1.6.1's raw-posix calls pwrite()/preadv() from `handle_aiocb_rw_linear`.
"""
from __future__ import annotations

import os

from ...trace.tracepoint import tracepoint


@tracepoint("host", args=("fd", "buf", "count", "pos"))
def sys_pwrite64(fd: int, buf: bytes | memoryview, count: int, pos: int) -> int:
    """Write `count` bytes at byte offset `pos` of the file: the bytes reach the disk image here."""
    return os.pwrite(fd, buf[:count], pos)


@tracepoint("host", args=("fd", "buf", "count", "pos"))
def sys_pread64(fd: int, buf: memoryview, count: int, pos: int) -> int:
    """Read up to `count` bytes at `pos` into `buf` (the real call is preadv, so the bytes land in place)."""
    return os.preadv(fd, [buf[:count]], pos)


@tracepoint("host", args=("fd", "pos"), name="sys_pwritev")
def sys_pwritev(fd: int, bufs: list, pos: int) -> int:
    return os.pwritev(fd, bufs, pos)


@tracepoint("host", args=("fd", "pos"), name="sys_preadv")
def sys_preadv(fd: int, bufs: list, pos: int) -> int:
    return os.preadv(fd, bufs, pos)
