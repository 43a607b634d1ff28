"""block/raw-posix.c (QEMU v1.6.1): the "file" protocol driver, the one that owns the image's fd.

It has only AIO entry points. `raw_aio_writev` → `raw_aio_submit` → `paio_submit` packs the request
into a RawPosixAIOData, turning sectors into bytes (aio_offset = sector_num*512, aio_nbytes =
nb_sectors*512, raw-posix.c:795-796), and hands `aio_worker` to the thread pool. On a worker thread,
`aio_worker` → `handle_aiocb_rw` → `handle_aiocb_rw_linear` does the real `pwrite`/`pread` on the fd.
"""
from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from typing import Any, Callable

from ...linux.fs.read_write import sys_pread64, sys_preadv, sys_pwrite64, sys_pwritev
from ...linux.fs.sync import sys_fdatasync
from ...trace.tracepoint import current_context, emit, tracepoint
from ..async_ import aio_get_thread_pool
from ..thread_pool import thread_pool_submit_aio
from ..util.iov import QEMUIOVector, iov_from_buf, iov_memset, iov_to_buf, iovec
from . import BDRV_O_NOCACHE, BDRV_O_RDWR, BlockDriver, BlockDriverState, bdrv_get_aio_context

# block/raw-aio.h request types
QEMU_AIO_READ = 0x0001
QEMU_AIO_WRITE = 0x0002
QEMU_AIO_IOCTL = 0x0004
QEMU_AIO_FLUSH = 0x0008
QEMU_AIO_DISCARD = 0x0010
QEMU_AIO_TYPE_MASK = QEMU_AIO_READ | QEMU_AIO_WRITE | QEMU_AIO_IOCTL | QEMU_AIO_FLUSH | QEMU_AIO_DISCARD
QEMU_AIO_MISALIGNED = 0x1000
AIO_TYPE_NAMES = {QEMU_AIO_READ: "QEMU_AIO_READ", QEMU_AIO_WRITE: "QEMU_AIO_WRITE",
                  QEMU_AIO_FLUSH: "QEMU_AIO_FLUSH"}

FTYPE_FILE, FTYPE_CD, FTYPE_FD = 0, 1, 2


@dataclass
class BDRVRawState:
    fd: int = -1
    type: int = FTYPE_FILE
    open_flags: int = 0  # the open(2) flags used


@dataclass
class RawPosixAIOData:
    """One request as a pool worker sees it: which fd, which bytes, which buffers."""

    bs: BlockDriverState
    aio_fildes: int
    aio_type: int
    aio_iov: list[iovec] = field(default_factory=list)
    aio_niov: int = 0
    aio_nbytes: int = 0
    aio_offset: int = 0

    def view(self) -> dict:
        return {"aio_type": AIO_TYPE_NAMES.get(self.aio_type & QEMU_AIO_TYPE_MASK, hex(self.aio_type)),
                "aio_fildes": self.aio_fildes, "aio_offset": self.aio_offset, "aio_nbytes": self.aio_nbytes,
                "aio_niov": self.aio_niov}


# -- opening -----------------------------------------------------------------------------------------------
def raw_parse_flags(bdrv_flags: int) -> int:
    flags = os.O_CLOEXEC | (os.O_RDWR if bdrv_flags & BDRV_O_RDWR else os.O_RDONLY)
    if bdrv_flags & BDRV_O_NOCACHE:
        flags |= os.O_DIRECT
    return flags


@tracepoint("qemu-block", args=("bs", "flags", "filename"))
def raw_open(bs: BlockDriverState, filename: str, flags: int) -> int:
    """open(2) the image (O_RDWR or O_RDONLY). Returns 0 or -errno; a read-only filesystem counts as
    -EACCES, as in QEMU."""
    s = BDRVRawState(open_flags=raw_parse_flags(flags))
    try:
        st = os.stat(filename)
    except OSError as e:
        return -e.errno
    if stat.S_ISDIR(st.st_mode):
        return -errno.EISDIR  # open(O_RDONLY) would succeed on a directory; refuse it up front
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISBLK(st.st_mode)):
        return -errno.ENOTBLK  # a FIFO or character device is no disk image (QEMU has other drivers)
    if flags & BDRV_O_RDWR and not st.st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
        # root ignores permission bits, but a read-only image must stay read-only: answer as open(2)
        # does for an unprivileged QEMU
        return -errno.EACCES
    try:
        s.fd = os.open(filename, s.open_flags, 0o644)
    except OSError as e:
        return -errno.EACCES if e.errno == errno.EROFS else -e.errno
    bs.opaque = s
    return 0


def raw_close(bs: BlockDriverState) -> None:
    s: BDRVRawState = bs.opaque
    if s is not None and s.fd >= 0:
        os.close(s.fd)
        s.fd = -1


def raw_getlength(bs: BlockDriverState) -> int:
    """The file's size in bytes (a block device's from lseek to its end)."""
    s: BDRVRawState = bs.opaque
    try:
        st = os.fstat(s.fd)
        if stat.S_ISBLK(st.st_mode):
            return os.lseek(s.fd, 0, os.SEEK_END)
        return st.st_size
    except OSError as e:
        return -e.errno


# -- the worker side ---------------------------------------------------------------------------------------
def _at(buf: memoryview, offset: int, end: int) -> memoryview:
    """C's `buf + offset` for `end - offset` bytes: at offset 0 over the whole buffer, `buf` itself (a
    backtrace then shows pwrite's buf at the caller's address, as gdb would)."""
    return buf if offset == 0 and end == len(buf) else buf[offset:end]


@tracepoint("qemu-threadpool", args=("aiocb", "buf"))
def handle_aiocb_rw_linear(aiocb: RawPosixAIOData, buf: memoryview) -> int:
    """pwrite/pread `aio_nbytes` bytes between `buf` and the fd at `aio_offset`, looping over short
    transfers and stopping at end of file. Returns the bytes moved or -errno."""
    offset = 0
    nbytes = aiocb.aio_nbytes
    while offset < nbytes:
        # For byte provenance: which bytes of the iovec this system call moves, to which file offset.
        emit("paio_rw_linear", "host", iov=0, iov_offset=offset, count=nbytes - offset,
             pos=aiocb.aio_offset + offset, is_write=int(bool(aiocb.aio_type & QEMU_AIO_WRITE)))
        try:
            if aiocb.aio_type & QEMU_AIO_WRITE:
                n = sys_pwrite64(aiocb.aio_fildes, _at(buf, offset, nbytes), nbytes - offset,
                                 aiocb.aio_offset + offset)
            else:
                n = sys_pread64(aiocb.aio_fildes, _at(buf, offset, nbytes), nbytes - offset,
                                aiocb.aio_offset + offset)
        except OSError as e:  # EINTR is retried by Python itself (PEP 475)
            return -e.errno
        if n == 0:
            break
        offset += n
    return offset


@tracepoint("qemu-threadpool", args=("aiocb",))
def handle_aiocb_rw_vector(aiocb: RawPosixAIOData) -> int:
    """preadv/pwritev straight to/from every iovec (one system call)."""
    bufs = [v.mem() for v in aiocb.aio_iov[:aiocb.aio_niov]]
    try:
        if aiocb.aio_type & QEMU_AIO_WRITE:
            return sys_pwritev(aiocb.aio_fildes, bufs, aiocb.aio_offset)
        return sys_preadv(aiocb.aio_fildes, bufs, aiocb.aio_offset)
    except OSError as e:
        return -e.errno


@tracepoint("qemu-threadpool", args=("aiocb",))
def handle_aiocb_flush(aiocb: RawPosixAIOData) -> int:
    """A flush: fdatasync(2) on the image's fd (qemu_fdatasync). 0 or -errno."""
    try:
        return sys_fdatasync(aiocb.aio_fildes)
    except OSError as e:
        return -e.errno


def _emit_guest_iovs(aiocb: RawPosixAIOData) -> None:
    """For byte provenance (vmio_edu.trace.provenance_virtio): each iovec that points into guest RAM (a
    virtio request's, mapped in place) as a point event: its guest-physical address and the file offset
    its first byte goes to or comes from. QEMU could tell the same with qemu_ram_addr_from_host (exec.c);
    an IDE request's iovec is over io_buffer and gets none (its bytes have paio_rw_linear)."""
    ctx = current_context()
    if ctx is None or ctx.machine is None or ctx.hooks is None:
        return
    ram = getattr(ctx.machine.address_space_memory, "ram", None)
    pos = aiocb.aio_offset
    for k, v in enumerate(aiocb.aio_iov[:aiocb.aio_niov]):
        if ram is not None and v.iov_base is ram:
            emit("paio_rw_iov", "host", iov=k, addr=v.iov_offset, len=v.iov_len, pos=pos,
                 is_write=int(bool(aiocb.aio_type & QEMU_AIO_WRITE)))
        pos += v.iov_len


@tracepoint("qemu-threadpool", args=("aiocb",))
def handle_aiocb_rw(aiocb: RawPosixAIOData) -> int:
    """One iovec (the IDE case): plain pread/pwrite on it. Several: preadv/pwritev, and if that came up
    short, copy through one bounce buffer and use pread/pwrite. (O_DIRECT misalignment is not modelled.)"""
    if not aiocb.aio_type & QEMU_AIO_MISALIGNED:
        _emit_guest_iovs(aiocb)
        if aiocb.aio_niov == 1:
            return handle_aiocb_rw_linear(aiocb, aiocb.aio_iov[0].mem())
        nbytes = handle_aiocb_rw_vector(aiocb)
        if nbytes == aiocb.aio_nbytes or nbytes < 0:
            return nbytes
    buf = bytearray(aiocb.aio_nbytes)
    if aiocb.aio_type & QEMU_AIO_WRITE:
        buf[:] = iov_to_buf(aiocb.aio_iov, aiocb.aio_niov, 0, aiocb.aio_nbytes)
    nbytes = handle_aiocb_rw_linear(aiocb, memoryview(buf))
    if not aiocb.aio_type & QEMU_AIO_WRITE:
        iov_from_buf(aiocb.aio_iov, aiocb.aio_niov, 0, bytes(buf))
    return nbytes


@tracepoint("qemu-threadpool", args=("arg",))
def aio_worker(arg: RawPosixAIOData) -> int:
    """The pool function: run the request by type. A full transfer gives 0, a short one -EINVAL, an
    error -errno. A short read of a growable file (reading past its end) is padded with zeros."""
    aiocb = arg
    kind = aiocb.aio_type & QEMU_AIO_TYPE_MASK
    if kind == QEMU_AIO_READ:
        ret = handle_aiocb_rw(aiocb)
        if 0 <= ret < aiocb.aio_nbytes and aiocb.bs.growable:
            iov_memset(aiocb.aio_iov, aiocb.aio_niov, ret, 0, aiocb.aio_nbytes - ret)
            ret = aiocb.aio_nbytes
    elif kind == QEMU_AIO_WRITE:
        ret = handle_aiocb_rw(aiocb)
    elif kind == QEMU_AIO_FLUSH:
        return handle_aiocb_flush(aiocb)
    else:
        return -errno.EINVAL  # ioctl, discard: not on this path
    if ret == aiocb.aio_nbytes:
        return 0
    if 0 <= ret < aiocb.aio_nbytes:
        return -errno.EINVAL
    return ret


# -- the submitting side -----------------------------------------------------------------------------------
@tracepoint("qemu-block", args=("bs", "fd", "sector_num", "qiov", "nb_sectors", "cb", "opaque", "type"))
def paio_submit(bs: BlockDriverState, fd: int, sector_num: int, qiov: QEMUIOVector, nb_sectors: int,
                cb: Callable[[Any, int], None], opaque: Any, type: int) -> Any:  # noqa: A002
    """Describe the request in bytes and give aio_worker to the AioContext's thread pool."""
    acb = RawPosixAIOData(bs, fd, type)
    if qiov is not None:
        acb.aio_iov, acb.aio_niov = qiov.iov, qiov.niov
    acb.aio_nbytes = nb_sectors * 512
    acb.aio_offset = sector_num * 512
    pool = aio_get_thread_pool(bdrv_get_aio_context(bs))
    return thread_pool_submit_aio(pool, aio_worker, acb, cb, opaque)


@tracepoint("qemu-block", args=("bs", "sector_num", "qiov", "nb_sectors", "cb", "opaque", "type"))
def raw_aio_submit(bs: BlockDriverState, sector_num: int, qiov: QEMUIOVector, nb_sectors: int,
                   cb: Callable[[Any, int], None], opaque: Any, type: int) -> Any:  # noqa: A002
    """With O_DIRECT QEMU checks buffer alignment or uses Linux AIO (aio=native); this disk uses the
    page cache, so it always goes to the thread pool."""
    s: BDRVRawState = bs.opaque
    if s is None or s.fd < 0:
        return None  # fd_open failed: bdrv_co_io_em turns this into -EIO
    return paio_submit(bs, s.fd, sector_num, qiov, nb_sectors, cb, opaque, type)


@tracepoint("qemu-block", args=("bs", "sector_num", "qiov", "nb_sectors", "cb", "opaque"))
def raw_aio_readv(bs: BlockDriverState, sector_num: int, qiov: QEMUIOVector, nb_sectors: int,
                  cb: Callable[[Any, int], None], opaque: Any) -> Any:
    return raw_aio_submit(bs, sector_num, qiov, nb_sectors, cb, opaque, QEMU_AIO_READ)


@tracepoint("qemu-block", args=("bs", "sector_num", "qiov", "nb_sectors", "cb", "opaque"))
def raw_aio_writev(bs: BlockDriverState, sector_num: int, qiov: QEMUIOVector, nb_sectors: int,
                   cb: Callable[[Any, int], None], opaque: Any) -> Any:
    return raw_aio_submit(bs, sector_num, qiov, nb_sectors, cb, opaque, QEMU_AIO_WRITE)


@tracepoint("qemu-block", args=("bs", "cb", "opaque"))
def raw_aio_flush(bs: BlockDriverState, cb: Callable[[Any, int], None], opaque: Any) -> Any:
    """A flush goes to the thread pool like a write: no sectors, type QEMU_AIO_FLUSH (fdatasync)."""
    s: BDRVRawState = bs.opaque
    if s is None or s.fd < 0:
        return None
    return paio_submit(bs, s.fd, 0, None, 0, cb, opaque, QEMU_AIO_FLUSH)


bdrv_file = BlockDriver(
    format_name="file",
    protocol_name="file",
    bdrv_file_open=raw_open,
    bdrv_close=raw_close,
    bdrv_getlength=raw_getlength,
    bdrv_aio_readv=raw_aio_readv,
    bdrv_aio_writev=raw_aio_writev,
    bdrv_aio_flush=raw_aio_flush,
)
