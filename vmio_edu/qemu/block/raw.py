"""block/raw.c (QEMU v1.6.1): the "raw" image format, a pass-through.

A raw image has no header and no mapping: guest sector N is file sector N. So every request goes to the
BDS underneath (`bs->file`, the "file" protocol of raw-posix.c) unchanged, at the same sector (raw.c:54).
"""
from __future__ import annotations

from typing import Any, Generator

from ...trace.tracepoint import tracepoint
from ..util.iov import QEMUIOVector
from . import BlockDriver, BlockDriverState, bdrv_co_readv, bdrv_co_writev, bdrv_getlength


@tracepoint("qemu-block", args=("bs", "sector_num", "nb_sectors", "qiov"))
def raw_co_readv(bs: BlockDriverState, sector_num: int, nb_sectors: int,
                 qiov: QEMUIOVector) -> Generator[Any, Any, int]:
    """Read the same sectors from bs->file."""
    return (yield from bdrv_co_readv(bs.file, sector_num, nb_sectors, qiov))


@tracepoint("qemu-block", args=("bs", "sector_num", "nb_sectors", "qiov"))
def raw_co_writev(bs: BlockDriverState, sector_num: int, nb_sectors: int,
                  qiov: QEMUIOVector) -> Generator[Any, Any, int]:
    """Write the same sectors to bs->file."""
    return (yield from bdrv_co_writev(bs.file, sector_num, nb_sectors, qiov))


def raw_open(bs: BlockDriverState, flags: int) -> int:
    """Nothing to parse in a raw image: bs->file is already open."""
    return 0


def raw_getlength(bs: BlockDriverState) -> int:
    return bdrv_getlength(bs.file)


bdrv_raw = BlockDriver(
    format_name="raw",
    bdrv_open=raw_open,
    bdrv_getlength=raw_getlength,
    bdrv_co_readv=raw_co_readv,
    bdrv_co_writev=raw_co_writev,
)
