"""block/block-backend.c (QEMU v10.2.0): the BlockBackend, the device's handle on the block graph.

1.6.1's IDE called `bdrv_aio_writev(bs, sector_num, qiov, nb_sectors, cb, opaque)` on the node itself.
10.2's calls the byte-based BlockBackend API:

    blk_aio_pwritev(blk, offset, qiov, flags, cb, opaque)
      → blk_aio_prwv: an AIOCB (BlkAioEmAIOCB), a coroutine on blk_aio_write_entry, entered at once
          (aio_co_enter) on the calling thread (the vCPU: it holds the BQL there, so its "current"
          AioContext is the main loop's)
        blk_aio_write_entry → blk_co_do_pwritev_part (checks, in-flight counters)
          → bdrv_co_pwritev_part(blk->root, ...)   (block/io.c, the format node)
      ← the coroutine yields deep in block/file-posix.c; blk_aio_prwv sets has_returned and returns
    ... when the coroutine finishes (on the main loop, woken by the thread pool), blk_aio_write_entry
    calls blk_aio_complete → the device's cb (ide_sector_write_cb). Had the request finished before
    blk_aio_prwv returned, a one-shot bottom half (blk_aio_complete_bh) would call it instead, so the
    callback never runs inside the submitting call.
"""
from __future__ import annotations

import errno
from dataclasses import dataclass, field
from typing import Any, Callable, Generator

from ...trace.tracepoint import emit, tracepoint
from ..system.cpus import vm_stop
from ..util.async_ import aio_bh_schedule_oneshot, aio_co_enter, qemu_get_current_aio_context
from ..util.iov import QEMUIOVector
from ..util.qemu_coroutine import qemu_coroutine_create
from . import BDRV_O_RDWR, BdrvChild, BlockDriverState, bdrv_close, bdrv_getlength, bdrv_is_inserted, bdrv_open
from .accounting import (BLOCK_ACCT_READ, BLOCK_ACCT_WRITE, BlockAcctCookie, BlockAcctStats,  # noqa: F401
                         block_acct_done, block_acct_failed, block_acct_invalid, block_acct_start)
from .io import BDRV_REQ_FUA, bdrv_co_preadv_part, bdrv_co_pwritev_part, bdrv_dec_in_flight, bdrv_inc_in_flight

NOT_DONE = 0x7FFFFFFF  # block-backend.c: "used while emulated sync operation in progress"

BLOCKDEV_ON_ERROR_REPORT, BLOCKDEV_ON_ERROR_IGNORE = "report", "ignore"
BLOCKDEV_ON_ERROR_ENOSPC, BLOCKDEV_ON_ERROR_STOP = "enospc", "stop"
BLOCK_ERROR_ACTION_REPORT, BLOCK_ERROR_ACTION_IGNORE, BLOCK_ERROR_ACTION_STOP = "report", "ignore", "stop"
RUN_STATE_IO_ERROR = "io-error"


@dataclass(eq=False)
class BlockBackend:
    """The device's side: the root child, the write-cache mode, the error policy, the statistics."""

    name: str
    root: BdrvChild | None = None
    enable_write_cache: bool = True  # cache=writeback, the default
    on_read_error: str = BLOCKDEV_ON_ERROR_REPORT  # blockdev.c defaults
    on_write_error: str = BLOCKDEV_ON_ERROR_ENOSPC
    iostatus: str = "ok"
    allow_write_beyond_eof: bool = False
    quiesce_counter: int = 0
    in_flight: int = 0
    stats: BlockAcctStats = field(default_factory=BlockAcctStats)

    @property
    def filename(self) -> str:
        return self.root.bs.filename if self.root is not None else ""

    def view(self) -> dict:
        return {"name": self.name, "in_flight": self.in_flight, "enable_write_cache": self.enable_write_cache,
                "werror": self.on_write_error, "rerror": self.on_read_error, "iostatus": self.iostatus,
                "stats": self.stats.view(), "root": self.root.bs.view() if self.root is not None else None}


@dataclass(eq=False)
class BlkRwCo:
    blk: BlockBackend
    offset: int
    iobuf: Any
    ret: int
    flags: int


@dataclass(eq=False)
class BlkAioEmAIOCB:
    """The AIOCB blk_aio_prwv returns: `common` (cb, opaque), the request, and has_returned."""

    cb: Callable[[Any, int], None]
    opaque: Any
    rwco: BlkRwCo
    bytes: int = 0
    has_returned: bool = False
    refcnt: int = 1
    co: Any = None  # model-only: its coroutine, for views and cancel

    def view(self) -> dict:
        return {"offset": self.rwco.offset, "bytes": self.bytes, "ret": self.rwco.ret,
                "has_returned": self.has_returned, "cb": getattr(self.cb, "__name__", None)}


# -- opening and closing -----------------------------------------------------------------------------------
def blk_new_open(filename: str, flags: int = BDRV_O_RDWR, *, readonly: bool = False) -> BlockBackend:
    """`-drive file=disk.img,if=ide` (blockdev_init → blk_new_open): a BlockBackend over the opened graph.
    `readonly=True` clears BDRV_O_RDWR (`readonly=on`; then IDE refuses it in 10.2, see ide_init_drive)."""
    import os
    if readonly:
        flags &= ~BDRV_O_RDWR
    bs = bdrv_open(os.fspath(filename), flags)
    return BlockBackend("ide0-hd0", root=BdrvChild("root", bs))


def blk_unref(blk: BlockBackend) -> None:
    """Drop the BlockBackend and close its nodes (safe to repeat)."""
    if blk.root is not None:
        bdrv_close(blk.root.bs)
        blk.root = None


def blk_bs(blk: BlockBackend) -> BlockDriverState | None:
    return blk.root.bs if blk.root is not None else None


def blk_is_available(blk: BlockBackend) -> bool:
    bs = blk_bs(blk)
    return bs is not None and bdrv_is_inserted(bs)


def blk_get_geometry(blk: BlockBackend) -> int:
    """Number of sectors (0 with no medium; QEMU returns it through a pointer)."""
    bs = blk_bs(blk)
    if bs is None or bs.drv is None:
        return 0
    return bs.total_sectors


def blk_enable_write_cache(blk: BlockBackend) -> bool:
    return blk.enable_write_cache


def blk_get_stats(blk: BlockBackend) -> BlockAcctStats:
    return blk.stats


def blk_inc_in_flight(blk: BlockBackend) -> None:
    blk.in_flight += 1


def blk_dec_in_flight(blk: BlockBackend) -> None:
    blk.in_flight -= 1  # (aio_wait_kick: nothing waits in the model)


# -- errors -------------------------------------------------------------------------------------------------
@tracepoint("qemu-block", args=("blk", "is_read", "error"))
def blk_get_error_action(blk: BlockBackend, is_read: bool, error: int) -> str:
    """What rerror/werror says for `error` (a positive errno): enospc stops on ENOSPC, else reports."""
    on_err = blk.on_read_error if is_read else blk.on_write_error
    if on_err == BLOCKDEV_ON_ERROR_ENOSPC:
        return BLOCK_ERROR_ACTION_STOP if error == errno.ENOSPC else BLOCK_ERROR_ACTION_REPORT
    if on_err == BLOCKDEV_ON_ERROR_STOP:
        return BLOCK_ERROR_ACTION_STOP
    if on_err == BLOCKDEV_ON_ERROR_REPORT:
        return BLOCK_ERROR_ACTION_REPORT
    if on_err == BLOCKDEV_ON_ERROR_IGNORE:
        return BLOCK_ERROR_ACTION_IGNORE
    raise ValueError(f"unknown {'rerror' if is_read else 'werror'} policy {on_err!r}")


@tracepoint("qemu-block", args=("blk", "action", "is_read", "error"))
def blk_error_action(blk: BlockBackend, action: str, is_read: bool, error: int) -> None:
    """Send BLOCK_IO_ERROR; for "stop" set the iostatus and stop the VM (RUN_STATE_IO_ERROR)."""
    if action == BLOCK_ERROR_ACTION_STOP:
        if blk.iostatus == "ok":
            blk.iostatus = "nospace" if error == errno.ENOSPC else "failed"
    emit("BLOCK_IO_ERROR", "qemu-block", operation="read" if is_read else "write", action=action, error=error,
         errno=errno.errorcode.get(error, str(error)))
    if action == BLOCK_ERROR_ACTION_STOP:
        vm_stop(RUN_STATE_IO_ERROR, f"{'read' if is_read else 'write'} error "
                                    f"{errno.errorcode.get(error, error)} on {blk.filename}")


# -- the request path ---------------------------------------------------------------------------------------
def blk_check_byte_request(blk: BlockBackend, offset: int, bytes_: int) -> int:
    """-EIO for a negative or past-the-end request, -ENOMEDIUM without a medium (static, inlined)."""
    if bytes_ < 0:
        return -errno.EIO
    if not blk_is_available(blk):
        return -errno.ENOMEDIUM
    if offset < 0:
        return -errno.EIO
    if not blk.allow_write_beyond_eof:
        length = bdrv_getlength(blk_bs(blk))
        if length < 0:
            return length
        if offset > length or length - offset < bytes_:
            return -errno.EIO
    return 0


@tracepoint("qemu-block", args=("blk", "offset", "bytes", "qiov", "qiov_offset", "flags"))
def blk_co_do_preadv_part(blk: BlockBackend, offset: int, bytes: int, qiov: QEMUIOVector,  # noqa: A002
                          qiov_offset: int, flags: int) -> Generator[Any, Any, int]:
    """Check the request against the device's size, count it in flight on the node, and read through
    the root child. (Draining and throttling are off for this disk.)"""
    bs = blk_bs(blk)
    ret = blk_check_byte_request(blk, offset, bytes)
    if ret < 0:
        return ret
    bdrv_inc_in_flight(bs)
    ret = yield from bdrv_co_preadv_part(blk.root, offset, bytes, qiov, qiov_offset, flags)
    bdrv_dec_in_flight(bs)
    return ret


@tracepoint("qemu-block", args=("blk", "offset", "bytes", "qiov", "qiov_offset", "flags"))
def blk_co_do_pwritev_part(blk: BlockBackend, offset: int, bytes: int, qiov: QEMUIOVector,  # noqa: A002
                           qiov_offset: int, flags: int) -> Generator[Any, Any, int]:
    """Check, count in flight, add FUA if the write cache is off, and write through the root child."""
    bs = blk_bs(blk)
    ret = blk_check_byte_request(blk, offset, bytes)
    if ret < 0:
        return ret
    bdrv_inc_in_flight(bs)
    if not blk.enable_write_cache:
        flags |= BDRV_REQ_FUA
    ret = yield from bdrv_co_pwritev_part(blk.root, offset, bytes, qiov, qiov_offset, flags)
    bdrv_dec_in_flight(bs)
    return ret


@tracepoint("qemu-block", args=("acb",))
def blk_aio_complete(acb: BlkAioEmAIOCB) -> None:
    """Call the device's callback, but only once blk_aio_prwv has returned (else its BH will)."""
    if acb.has_returned:
        acb.cb(acb.opaque, acb.rwco.ret)
        blk_dec_in_flight(acb.rwco.blk)
        acb.refcnt -= 1  # qemu_aio_unref


@tracepoint("qemu-block", args=("opaque=acb",))
def blk_aio_complete_bh(acb: BlkAioEmAIOCB) -> None:
    blk_aio_complete(acb)


@tracepoint("qemu-block", args=("opaque=acb",))
def blk_aio_read_entry(acb: BlkAioEmAIOCB) -> Generator[Any, Any, None]:
    """The coroutine of a read: do it, then complete."""
    rwco = acb.rwco
    qiov = rwco.iobuf
    if qiov.size != acb.bytes:
        raise AssertionError("qiov->size == acb->bytes")
    rwco.ret = yield from blk_co_do_preadv_part(rwco.blk, rwco.offset, acb.bytes, qiov, 0, rwco.flags)
    blk_aio_complete(acb)


@tracepoint("qemu-block", args=("opaque=acb",))
def blk_aio_write_entry(acb: BlkAioEmAIOCB) -> Generator[Any, Any, None]:
    """The coroutine of a write: do it, then complete (1.6.1's bdrv_co_do_rw)."""
    rwco = acb.rwco
    qiov = rwco.iobuf
    if qiov is not None and qiov.size != acb.bytes:
        raise AssertionError("!qiov || qiov->size == acb->bytes")
    rwco.ret = yield from blk_co_do_pwritev_part(rwco.blk, rwco.offset, acb.bytes, qiov, 0, rwco.flags)
    blk_aio_complete(acb)


@tracepoint("qemu-block", args=("blk", "offset", "bytes", "iobuf", "co_entry", "flags", "cb", "opaque"))
def blk_aio_prwv(blk: BlockBackend, offset: int, bytes: int, iobuf: Any, co_entry: Callable,  # noqa: A002
                 flags: int, cb: Callable, opaque: Any) -> BlkAioEmAIOCB:
    """Make the AIOCB, create the coroutine and enter it now; return when it first yields (or ends)."""
    blk_inc_in_flight(blk)
    acb = BlkAioEmAIOCB(cb, opaque, BlkRwCo(blk, offset, iobuf, NOT_DONE, flags), bytes)
    acb.has_returned = False
    co = qemu_coroutine_create(co_entry, acb)
    acb.co = co
    aio_co_enter(qemu_get_current_aio_context(), co)
    acb.has_returned = True
    if acb.rwco.ret != NOT_DONE:
        aio_bh_schedule_oneshot(qemu_get_current_aio_context(), blk_aio_complete_bh, acb)
    return acb


def _check_qiov(qiov: QEMUIOVector) -> None:
    if qiov.size != sum(v.iov_len for v in qiov.iov[:qiov.niov]):
        raise ValueError(f"QEMUIOVector says {qiov.size} bytes but its iovecs hold "
                         f"{sum(v.iov_len for v in qiov.iov[:qiov.niov])}")


@tracepoint("qemu-block", args=("blk", "offset", "qiov", "flags", "cb", "opaque"))
def blk_aio_preadv(blk: BlockBackend, offset: int, qiov: QEMUIOVector, flags: int, cb: Callable,
                   opaque: Any) -> BlkAioEmAIOCB:
    """Read qiov->size bytes at byte `offset`; cb(opaque, ret) runs later (ret 0 or -errno)."""
    _check_qiov(qiov)
    return blk_aio_prwv(blk, offset, qiov.size, qiov, blk_aio_read_entry, flags, cb, opaque)


@tracepoint("qemu-block", args=("blk", "offset", "qiov", "flags", "cb", "opaque"))
def blk_aio_pwritev(blk: BlockBackend, offset: int, qiov: QEMUIOVector, flags: int, cb: Callable,
                    opaque: Any) -> BlkAioEmAIOCB:
    """Write qiov to byte `offset`; cb(opaque, ret) runs later (ret 0 or -errno)."""
    _check_qiov(qiov)
    return blk_aio_prwv(blk, offset, qiov.size, qiov, blk_aio_write_entry, flags, cb, opaque)


@tracepoint("qemu-block", args=("acb",))
def blk_aio_cancel(acb: BlkAioEmAIOCB) -> None:
    """bdrv_aio_cancel: a BlockBackend request cannot be stopped; run the main AioContext on this thread
    until it has completed (its callback has run)."""
    from ..util.aio_posix import aio_poll
    from ..util.main_loop import qemu_get_aio_context
    while acb.refcnt > 0:
        aio_poll(qemu_get_aio_context(), True)
