"""fs/sync.c (Linux v3.7): fdatasync(2), the host system call behind a guest's flush.

The real call (os.fdatasync); the wrapper makes it visible as the `host` stage, as fs/read_write.py does
for the writes. QEMU 1.6.1's raw-posix calls it from `handle_aiocb_flush` (qemu_fdatasync).
"""
from __future__ import annotations

import os

from ...trace.tracepoint import tracepoint


@tracepoint("host", args=("fd",))
def sys_fdatasync(fd: int) -> int:
    """Push the file's written data (not every piece of metadata) to the disk under it."""
    os.fdatasync(fd)
    return 0
