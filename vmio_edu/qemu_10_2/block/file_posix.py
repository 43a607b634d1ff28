"""block/file-posix.c (QEMU v10.2.0): the "file" protocol driver (1.6.1's block/raw-posix.c), owner of the fd.

1.6.1's raw-posix had only AIO entry points (raw_aio_writev → raw_aio_submit → paio_submit →
thread_pool_submit_aio(aio_worker)), run from a coroutine by the block layer's emulation. 10.2's is a
coroutine driver: `raw_co_pwritev` → `raw_co_prw` describes the request (RawPosixAIOData on the
coroutine's stack), and `raw_thread_pool_submit(handle_aiocb_rw, &acb)` → `thread_pool_submit_co`
queues it and *yields the coroutine*. A pool worker runs `handle_aiocb_rw` → `handle_aiocb_rw_linear` →
the real pwrite(2)/pread(2) on the image; `aio_worker` is gone (each request type has its pool function).

aio=native (Linux AIO) and aio=io_uring are other branches of raw_co_prw, taken only when configured;
the default, aio=threads, is modelled. aio=io_uring (`luring_co_submit`) is left out: in 10.2 it no longer
has a ring of its own but queues SQEs on the AioContext's fd monitor (`aio_add_sqe`, util/fdmon-io_uring.c),
so modelling it means modelling the event loop on io_uring too; Python's standard library has no io_uring
binding (QEMU uses liburing) and driving the rings from ctypes would be a second, unchecked liburing; and
container runtimes, CI's included, commonly forbid io_uring_setup in their seccomp profile.
"""
from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from typing import Any, Callable, Generator

from ...linux_6_12.fs.read_write import sys_pread64, sys_preadv, sys_pwrite64, sys_pwritev  # the host is Linux 6.12
from ...trace.tracepoint import emit, tracepoint
from ..util.iov import QEMUIOVector, iov_memset, iovec
from ..util.thread_pool import thread_pool_submit_co
from . import BDRV_O_NOCACHE, BDRV_O_RDWR, BDRV_REQ_FUA, BlockDriver, BlockDriverState

# block/raw-aio.h request types
QEMU_AIO_READ = 0x0001
QEMU_AIO_WRITE = 0x0002
QEMU_AIO_IOCTL = 0x0004
QEMU_AIO_FLUSH = 0x0008
QEMU_AIO_DISCARD = 0x0010
QEMU_AIO_ZONE_APPEND = 0x0400
QEMU_AIO_MISALIGNED = 0x1000
AIO_TYPE_NAMES = {QEMU_AIO_READ: "QEMU_AIO_READ", QEMU_AIO_WRITE: "QEMU_AIO_WRITE", QEMU_AIO_FLUSH: "QEMU_AIO_FLUSH"}


@dataclass
class BDRVRawState:
    fd: int = -1
    open_flags: int = 0
    needs_alignment: bool = False
    use_linux_aio: bool = False
    use_linux_io_uring: bool = False


@dataclass
class RawPosixAIOIo:
    """The `io` member of RawPosixAIOData's union: the iovec array."""

    iov: list[iovec] = field(default_factory=list)
    niov: int = 0


@dataclass(eq=False)
class RawPosixAIOData:
    """One request as a pool worker sees it (on the submitting coroutine's stack in 10.2)."""

    bs: BlockDriverState
    aio_type: int
    aio_fildes: int
    aio_offset: int = 0
    aio_nbytes: int = 0
    io: RawPosixAIOIo = field(default_factory=RawPosixAIOIo)

    def view(self) -> dict:
        return {"aio_type": AIO_TYPE_NAMES.get(self.aio_type & 0xFF, hex(self.aio_type)),
                "aio_fildes": self.aio_fildes, "aio_offset": self.aio_offset, "aio_nbytes": self.aio_nbytes,
                "niov": self.io.niov}


# -- opening -----------------------------------------------------------------------------------------------
def raw_parse_flags(bdrv_flags: int) -> int:
    flags = os.O_CLOEXEC | (os.O_RDWR if bdrv_flags & BDRV_O_RDWR else os.O_RDONLY)
    if bdrv_flags & BDRV_O_NOCACHE:
        flags |= os.O_DIRECT
    return flags


def raw_open(bs: BlockDriverState, flags: int) -> int:
    """raw_open_common: open(2) the image, page-cache I/O (no alignment needed), FUA supported.
    Returns 0 or -errno (a read-only filesystem counts as -EACCES; directories and FIFOs are refused)."""
    filename = bs.filename
    s = BDRVRawState(open_flags=raw_parse_flags(flags))
    try:
        st = os.stat(filename)
    except OSError as e:
        return -e.errno
    if stat.S_ISDIR(st.st_mode):
        return -errno.EISDIR
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISBLK(st.st_mode)):
        return -errno.ENOTBLK
    if flags & BDRV_O_RDWR and not st.st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
        return -errno.EACCES  # as open(2) answers an unprivileged QEMU (root would ignore the bits)
    try:
        s.fd = os.open(filename, s.open_flags, 0o644)
    except OSError as e:
        return -errno.EACCES if e.errno == errno.EROFS else -e.errno
    bs.opaque = s
    bs.bl.request_alignment = 1  # raw_probe_alignment: 1 without O_DIRECT
    bs.supported_write_flags = BDRV_REQ_FUA
    return 0


def raw_close(bs: BlockDriverState) -> None:
    s: BDRVRawState = bs.opaque
    if s is not None and s.fd >= 0:
        os.close(s.fd)
        s.fd = -1


def raw_co_getlength(bs: BlockDriverState) -> int:
    s: BDRVRawState = bs.opaque
    try:
        st = os.fstat(s.fd)
        if stat.S_ISBLK(st.st_mode):
            return os.lseek(s.fd, 0, os.SEEK_END)
        return st.st_size
    except OSError as e:
        return -e.errno


def fd_open(bs: BlockDriverState) -> int:
    s = bs.opaque
    return 0 if s is not None and s.fd >= 0 else -errno.EIO


# -- the worker side ---------------------------------------------------------------------------------------
def _at(buf: memoryview, offset: int, end: int) -> memoryview:
    """C's `buf + offset` for `end - offset` bytes: at offset 0 over the whole buffer, `buf` itself (a
    backtrace then shows pwrite's buf at the caller's address, as gdb would)."""
    return buf if offset == 0 and end == len(buf) else buf[offset:end]


@tracepoint("qemu-threadpool", args=("aiocb", "buf"))
def handle_aiocb_rw_linear(aiocb: RawPosixAIOData, buf: memoryview) -> int:
    """pwrite/pread `aio_nbytes` bytes between `buf` and the fd, looping over short transfers, stopping at
    end of file. Returns the bytes moved or -errno (EINTR is retried, by Python itself: PEP 475)."""
    offset = 0
    nbytes = aiocb.aio_nbytes
    is_write = bool(aiocb.aio_type & (QEMU_AIO_WRITE | QEMU_AIO_ZONE_APPEND))
    while offset < nbytes:
        emit("paio_rw_linear", "host", iov=0, iov_offset=offset, count=nbytes - offset,
             pos=aiocb.aio_offset + offset, is_write=int(is_write))  # (for byte provenance)
        try:
            if is_write:
                n = sys_pwrite64(aiocb.aio_fildes, _at(buf, offset, nbytes), nbytes - offset, aiocb.aio_offset + offset)
            else:
                n = sys_pread64(aiocb.aio_fildes, _at(buf, offset, nbytes), nbytes - offset, aiocb.aio_offset + offset)
        except OSError as e:
            return -e.errno
        if n == 0:
            break
        offset += n
    return offset


def handle_aiocb_rw_vector(aiocb: RawPosixAIOData) -> int:
    """preadv/pwritev straight on every iovec (static)."""
    bufs = [v.mem() for v in aiocb.io.iov[:aiocb.io.niov]]
    try:
        if aiocb.aio_type & (QEMU_AIO_WRITE | QEMU_AIO_ZONE_APPEND):
            return sys_pwritev(aiocb.aio_fildes, bufs, aiocb.aio_offset)
        return sys_preadv(aiocb.aio_fildes, bufs, aiocb.aio_offset)
    except OSError as e:
        return -e.errno


@tracepoint("qemu-threadpool", args=("opaque=aiocb",))
def handle_aiocb_rw(aiocb: RawPosixAIOData) -> int:
    """The pool function of a read or write (1.6.1's aio_worker + handle_aiocb_rw in one): one iovec is a
    plain pread/pwrite; a full transfer returns 0, a short write -EINVAL, a short read is padded with zeros."""
    nbytes = None
    if not aiocb.aio_type & QEMU_AIO_MISALIGNED:
        if aiocb.io.niov == 1:
            nbytes = handle_aiocb_rw_linear(aiocb, aiocb.io.iov[0].mem())
        else:
            nbytes = handle_aiocb_rw_vector(aiocb)
            if not (nbytes == aiocb.aio_nbytes or (nbytes < 0 and nbytes != -errno.ENOSYS)):
                nbytes = None
    if nbytes is None:  # copy through one bounce buffer
        buf = bytearray(aiocb.aio_nbytes)
        if aiocb.aio_type & QEMU_AIO_WRITE:
            p = 0
            for v in aiocb.io.iov[:aiocb.io.niov]:
                buf[p:p + v.iov_len] = v.mem()
                p += v.iov_len
        nbytes = handle_aiocb_rw_linear(aiocb, memoryview(buf))
        if not aiocb.aio_type & (QEMU_AIO_WRITE | QEMU_AIO_ZONE_APPEND):
            p, count = 0, aiocb.aio_nbytes
            for v in aiocb.io.iov[:aiocb.io.niov]:
                if not count:
                    break
                copy = min(count, v.iov_len)
                v.mem()[:copy] = buf[p:p + copy]
                p, count = p + copy, count - copy
    if nbytes == aiocb.aio_nbytes:
        return 0
    if 0 <= nbytes < aiocb.aio_nbytes:
        if aiocb.aio_type & QEMU_AIO_WRITE:
            return -errno.EINVAL
        iov_memset(aiocb.io.iov, aiocb.io.niov, nbytes, 0, aiocb.aio_nbytes - nbytes)
        return 0
    return nbytes


# -- the coroutine side ------------------------------------------------------------------------------------
@tracepoint("qemu-block", args=("func", "arg"))
def raw_thread_pool_submit(func: Callable[[Any], int], arg: Any) -> Generator[Any, Any, int]:
    """Hand `func(arg)` to the thread pool of the current AioContext and wait (the coroutine yields)."""
    return (yield from thread_pool_submit_co(func, arg))


@tracepoint("qemu-block", args=("bs", "bytes", "qiov", "type", "flags"))
def raw_co_prw(bs: BlockDriverState, offset: int, bytes: int, qiov: QEMUIOVector, type: int,  # noqa: A002
               flags: int) -> Generator[Any, Any, int]:
    """Describe the request in a RawPosixAIOData and run handle_aiocb_rw on the pool. With FUA, flush
    afterwards. (C takes `int64_t *offset_ptr`, for zone append to move it; the model passes the offset, so
    a backtrace shows offset_ptr as <optimized out> rather than a number that is no pointer.)"""
    s: BDRVRawState = bs.opaque
    if fd_open(bs) < 0:
        return -errno.EIO
    if s.needs_alignment:  # pragma: no cover - O_DIRECT is not modelled
        raise NotImplementedError("O_DIRECT alignment checks are not modelled")
    acb = RawPosixAIOData(bs, type, s.fd, offset, bytes, RawPosixAIOIo(qiov.iov, qiov.niov))
    if qiov.size != bytes:
        raise AssertionError("qiov->size == bytes")
    ret = yield from raw_thread_pool_submit(handle_aiocb_rw, acb)
    if ret == 0 and flags & BDRV_REQ_FUA:
        raise NotImplementedError("FUA (bdrv_co_flush after the write) is not modelled: the write cache is on")
    return ret


@tracepoint("qemu-block", args=("bs", "offset", "bytes", "qiov", "flags"))
def raw_co_preadv(bs: BlockDriverState, offset: int, bytes: int, qiov: QEMUIOVector,  # noqa: A002
                  flags: int) -> Generator[Any, Any, int]:
    return (yield from raw_co_prw(bs, offset, bytes, qiov, QEMU_AIO_READ, flags))


@tracepoint("qemu-block", args=("bs", "offset", "bytes", "qiov", "flags"))
def raw_co_pwritev(bs: BlockDriverState, offset: int, bytes: int, qiov: QEMUIOVector,  # noqa: A002
                   flags: int) -> Generator[Any, Any, int]:
    return (yield from raw_co_prw(bs, offset, bytes, qiov, QEMU_AIO_WRITE, flags))


bdrv_file = BlockDriver(format_name="file", protocol_name="file", bdrv_open=raw_open, bdrv_close=raw_close,
                        bdrv_co_getlength=raw_co_getlength, bdrv_co_preadv=raw_co_preadv,
                        bdrv_co_pwritev=raw_co_pwritev)
