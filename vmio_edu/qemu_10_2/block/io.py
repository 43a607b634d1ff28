"""block/io.c (QEMU v10.2.0): the generic request path of every node, in coroutines.

Per node, a write goes

    bdrv_co_pwritev_part(child, ...)   checks, alignment padding, tracked request, in-flight count
      → bdrv_aligned_pwritev           write_req_prepare (read-only → -EPERM), zero detection,
                                       fragmentation by max_transfer, write_req_finish (wr_highest_offset)
        → bdrv_driver_pwritev          FUA handling, then drv->bdrv_co_pwritev(bs, ...)

and the raw *format* node's driver (raw_co_pwritev, block/raw-format.c) calls `bdrv_co_pwritev(bs->file,
...)`, so the same three stages run again for the *file* node, whose driver is file-posix.c. 1.6.1 had
one generic stage per node (bdrv_co_do_writev) and emulated coroutines over an AIO-only driver
(bdrv_co_writev_em → bdrv_co_io_em); that emulation is gone.

`static inline` helpers (tracked_request_begin/end, bdrv_co_write_req_prepare/finish, bdrv_pad_request)
are plain functions here: gdb shows no frame for them either in an optimised build.
"""
from __future__ import annotations

import errno
from typing import Any, Generator

from ...trace.tracepoint import tracepoint
from ..util.iov import QEMUIOVector, iov_memset
from ..util.qemu_coroutine import qemu_coroutine_self
from . import (BDRV_O_NO_FLUSH, BDRV_REQ_FUA, BDRV_REQ_ZERO_WRITE, BDRV_SECTOR_BITS, BDRV_SECTOR_SIZE,  # noqa: F401
               BDRV_TRACKED_READ, BDRV_TRACKED_WRITE, BdrvChild, BdrvTrackedRequest, BlockDriverState,
               bdrv_getlength, bdrv_is_inserted)

BDRV_REQUEST_MAX_BYTES = 0x7FFFFE00  # MIN(SIZE_MAX, INT_MAX) rounded down to a sector
INT_MAX = 0x7FFFFFFF


def bdrv_inc_in_flight(bs: BlockDriverState) -> None:
    bs.in_flight += 1


def bdrv_dec_in_flight(bs: BlockDriverState) -> None:
    bs.in_flight -= 1  # (bdrv_wakeup: nothing waits in the model)


def tracked_request_begin(bs: BlockDriverState, offset: int, bytes_: int, type_: int) -> BdrvTrackedRequest:
    req = BdrvTrackedRequest(bs, offset, bytes_, type_, qemu_coroutine_self())
    bs.tracked_requests.insert(0, req)  # QLIST_INSERT_HEAD
    return req


def tracked_request_end(req: BdrvTrackedRequest) -> None:
    req.bs.tracked_requests.remove(req)


def bdrv_check_request32(offset: int, bytes_: int, qiov: QEMUIOVector | None, qiov_offset: int) -> int:
    """-EIO for a negative, too large or qiov-overflowing request."""
    if offset < 0 or bytes_ < 0 or bytes_ > BDRV_REQUEST_MAX_BYTES or offset > (1 << 63) - 1 - bytes_:
        return -errno.EIO
    if qiov is not None and qiov_offset + bytes_ > qiov.size:
        return -errno.EIO
    return 0


def _max_transfer(bs: BlockDriverState, align: int) -> int:
    mt = bs.bl.max_transfer or INT_MAX
    return mt - mt % align


# -- drivers -----------------------------------------------------------------------------------------------
@tracepoint("qemu-block", args=("bs", "offset", "bytes", "qiov", "qiov_offset", "flags"))
def bdrv_driver_preadv(bs: BlockDriverState, offset: int, bytes: int, qiov: QEMUIOVector,  # noqa: A002
                       qiov_offset: int, flags: int) -> Generator[Any, Any, int]:
    """Call the node's driver: drv->bdrv_co_preadv (both drivers on this path have it)."""
    drv = bs.drv
    if drv is None:
        return -errno.ENOMEDIUM
    if qiov_offset > 0 or bytes != qiov.size:  # qemu_iovec_init_slice
        raise NotImplementedError("a partial QEMUIOVector (qemu_iovec_init_slice) is not on this path")
    return (yield from drv.bdrv_co_preadv(bs, offset, bytes, qiov, flags))


@tracepoint("qemu-block", args=("bs", "offset", "bytes", "qiov", "qiov_offset", "flags"))
def bdrv_driver_pwritev(bs: BlockDriverState, offset: int, bytes: int, qiov: QEMUIOVector,  # noqa: A002
                        qiov_offset: int, flags: int) -> Generator[Any, Any, int]:
    """Drop FUA the node cannot do natively (then emulate it by a flush: not on this path, the write
    cache is on), then call drv->bdrv_co_pwritev."""
    drv = bs.drv
    if drv is None:
        return -errno.ENOMEDIUM
    if bs.open_flags & BDRV_O_NO_FLUSH:
        flags &= ~BDRV_REQ_FUA
    emulate_fua = False
    if flags & BDRV_REQ_FUA and not bs.supported_write_flags & BDRV_REQ_FUA:
        flags &= ~BDRV_REQ_FUA
        emulate_fua = True
    flags &= bs.supported_write_flags
    if qiov_offset > 0 or bytes != qiov.size:
        raise NotImplementedError("a partial QEMUIOVector (qemu_iovec_init_slice) is not on this path")
    ret = yield from drv.bdrv_co_pwritev(bs, offset, bytes, qiov, flags)
    if ret == 0 and emulate_fua:
        raise NotImplementedError("FUA emulation by bdrv_co_flush (cache=writethrough) is not modelled")
    return ret


# -- reads -------------------------------------------------------------------------------------------------
@tracepoint("qemu-block", args=("child", "req", "offset", "bytes", "align", "qiov", "qiov_offset", "flags"))
def bdrv_aligned_preadv(child: BdrvChild, req: BdrvTrackedRequest, offset: int, bytes: int, align: int,  # noqa: A002
                        qiov: QEMUIOVector, qiov_offset: int, flags: int) -> Generator[Any, Any, int]:
    """Read an aligned request: what lies inside the node from the driver, zeros past its end.
    (Copy-on-read and serialising requests are not on this path.)"""
    bs = child.bs
    max_transfer = _max_transfer(bs, align)
    total_bytes = bdrv_getlength(bs)
    if total_bytes < 0:
        return total_bytes
    max_bytes = -(-max(0, total_bytes - offset) // align) * align  # ROUND_UP
    if bytes <= max_bytes and bytes <= max_transfer:
        ret = yield from bdrv_driver_preadv(bs, offset, bytes, qiov, qiov_offset, flags)
        return ret if ret < 0 else 0
    remaining = bytes
    ret = 0
    while remaining:
        if max_bytes:
            num = min(remaining, max_bytes, max_transfer)
            ret = yield from bdrv_driver_preadv(bs, offset + bytes - remaining, num, qiov,
                                                qiov_offset + bytes - remaining, flags)
            max_bytes -= num
        else:
            num = remaining
            ret = iov_memset(qiov.iov, qiov.niov, qiov_offset + bytes - remaining, 0, remaining)
        if ret < 0:
            return ret
        remaining -= num
    return 0


@tracepoint("qemu-block", args=("child", "offset", "bytes", "qiov", "qiov_offset", "flags"))
def bdrv_co_preadv_part(child: BdrvChild, offset: int, bytes: int, qiov: QEMUIOVector,  # noqa: A002
                        qiov_offset: int, flags: int) -> Generator[Any, Any, int]:
    """Check, count in flight, track the request, and read it aligned (request_alignment 1: no padding)."""
    bs = child.bs
    if not bdrv_is_inserted(bs):
        return -errno.ENOMEDIUM
    ret = bdrv_check_request32(offset, bytes, qiov, qiov_offset)
    if ret < 0:
        return ret
    if bytes == 0 and offset % bs.bl.request_alignment:
        return 0
    bdrv_inc_in_flight(bs)
    if bs.copy_on_read:
        raise NotImplementedError("copy-on-read is not modelled")
    req = tracked_request_begin(bs, offset, bytes, BDRV_TRACKED_READ)
    try:
        ret = yield from bdrv_aligned_preadv(child, req, offset, bytes, bs.bl.request_alignment, qiov,
                                             qiov_offset, flags)
    finally:
        tracked_request_end(req)
        bdrv_dec_in_flight(bs)
    return ret


@tracepoint("qemu-block", args=("child", "offset", "bytes", "qiov", "flags"))
def bdrv_co_preadv(child: BdrvChild, offset: int, bytes: int, qiov: QEMUIOVector,  # noqa: A002
                   flags: int) -> Generator[Any, Any, int]:
    """The read entry a format driver calls on its child (raw_co_preadv → bdrv_co_preadv(bs->file))."""
    return (yield from bdrv_co_preadv_part(child, offset, bytes, qiov, 0, flags))


# -- writes ------------------------------------------------------------------------------------------------
def bdrv_co_write_req_prepare(child: BdrvChild, offset: int, bytes_: int, req: BdrvTrackedRequest,
                              flags: int) -> int:
    """A read-only node refuses the write (-EPERM). (No serialising requests or write threshold here.)"""
    bs = child.bs
    if bs.read_only:
        return -errno.EPERM
    return 0


def bdrv_co_write_req_finish(child: BdrvChild, offset: int, bytes_: int, req: BdrvTrackedRequest,
                             ret: int) -> None:
    """Count the write generation, grow the node if the write went past its end, note the highest offset."""
    bs = child.bs
    end_sector = -(-(offset + bytes_) // BDRV_SECTOR_SIZE)
    bs.write_gen += 1
    if ret == 0 and end_sector > bs.total_sectors:
        bs.total_sectors = end_sector
    if req.bytes:
        bs.wr_highest_offset = max(bs.wr_highest_offset, offset + bytes_)


@tracepoint("qemu-block", args=("child", "req", "offset", "bytes", "align", "qiov", "qiov_offset", "flags"))
def bdrv_aligned_pwritev(child: BdrvChild, req: BdrvTrackedRequest, offset: int, bytes: int, align: int,  # noqa: A002
                         qiov: QEMUIOVector, qiov_offset: int, flags: int) -> Generator[Any, Any, int]:
    """Prepare (permissions), send to the driver in max_transfer pieces, finish (sizes, dirty state)."""
    bs = child.bs
    drv = bs.drv
    if drv is None:
        return -errno.ENOMEDIUM
    max_transfer = _max_transfer(bs, align)
    ret = bdrv_co_write_req_prepare(child, offset, bytes, req, flags)
    # (detect-zeroes is off by default: no zero-write detection)
    if ret < 0:
        pass  # the write notifier decided to fail this request
    elif bytes <= max_transfer:
        ret = yield from bdrv_driver_pwritev(bs, offset, bytes, qiov, qiov_offset, flags)
    else:
        remaining = bytes
        while remaining:
            num = min(remaining, max_transfer)
            ret = yield from bdrv_driver_pwritev(bs, offset + bytes - remaining, num, qiov,
                                                 qiov_offset + bytes - remaining, flags)
            if ret < 0:
                break
            remaining -= num
    if ret >= 0:
        ret = 0
    bdrv_co_write_req_finish(child, offset, bytes, req, ret)
    return ret


@tracepoint("qemu-block", args=("child", "offset", "bytes", "qiov", "qiov_offset", "flags"))
def bdrv_co_pwritev_part(child: BdrvChild, offset: int, bytes: int, qiov: QEMUIOVector,  # noqa: A002
                         qiov_offset: int, flags: int) -> Generator[Any, Any, int]:
    """Check, count in flight, track the request, and write it aligned (no padding with alignment 1)."""
    bs = child.bs
    align = bs.bl.request_alignment
    if not bdrv_is_inserted(bs):
        return -errno.ENOMEDIUM
    ret = bdrv_check_request32(offset, bytes, qiov, qiov_offset)
    if ret < 0:
        return ret
    if bytes == 0 and offset % align:
        return 0
    if flags & BDRV_REQ_ZERO_WRITE:
        raise NotImplementedError("write-zeroes is not on this path")
    bdrv_inc_in_flight(bs)
    req = tracked_request_begin(bs, offset, bytes, BDRV_TRACKED_WRITE)
    try:
        ret = yield from bdrv_aligned_pwritev(child, req, offset, bytes, align, qiov, qiov_offset, flags)
    finally:
        tracked_request_end(req)
        bdrv_dec_in_flight(bs)
    return ret


@tracepoint("qemu-block", args=("child", "offset", "bytes", "qiov", "flags"))
def bdrv_co_pwritev(child: BdrvChild, offset: int, bytes: int, qiov: QEMUIOVector,  # noqa: A002
                    flags: int) -> Generator[Any, Any, int]:
    """The write entry a format driver calls on its child (raw_co_pwritev → bdrv_co_pwritev(bs->file))."""
    return (yield from bdrv_co_pwritev_part(child, offset, bytes, qiov, 0, flags))
