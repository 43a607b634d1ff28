"""block.c (QEMU v1.6.1): the generic block layer. (block.c is this package's __init__ because block/
is also a directory of drivers: raw.py = block/raw.c, raw_posix.py = block/raw-posix.c.)

A disk opened with `-hda disk.img` is two BlockDriverStates: the *format* BDS (driver "raw", which passes
requests through unchanged) on top of the *file* BDS (driver "file" from raw-posix.c, which owns the fd).

An asynchronous write, as IDE issues it on the vCPU thread:

    bdrv_aio_writev → bdrv_co_aio_rw_vector: create a coroutine on bdrv_co_do_rw and enter it
      bdrv_co_do_rw → bdrv_co_do_writev (format BDS: checks) → raw_co_writev → bdrv_co_writev
        → bdrv_co_do_writev (file BDS) → bdrv_co_writev_em → bdrv_co_io_em
          → raw_aio_writev → raw_aio_submit → paio_submit → thread_pool_submit_aio
          ← qemu_coroutine_yield: control returns to bdrv_aio_writev's caller
    ... a pool worker does the pwrite; the main loop's event_notifier_ready calls
    bdrv_co_io_em_complete, which re-enters the coroutine on the main-loop thread; it returns up the
    stack, bdrv_co_do_rw schedules the bdrv_co_em_bh bottom half, and that calls the device's cb.

Units are 512-byte sectors (BDRV_SECTOR_SIZE); raw-posix turns them into bytes.
"""
from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Generator

from ...errors import ImageError
from ...trace.tracepoint import emit, tracepoint
from ..async_ import QEMUBH, qemu_bh_delete, qemu_bh_schedule
from ..main_loop import qemu_aio_wait, qemu_bh_new, qemu_get_aio_context
from ..qemu_coroutine import Coroutine, qemu_coroutine_create, qemu_coroutine_enter, qemu_coroutine_self, \
    qemu_coroutine_yield
from ..util.iov import QEMUIOVector

BDRV_SECTOR_BITS = 9
BDRV_SECTOR_SIZE = 1 << BDRV_SECTOR_BITS  # 512

# include/block/block.h open flags
BDRV_O_RDWR = 0x0002
BDRV_O_SNAPSHOT = 0x0008
BDRV_O_NOCACHE = 0x0020
BDRV_O_CACHE_WB = 0x0040
BDRV_O_NO_FLUSH = 0x0200

# BdrvRequestFlags
BDRV_REQ_COPY_ON_READ = 0x1
BDRV_REQ_ZERO_WRITE = 0x2

BlockDriverCompletionFunc = Callable[[Any, int], None]

# enum BlockAcctType
BDRV_ACCT_READ, BDRV_ACCT_WRITE, BDRV_ACCT_FLUSH = 0, 1, 2


@dataclass
class BlockDriver:
    """include/block/block_int.h BlockDriver: a driver's name and entry points (None = not provided)."""

    format_name: str
    protocol_name: str | None = None
    bdrv_file_open: Callable | None = None  # protocol drivers: open the file
    bdrv_open: Callable | None = None  # format drivers: open on top of bs.file
    bdrv_close: Callable | None = None
    bdrv_getlength: Callable | None = None
    bdrv_co_readv: Callable | None = None  # coroutine_fn (bs, sector_num, nb_sectors, qiov)
    bdrv_co_writev: Callable | None = None
    bdrv_aio_readv: Callable | None = None  # (bs, sector_num, qiov, nb_sectors, cb, opaque) -> acb
    bdrv_aio_writev: Callable | None = None
    bdrv_aio_flush: Callable | None = None  # (bs, cb, opaque) -> acb: raw-posix's flush (fdatasync)
    bdrv_co_flush_to_os: Callable | None = None
    bdrv_co_flush_to_disk: Callable | None = None


@dataclass
class BdrvTrackedRequest:
    sector_num: int
    nb_sectors: int
    is_write: bool
    co: Any = None

    def view(self) -> dict:
        return {"sector_num": self.sector_num, "nb_sectors": self.nb_sectors, "is_write": self.is_write,
                "co": getattr(self.co, "id", None)}


@dataclass
class BlockDriverState:
    filename: str
    drv: BlockDriver | None = None
    opaque: Any = None  # the driver's own state (raw-posix: BDRVRawState with the fd)
    file: "BlockDriverState | None" = None  # the protocol BDS under a format BDS
    open_flags: int = 0
    read_only: bool = False
    growable: bool = False  # protocol BDSes may be written past their end (and read short)
    total_sectors: int = 0
    enable_write_cache: bool = True  # IDE's default (cache=writeback): no flush after each write
    wr_highest_sector: int = 0
    tracked_requests: list[BdrvTrackedRequest] = field(default_factory=list)
    nr_bytes: list[int] = field(default_factory=lambda: [0, 0, 0])  # by BDRV_ACCT_* (query-blockstats)
    nr_ops: list[int] = field(default_factory=lambda: [0, 0, 0])

    def view(self) -> dict:
        return {"filename": self.filename, "driver": self.drv.format_name if self.drv else None,
                "read_only": self.read_only, "growable": self.growable, "total_sectors": self.total_sectors,
                "open_flags": self.open_flags, "wr_highest_sector": self.wr_highest_sector,
                "tracked_requests": [r.view() for r in self.tracked_requests],
                "rd_bytes": self.nr_bytes[BDRV_ACCT_READ], "wr_bytes": self.nr_bytes[BDRV_ACCT_WRITE],
                "rd_ops": self.nr_ops[BDRV_ACCT_READ], "wr_ops": self.nr_ops[BDRV_ACCT_WRITE],
                "file": self.file.view() if self.file is not None else None,
                "fd": getattr(self.opaque, "fd", None)}


@dataclass
class BlockRequest:
    """One write of a bdrv_aio_multiwrite batch (virtio-blk's MultiReqBuffer entries)."""

    sector: int
    nb_sectors: int
    qiov: QEMUIOVector
    flags: int = 0
    error: int = 0
    cb: Any = None  # BlockDriverCompletionFunc, called once the (possibly merged) write completed
    opaque: Any = None


@dataclass
class BlockDriverAIOCBCoroutine:
    """The AIOCB of a coroutine-emulated AIO request. `bs`, `cb`, `opaque` are the BlockDriverAIOCB."""

    bs: BlockDriverState
    cb: BlockDriverCompletionFunc
    opaque: Any
    req: BlockRequest
    is_write: bool
    bh: QEMUBH | None = None
    done: list[bool] | None = None  # set by a cancel waiting for the request (C: bool *done)
    id: int = 0  # model-only: the id of its coroutine, which names it in backtraces (as Coroutine.id)


@dataclass
class CoroutineIOCompletion:
    coroutine: Coroutine | None
    ret: int = 0


# -- drivers ---------------------------------------------------------------------------------------------
BDRV_DRIVERS: list[BlockDriver] = []


@tracepoint("qemu-block", args=("bdrv",))
def bdrv_register(bdrv: BlockDriver) -> None:
    """Register a driver. One with only AIO callbacks (raw-posix "file") gets the coroutine emulation
    bdrv_co_readv_em / bdrv_co_writev_em, so the block layer can always call bdrv_co_readv/writev."""
    if bdrv.bdrv_co_readv is None:
        bdrv.bdrv_co_readv = bdrv_co_readv_em
        bdrv.bdrv_co_writev = bdrv_co_writev_em
    BDRV_DRIVERS.append(bdrv)


def bdrv_find_format(name: str) -> BlockDriver | None:
    return next((d for d in BDRV_DRIVERS if d.format_name == name), None)


# -- opening and closing -----------------------------------------------------------------------------------
def bdrv_new(filename: str) -> BlockDriverState:
    return BlockDriverState(filename)


def refresh_total_sectors(bs: BlockDriverState, hint: int) -> int:
    """total_sectors from the driver's length (rounded down to whole sectors), else trust the hint."""
    if bs.drv is not None and bs.drv.bdrv_getlength is not None:
        length = bs.drv.bdrv_getlength(bs)
        if length < 0:
            return length
        hint = length >> BDRV_SECTOR_BITS
    bs.total_sectors = hint
    return 0


def bdrv_file_open(filename: str, flags: int) -> BlockDriverState:
    """Open the protocol ("file") BDS. Protocol BDSes are growable."""
    drv = bdrv_find_format("file")
    bs = bdrv_new(filename)
    bs.drv, bs.open_flags, bs.read_only = drv, flags, not (flags & BDRV_O_RDWR)
    bs.growable = True
    ret = drv.bdrv_file_open(bs, filename, flags)
    if ret == 0:
        ret = refresh_total_sectors(bs, 0)
    if ret < 0:
        if bs.opaque is not None and drv.bdrv_close is not None:
            drv.bdrv_close(bs)
        raise ImageError(_open_error(filename, flags, ret))
    return bs


def _open_error(filename: str, flags: int, ret: int) -> str:
    how = "read-write" if flags & BDRV_O_RDWR else "read-only"
    why = os.strerror(-ret)
    if ret == -errno.EACCES and flags & BDRV_O_RDWR:
        why += " (the image is read-only; open it with readonly=True to only read it)"
    return f"could not open disk image {filename!r} {how}: {why}"


@tracepoint("qemu-block", args=("filename", "flags"))
def bdrv_open(filename: str | os.PathLike, flags: int = BDRV_O_RDWR | BDRV_O_CACHE_WB, *,
              readonly: bool = False) -> BlockDriverState:
    """Open a raw disk image: the "raw" format BDS over a "file" BDS with a real fd.

    `readonly=True` clears BDRV_O_RDWR (like `-drive readonly=on`); writes then fail with -EACCES.
    A missing, unreadable or read-only (for read-write) file, or a directory, raises ImageError.
    QEMU 1.6.1 signature: bdrv_open(bs, filename, options, flags, drv); here it returns the BDS.
    """
    filename = os.fspath(filename)
    if readonly:
        flags &= ~BDRV_O_RDWR
    file = bdrv_file_open(filename, flags)
    bs = bdrv_new(filename)
    bs.drv, bs.file, bs.open_flags = bdrv_find_format("raw"), file, flags
    bs.read_only = not (flags & BDRV_O_RDWR)
    bs.enable_write_cache = bool(flags & BDRV_O_CACHE_WB)
    ret = bs.drv.bdrv_open(bs, flags)
    if ret == 0:
        ret = refresh_total_sectors(bs, file.total_sectors)
    if ret < 0:
        bdrv_close(file)
        raise ImageError(_open_error(filename, flags, ret))
    return bs


def bdrv_close(bs: BlockDriverState) -> None:
    """Close the BDS and the one under it (closes the fd). Safe to call twice."""
    if bs.drv is not None:
        if bs.drv.bdrv_close is not None:
            bs.drv.bdrv_close(bs)
        bs.drv = None
    if bs.file is not None:
        bdrv_close(bs.file)
        bs.file = None
    bs.total_sectors = 0


def bdrv_getlength(bs: BlockDriverState) -> int:
    """Length in bytes: total_sectors * 512 (-ENOMEDIUM when closed)."""
    if bs.drv is None:
        return -errno.ENOMEDIUM
    return bs.total_sectors * BDRV_SECTOR_SIZE


def bdrv_get_geometry(bs: BlockDriverState) -> int:
    """Number of sectors (0 if unknown). QEMU returns it through a pointer."""
    length = bdrv_getlength(bs)
    return 0 if length < 0 else length >> BDRV_SECTOR_BITS


def bdrv_is_read_only(bs: BlockDriverState) -> bool:
    return bs.read_only


@tracepoint("qemu-block", args=("bs",))
def bdrv_enable_write_cache(bs: BlockDriverState) -> bool:
    return bs.enable_write_cache


@tracepoint("qemu-block", args=("bs", "wce"))
def bdrv_set_enable_write_cache(bs: BlockDriverState, wce: bool) -> None:
    """Writeback (True) or writethrough (False, a flush after every write). 1.6.1 also flips
    BDRV_O_CACHE_WB in open_flags so that a reopen keeps the mode."""
    bs.enable_write_cache = wce
    if wce:
        bs.open_flags |= BDRV_O_CACHE_WB
    else:
        bs.open_flags &= ~BDRV_O_CACHE_WB


def bdrv_is_inserted(bs: BlockDriverState) -> bool:
    return bs.drv is not None


def bdrv_get_aio_context(bs: BlockDriverState) -> Any:
    """In 1.6.1 every BDS uses the main loop's AioContext."""
    return qemu_get_aio_context()


@dataclass
class BlockAcctCookie:
    bytes: int = 0
    type: int = BDRV_ACCT_READ  # (QEMU also stamps the start time; the model has no clock)


def bdrv_acct_start(bs: BlockDriverState, cookie: BlockAcctCookie, nbytes: int, type: int) -> None:  # noqa: A002
    """A device starts an I/O it wants counted (IDE does, per sector)."""
    cookie.bytes, cookie.type = nbytes, type


def bdrv_acct_done(bs: BlockDriverState, cookie: BlockAcctCookie) -> None:
    """The I/O completed: count its bytes and one operation."""
    bs.nr_bytes[cookie.type] += cookie.bytes
    bs.nr_ops[cookie.type] += 1


# -- request checks ----------------------------------------------------------------------------------------
def bdrv_check_byte_request(bs: BlockDriverState, offset: int, size: int) -> int:
    """-ENOMEDIUM without a medium; -EIO if [offset, offset+size) is not inside a non-growable BDS."""
    if not bdrv_is_inserted(bs):
        return -errno.ENOMEDIUM
    if bs.growable:
        return 0
    length = bdrv_getlength(bs)
    if offset < 0 or size < 0:  # size is a size_t in C: a negative count is huge there
        return -errno.EIO
    if offset > length or length - offset < size:
        return -errno.EIO
    return 0


@tracepoint("qemu-block", args=("bs", "sector_num", "nb_sectors"))
def bdrv_check_request(bs: BlockDriverState, sector_num: int, nb_sectors: int) -> int:
    return bdrv_check_byte_request(bs, sector_num * BDRV_SECTOR_SIZE, nb_sectors * BDRV_SECTOR_SIZE)


def tracked_request_begin(bs: BlockDriverState, sector_num: int, nb_sectors: int,
                          is_write: bool) -> BdrvTrackedRequest:
    req = BdrvTrackedRequest(sector_num, nb_sectors, is_write, qemu_coroutine_self())
    bs.tracked_requests.append(req)
    return req


def tracked_request_end(bs: BlockDriverState, req: BdrvTrackedRequest) -> None:
    bs.tracked_requests.remove(req)


# -- the coroutine read/write path -------------------------------------------------------------------------
@tracepoint("qemu-block", args=("bs", "sector_num", "nb_sectors", "qiov", "flags"))
def bdrv_co_do_readv(bs: BlockDriverState, sector_num: int, nb_sectors: int, qiov: QEMUIOVector,
                     flags: int = 0) -> Generator[Any, Any, int]:
    """Check the request, track it while it runs, and call the driver's bdrv_co_readv.
    (Throttling and copy-on-read are off for this disk and not modelled.)"""
    drv = bs.drv
    if drv is None:
        return -errno.ENOMEDIUM
    if bdrv_check_request(bs, sector_num, nb_sectors):
        return -errno.EIO
    req = tracked_request_begin(bs, sector_num, nb_sectors, False)
    try:
        ret = yield from drv.bdrv_co_readv(bs, sector_num, nb_sectors, qiov)
    finally:
        tracked_request_end(bs, req)
    return ret


@tracepoint("qemu-block", args=("bs", "sector_num", "nb_sectors", "qiov", "flags"))
def bdrv_co_do_writev(bs: BlockDriverState, sector_num: int, nb_sectors: int, qiov: QEMUIOVector,
                      flags: int = 0) -> Generator[Any, Any, int]:
    """Refuse a read-only BDS (-EACCES) and a request past the end (-EIO), track the request, call the
    driver's bdrv_co_writev, and note the highest sector written (and the new size if it grew).
    With the write cache off (writethrough) the write is flushed before it completes (bdrv_co_flush);
    cache=writeback, IDE's default, keeps it on."""
    drv = bs.drv
    if drv is None:
        return -errno.ENOMEDIUM
    if bs.read_only:
        return -errno.EACCES
    if bdrv_check_request(bs, sector_num, nb_sectors):
        return -errno.EIO
    req = tracked_request_begin(bs, sector_num, nb_sectors, True)
    try:
        ret = yield from drv.bdrv_co_writev(bs, sector_num, nb_sectors, qiov)
        if ret == 0 and not bs.enable_write_cache:  # writethrough: each write is flushed before it completes
            ret = yield from bdrv_co_flush(bs)
    finally:
        tracked_request_end(bs, req)
    if bs.wr_highest_sector < sector_num + nb_sectors - 1:
        bs.wr_highest_sector = sector_num + nb_sectors - 1
    return ret


@tracepoint("qemu-block", args=("bs", "sector_num", "nb_sectors", "qiov"))
def bdrv_co_readv(bs: BlockDriverState, sector_num: int, nb_sectors: int,
                  qiov: QEMUIOVector) -> Generator[Any, Any, int]:
    """The coroutine read entry a format driver calls on its child (bs.file)."""
    return (yield from bdrv_co_do_readv(bs, sector_num, nb_sectors, qiov, 0))


@tracepoint("qemu-block", args=("bs", "sector_num", "nb_sectors", "qiov"))
def bdrv_co_writev(bs: BlockDriverState, sector_num: int, nb_sectors: int,
                   qiov: QEMUIOVector) -> Generator[Any, Any, int]:
    """The coroutine write entry a format driver calls on its child (bs.file)."""
    return (yield from bdrv_co_do_writev(bs, sector_num, nb_sectors, qiov, 0))


@tracepoint("qemu-block", args=("opaque", "ret"))
def bdrv_co_io_em_complete(opaque: CoroutineIOCompletion, ret: int) -> None:
    """The AIO callback (on the main loop): store the result and re-enter the waiting coroutine."""
    opaque.ret = ret
    qemu_coroutine_enter(opaque.coroutine, None)


@tracepoint("qemu-block", args=("bs", "sector_num", "nb_sectors", "iov", "is_write"))
def bdrv_co_io_em(bs: BlockDriverState, sector_num: int, nb_sectors: int, iov: QEMUIOVector,
                  is_write: bool) -> Generator[Any, Any, int]:
    """Run an AIO-only driver from a coroutine: submit the driver's AIO with bdrv_co_io_em_complete as
    the callback, then yield until that callback re-enters us with the result."""
    co = CoroutineIOCompletion(coroutine=qemu_coroutine_self())
    if is_write:
        acb = bs.drv.bdrv_aio_writev(bs, sector_num, iov, nb_sectors, bdrv_co_io_em_complete, co)
    else:
        acb = bs.drv.bdrv_aio_readv(bs, sector_num, iov, nb_sectors, bdrv_co_io_em_complete, co)
    if acb is None:
        return -errno.EIO
    yield from qemu_coroutine_yield()
    return co.ret


@tracepoint("qemu-block", args=("bs", "sector_num", "nb_sectors", "iov"))
def bdrv_co_readv_em(bs: BlockDriverState, sector_num: int, nb_sectors: int,
                     iov: QEMUIOVector) -> Generator[Any, Any, int]:
    return (yield from bdrv_co_io_em(bs, sector_num, nb_sectors, iov, False))


@tracepoint("qemu-block", args=("bs", "sector_num", "nb_sectors", "iov"))
def bdrv_co_writev_em(bs: BlockDriverState, sector_num: int, nb_sectors: int,
                      iov: QEMUIOVector) -> Generator[Any, Any, int]:
    return (yield from bdrv_co_io_em(bs, sector_num, nb_sectors, iov, True))


# -- AIO on top of coroutines ------------------------------------------------------------------------------
@tracepoint("qemu-block", args=("opaque=acb",))
def bdrv_co_em_bh(acb: BlockDriverAIOCBCoroutine) -> None:
    """The bottom half of a finished request: call the device's callback with the result, then free."""
    acb.cb(acb.opaque, acb.req.error)
    if acb.done is not None:
        acb.done[0] = True
    qemu_bh_delete(acb.bh)


@tracepoint("qemu-block", args=("blockacb=acb",))
def bdrv_aio_co_cancel_em(acb: BlockDriverAIOCBCoroutine) -> None:
    """Cancelling a coroutine request in 1.6.1 does not stop it: it waits, running the main AioContext on
    this thread, until the request has finished and its callback has run (bdrv_co_em_bh sets done)."""
    done = [False]
    acb.done = done
    while not done[0]:
        qemu_aio_wait()


@tracepoint("qemu-block", args=("acb",))
def bdrv_aio_cancel(acb: BlockDriverAIOCBCoroutine) -> None:
    """acb->aiocb_info->cancel(acb): for the block layer's coroutine AIOCBs, bdrv_aio_co_cancel_em."""
    bdrv_aio_co_cancel_em(acb)


@tracepoint("qemu-block", args=("opaque=acb",))
def bdrv_co_do_rw(acb: BlockDriverAIOCBCoroutine) -> Generator[Any, Any, None]:
    """The coroutine body: run the read or write on the format BDS, then schedule bdrv_co_em_bh so the
    device's callback runs from the main loop, never from inside the submitting call."""
    bs = acb.bs
    if not acb.is_write:
        acb.req.error = yield from bdrv_co_do_readv(bs, acb.req.sector, acb.req.nb_sectors, acb.req.qiov, 0)
    else:
        acb.req.error = yield from bdrv_co_do_writev(bs, acb.req.sector, acb.req.nb_sectors, acb.req.qiov, 0)
    acb.bh = qemu_bh_new(bdrv_co_em_bh, acb)
    qemu_bh_schedule(acb.bh)


@tracepoint("qemu-block", args=("bs", "sector_num", "qiov", "nb_sectors", "cb", "opaque", "is_write"))
def bdrv_co_aio_rw_vector(bs: BlockDriverState, sector_num: int, qiov: QEMUIOVector, nb_sectors: int,
                          cb: BlockDriverCompletionFunc, opaque: Any, is_write: bool) -> BlockDriverAIOCBCoroutine:
    """Make the AIOCB, create a coroutine on bdrv_co_do_rw and enter it right away on this thread; return
    when it first yields (or finishes)."""
    acb = BlockDriverAIOCBCoroutine(bs, cb, opaque, BlockRequest(sector_num, nb_sectors, qiov), is_write)
    co = qemu_coroutine_create(bdrv_co_do_rw)
    acb.id = co.id
    qemu_coroutine_enter(co, acb)
    return acb


def _check_qiov(qiov: QEMUIOVector, nb_sectors: int) -> None:
    # The C code trusts the caller; a model bug here must not turn into a short or oversized pwrite.
    if nb_sectors >= 0 and qiov.size != nb_sectors * BDRV_SECTOR_SIZE:
        raise ValueError(f"QEMUIOVector holds {qiov.size} bytes but the request is {nb_sectors} sectors "
                         f"({nb_sectors * BDRV_SECTOR_SIZE} bytes)")


@tracepoint("qemu-block", args=("bs", "sector_num", "qiov", "nb_sectors", "cb", "opaque"))
def bdrv_aio_readv(bs: BlockDriverState, sector_num: int, qiov: QEMUIOVector, nb_sectors: int,
                   cb: BlockDriverCompletionFunc, opaque: Any) -> BlockDriverAIOCBCoroutine:
    """Start reading `nb_sectors` sectors at `sector_num` into `qiov`; `cb(opaque, ret)` runs later on the
    main-loop thread (ret 0 or -errno)."""
    _check_qiov(qiov, nb_sectors)
    return bdrv_co_aio_rw_vector(bs, sector_num, qiov, nb_sectors, cb, opaque, False)


@tracepoint("qemu-block", args=("bs", "sector_num", "qiov", "nb_sectors", "cb", "opaque"))
def bdrv_aio_writev(bs: BlockDriverState, sector_num: int, qiov: QEMUIOVector, nb_sectors: int,
                    cb: BlockDriverCompletionFunc, opaque: Any) -> BlockDriverAIOCBCoroutine:
    """Start writing `qiov` to `nb_sectors` sectors at `sector_num`; `cb(opaque, ret)` runs later on the
    main-loop thread (ret 0 or -errno)."""
    _check_qiov(qiov, nb_sectors)
    return bdrv_co_aio_rw_vector(bs, sector_num, qiov, nb_sectors, cb, opaque, True)


# -- flush ----------------------------------------------------------------------------------------------
@tracepoint("qemu-block", args=("bs",))
def bdrv_co_flush(bs: BlockDriverState | None) -> Generator[Any, Any, int]:
    """Flush this BDS, then the one under it: the raw format has nothing of its own to flush, the file
    protocol's bdrv_aio_flush sends an fdatasync to the thread pool and the coroutine waits for it."""
    if bs is None or not bdrv_is_inserted(bs) or bdrv_is_read_only(bs):
        return 0
    drv = bs.drv
    if drv.bdrv_co_flush_to_os is not None:
        ret = yield from drv.bdrv_co_flush_to_os(bs)
        if ret < 0:
            return ret
    if not bs.open_flags & BDRV_O_NO_FLUSH:  # cache=unsafe skips the flush to disk
        if drv.bdrv_co_flush_to_disk is not None:
            ret = yield from drv.bdrv_co_flush_to_disk(bs)
        elif drv.bdrv_aio_flush is not None:
            co = CoroutineIOCompletion(coroutine=qemu_coroutine_self())
            acb = drv.bdrv_aio_flush(bs, bdrv_co_io_em_complete, co)
            if acb is None:
                ret = -errno.EIO
            else:
                yield from qemu_coroutine_yield()
                ret = co.ret
        else:
            ret = 0  # a driver that can't flush: hope the user knows (block.c's comment)
        if ret < 0:
            return ret
    return (yield from bdrv_co_flush(bs.file))


@tracepoint("qemu-block", args=("opaque=acb",))
def bdrv_aio_flush_co_entry(acb: BlockDriverAIOCBCoroutine) -> Generator[Any, Any, None]:
    """The flush coroutine: bdrv_co_flush, then the bottom half that calls the device back."""
    acb.req.error = yield from bdrv_co_flush(acb.bs)
    acb.bh = qemu_bh_new(bdrv_co_em_bh, acb)
    qemu_bh_schedule(acb.bh)


@tracepoint("qemu-block", args=("bs", "cb", "opaque"))
def bdrv_aio_flush(bs: BlockDriverState, cb: BlockDriverCompletionFunc, opaque: Any) -> BlockDriverAIOCBCoroutine:
    """Start a flush of the whole drive; `cb(opaque, ret)` runs later on the main loop."""
    acb = BlockDriverAIOCBCoroutine(bs, cb, opaque, BlockRequest(0, 0, None), False)
    co = qemu_coroutine_create(bdrv_aio_flush_co_entry)
    acb.id = co.id
    qemu_coroutine_enter(co, acb)
    return acb


# -- bdrv_aio_multiwrite: several writes submitted together, neighbours merged (virtio-blk uses it) --------
@dataclass(eq=False)
class MultiwriteCB:
    """The shared completion of one bdrv_aio_multiwrite: the first error, the requests still running
    (after merging) and every caller's callback, each called once all requests are done."""

    error: int = 0
    num_requests: int = 0
    num_callbacks: int = 0
    callbacks: list[dict] = field(default_factory=list)  # {cb, opaque, free_qiov}

    def view(self) -> dict:
        return {"error": self.error, "num_requests": self.num_requests, "num_callbacks": self.num_callbacks}


@tracepoint("qemu-block", args=("mcb",))
def multiwrite_user_cb(mcb: MultiwriteCB) -> None:
    """Every caller's callback, with the batch's error (one failed merged write fails all its parts)."""
    for c in mcb.callbacks[:mcb.num_callbacks]:
        c["cb"](c["opaque"], mcb.error)


@tracepoint("qemu-block", args=("opaque=mcb", "ret"))
def multiwrite_cb(mcb: MultiwriteCB, ret: int) -> None:
    """One of the batch's writes completed (the bdrv_aio_writev callback, on the main loop)."""
    if ret < 0 and not mcb.error:
        mcb.error = ret
    mcb.num_requests -= 1
    if mcb.num_requests == 0:
        multiwrite_user_cb(mcb)


@tracepoint("qemu-block", args=("bs", "reqs", "num_reqs", "mcb"))
def multiwrite_merge(bs: BlockDriverState, reqs: list[BlockRequest], num_reqs: int, mcb: MultiwriteCB) -> int:
    """Sort by start sector and merge each request into the previous one when it starts at or before
    the previous one's end (sequential or overlapping; an overlap drops the first one's tail). A merged
    request gets a new QEMUIOVector holding both vectors' pieces. Returns how many requests remain."""
    from ..util.iov import qemu_iovec_concat, qemu_iovec_init
    IOV_MAX = 1024
    reqs[:num_reqs] = sorted(reqs[:num_reqs], key=lambda r: r.sector)  # qsort: multiwrite_req_compare
    outidx = 0
    for i in range(1, num_reqs):
        oldreq_last = reqs[outidx].sector + reqs[outidx].nb_sectors
        merge = reqs[i].sector <= oldreq_last
        if reqs[outidx].qiov.niov + reqs[i].qiov.niov + 1 > IOV_MAX:
            merge = False
        if merge:
            qiov = QEMUIOVector()
            qemu_iovec_init(qiov, reqs[outidx].qiov.niov + reqs[i].qiov.niov + 1)
            size = (reqs[i].sector - reqs[outidx].sector) << 9
            qemu_iovec_concat(qiov, reqs[outidx].qiov, 0, size)
            qemu_iovec_concat(qiov, reqs[i].qiov, 0, reqs[i].qiov.size)
            reqs[outidx] = BlockRequest(reqs[outidx].sector, qiov.size >> 9, qiov, reqs[outidx].flags,
                                        reqs[outidx].error, reqs[outidx].cb, reqs[outidx].opaque)
            mcb.callbacks[i]["free_qiov"] = qiov
        else:
            outidx += 1
            reqs[outidx] = BlockRequest(reqs[i].sector, reqs[i].nb_sectors, reqs[i].qiov, reqs[outidx].flags,
                                        reqs[outidx].error, reqs[outidx].cb, reqs[outidx].opaque)
    return outidx + 1


@tracepoint("qemu-block", args=("bs", "reqs", "num_reqs"))
def bdrv_aio_multiwrite(bs: BlockDriverState, reqs: list[BlockRequest], num_reqs: int) -> int:
    """Submit `num_reqs` writes at once: merge what touches, then one bdrv_aio_writev per remaining
    request, all completing through multiwrite_cb. 0 on success; -1 (every req.error set) with no medium."""
    if bs.drv is None:
        for r in reqs[:num_reqs]:
            r.error = -errno.ENOMEDIUM
        return -1
    if num_reqs == 0:
        return 0
    mcb = MultiwriteCB(num_requests=0, num_callbacks=num_reqs,
                       callbacks=[{"cb": r.cb, "opaque": r.opaque, "free_qiov": None} for r in reqs[:num_reqs]])
    num_reqs = multiwrite_merge(bs, reqs, num_reqs, mcb)
    emit("bdrv_aio_multiwrite", "qemu-block", mcb=mcb, num_callbacks=mcb.num_callbacks, num_reqs=num_reqs)
    mcb.num_requests = num_reqs
    for r in reqs[:num_reqs]:
        bdrv_aio_writev(bs, r.sector, r.qiov, r.nb_sectors, multiwrite_cb, mcb)
    return 0


# The drivers register themselves (QEMU's block_init); they import the functions above.
from .raw_posix import bdrv_file  # noqa: E402
from .raw import bdrv_raw  # noqa: E402

bdrv_register(bdrv_file)
bdrv_register(bdrv_raw)
