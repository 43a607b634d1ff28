"""block/raw-format.c (QEMU v10.2.0): the "raw" image format (1.6.1's block/raw.c), a pass-through.

Guest byte N is file byte N (unless the `offset`/`size` options cut a window: not used here), so a
request goes to `bs->file` unchanged: `raw_co_pwritev` → `bdrv_co_pwritev(bs->file, offset, bytes, qiov,
flags)`, and the whole block/io.c path runs a second time, for the file node.

New since 1.6.1: a raw image whose format was *probed* (`-hda disk.img`, no format=raw) guards sector 0.
A write there is checked against the format probes first; a guest writing, say, a qcow2 header into its
first sector gets -EPERM, so that the next QEMU start cannot mistake the image for qcow2.
"""
from __future__ import annotations

import dataclasses
import errno
from typing import Any, Generator

from ...trace.sources import lookup
from ...trace.tracepoint import tracepoint
from ..util.iov import QEMUIOVector, qemu_iovec_to_buf
from . import BDRV_REQ_FUA, BLOCK_PROBE_BUF_SIZE, BlockDriver, BlockDriverState, bdrv_getlength, bdrv_probe_all
from .io import bdrv_co_preadv, bdrv_co_pwritev


def _own_source(fn):
    """QEMU has two static raw_co_pwritev (and raw_co_preadv): here and in file-posix.c. The source map
    keeps this file's under "name@block/raw-format.c"; the call lines of both are under the name."""
    tp = fn.tracepoint
    ref = lookup("qemu", f"{tp.name}@block/raw-format.c", tp.stack)
    if ref is not None:
        tp.source = dataclasses.replace(ref, function=tp.name)
    return fn


def raw_adjust_offset(bs: BlockDriverState, offset: int, bytes_: int, is_write: bool) -> tuple[int, int]:
    """(ret, offset): with no offset/size options, nothing to adjust (static inline)."""
    return 0, offset


@_own_source
@tracepoint("qemu-block", args=("bs", "offset", "bytes", "qiov", "flags"))
def raw_co_preadv(bs: BlockDriverState, offset: int, bytes: int, qiov: QEMUIOVector,  # noqa: A002
                  flags: int) -> Generator[Any, Any, int]:
    """Read the same bytes from bs->file."""
    ret, offset = raw_adjust_offset(bs, offset, bytes, False)
    if ret:
        return ret
    return (yield from bdrv_co_preadv(bs.file, offset, bytes, qiov, flags))


@_own_source
@tracepoint("qemu-block", args=("bs", "offset", "bytes", "qiov", "flags"))
def raw_co_pwritev(bs: BlockDriverState, offset: int, bytes: int, qiov: QEMUIOVector,  # noqa: A002
                   flags: int) -> Generator[Any, Any, int]:
    """Write the same bytes to bs->file; on a probed image, refuse a first sector another format would
    claim (-EPERM)."""
    if bs.probed and offset < BLOCK_PROBE_BUF_SIZE and bytes:
        if offset != 0 or bytes < BLOCK_PROBE_BUF_SIZE:
            raise AssertionError("offset == 0 && bytes >= BLOCK_PROBE_BUF_SIZE")
        buf = qemu_iovec_to_buf(qiov, 0, 512)
        if len(buf) != 512:
            return -errno.EINVAL
        if bdrv_probe_all(buf, 512, None) != bs.drv.format_name:
            return -errno.EPERM
        # (QEMU then writes its checked copy of the sector, in case the guest changes its buffer meanwhile;
        # the model's guest cannot run during the write, so the bytes are the same)
    ret, offset = raw_adjust_offset(bs, offset, bytes, True)
    if ret:
        return ret
    return (yield from bdrv_co_pwritev(bs.file, offset, bytes, qiov, flags))


def raw_open(bs: BlockDriverState, flags: int) -> int:
    """The file child is open already; take its FUA support (raw_open: supported_write_flags)."""
    bs.supported_write_flags = BDRV_REQ_FUA & bs.file.bs.supported_write_flags
    bs.bl = bs.file.bs.bl  # raw_refresh_limits: the child's limits
    return 0


def raw_co_getlength(bs: BlockDriverState) -> int:
    return bdrv_getlength(bs.file.bs)


def raw_probe(buf: bytes, buf_size: int, filename: str | None) -> int:
    """The smallest positive score: raw is used only if no other driver claims the image."""
    return 1


bdrv_raw = BlockDriver(format_name="raw", bdrv_probe=raw_probe, bdrv_open=raw_open,
                       bdrv_co_getlength=raw_co_getlength, bdrv_co_preadv=raw_co_preadv,
                       bdrv_co_pwritev=raw_co_pwritev, is_filter=True)
