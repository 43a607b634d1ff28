"""util/iov.c + the QEMUIOVector part of util/iov.c / include/qemu-common.h (QEMU v1.6.1).

A `struct iovec` is (pointer, length). Python has no pointers, so an `iovec` here is a buffer object plus
an offset into it (`io_buffer + 512` becomes `iovec(io_buffer, 512, iov_offset=512)`); `mem()` gives the
bytes it points at, writable, so a real `pread` can land straight in the device's buffer.

A `QEMUIOVector` is a list of iovecs plus their total `size`. IDE PIO builds one with a single 512-byte
iovec over `s->io_buffer` (`qemu_iovec_init_external`, hw/ide/core.c:794).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...trace.tracepoint import tracepoint


@dataclass
class iovec:  # noqa: N801 - the C name
    """struct iovec: `iov_len` bytes of `iov_base` starting at `iov_offset`."""

    iov_base: Any  # a writable buffer: bytearray, mmap, memoryview
    iov_len: int
    iov_offset: int = 0  # model-only: the pointer's offset into iov_base

    def mem(self) -> memoryview:
        """The bytes this iovec points at (writable when the buffer is)."""
        mv = memoryview(self.iov_base).cast("B")
        if self.iov_offset < 0 or self.iov_offset + self.iov_len > len(mv):
            raise ValueError(f"iovec [{self.iov_offset}, +{self.iov_len}) lies outside its "
                             f"{len(mv)}-byte buffer")
        return mv[self.iov_offset:self.iov_offset + self.iov_len]

    def view(self, preview: int = 16) -> dict:
        return {"iov_len": self.iov_len, "iov_offset": self.iov_offset,
                "head": bytes(self.mem()[:preview]).hex()}


@dataclass
class QEMUIOVector:
    """QEMUIOVector: `niov` iovecs totalling `size` bytes. `nalloc` is -1 for an external array."""

    iov: list[iovec] = field(default_factory=list)
    niov: int = 0
    nalloc: int = 0
    size: int = 0

    def view(self) -> dict:
        return {"niov": self.niov, "size": self.size, "nalloc": self.nalloc,
                "iov": [v.view() for v in self.iov[:self.niov]]}


def qemu_iovec_init(qiov: QEMUIOVector, alloc_hint: int) -> None:
    """An empty vector that owns its iovec array (grown by qemu_iovec_add)."""
    qiov.iov, qiov.niov, qiov.nalloc, qiov.size = [], 0, alloc_hint, 0


def qemu_iovec_init_external(qiov: QEMUIOVector, iov: iovec | list[iovec], niov: int | None = None) -> None:
    """Wrap a caller-owned iovec array (IDE: one iovec over io_buffer). size = sum of the lengths."""
    vecs = [iov] if isinstance(iov, iovec) else list(iov)
    if niov is not None:
        vecs = vecs[:niov]
    qiov.iov, qiov.niov, qiov.nalloc = vecs, len(vecs), -1
    qiov.size = sum(v.iov_len for v in vecs)


def qemu_iovec_add(qiov: QEMUIOVector, base: Any, len: int, offset: int = 0) -> None:  # noqa: A002
    """Append one iovec (only to a vector made by qemu_iovec_init, as in QEMU)."""
    if qiov.nalloc == -1:
        raise ValueError("qemu_iovec_add on an external QEMUIOVector")
    qiov.iov.append(iovec(base, len, offset))
    qiov.niov += 1
    qiov.nalloc = max(qiov.nalloc, qiov.niov)
    qiov.size += len


def qemu_iovec_reset(qiov: QEMUIOVector) -> None:
    if qiov.nalloc == -1:
        raise ValueError("qemu_iovec_reset on an external QEMUIOVector")
    qiov.iov, qiov.niov, qiov.size = [], 0, 0


def iov_memset(iov: list[iovec], iov_cnt: int, offset: int, fillc: int, nbytes: int) -> int:
    """Fill `nbytes` bytes starting `offset` bytes into the vector with `fillc`; returns bytes filled."""
    done = 0
    for v in iov[:iov_cnt]:
        if nbytes - done <= 0:
            break
        if offset >= v.iov_len:
            offset -= v.iov_len
            continue
        n = min(v.iov_len - offset, nbytes - done)
        v.mem()[offset:offset + n] = bytes([fillc & 0xFF]) * n
        done += n
        offset = 0
    return done


def iov_to_buf(iov: list[iovec], iov_cnt: int, offset: int, nbytes: int) -> bytes:
    """Copy `nbytes` bytes out of the vector, starting `offset` bytes in."""
    out = bytearray()
    for v in iov[:iov_cnt]:
        if len(out) >= nbytes:
            break
        if offset >= v.iov_len:
            offset -= v.iov_len
            continue
        out += v.mem()[offset:offset + min(v.iov_len - offset, nbytes - len(out))]
        offset = 0
    return bytes(out)


def iov_from_buf(iov: list[iovec], iov_cnt: int, offset: int, buf: bytes) -> int:
    """Copy `buf` into the vector, starting `offset` bytes in; returns bytes copied."""
    done = 0
    for v in iov[:iov_cnt]:
        if done >= len(buf):
            break
        if offset >= v.iov_len:
            offset -= v.iov_len
            continue
        n = min(v.iov_len - offset, len(buf) - done)
        v.mem()[offset:offset + n] = buf[done:done + n]
        done += n
        offset = 0
    return done


def qemu_iovec_to_buf(qiov: QEMUIOVector, offset: int, nbytes: int) -> bytes:
    return iov_to_buf(qiov.iov, qiov.niov, offset, nbytes)


def qemu_iovec_from_buf(qiov: QEMUIOVector, offset: int, buf: bytes) -> int:
    return iov_from_buf(qiov.iov, qiov.niov, offset, buf)


@tracepoint("qemu-block", args=("dst", "src_iov", "src_cnt", "soffset", "sbytes"))
def qemu_iovec_concat_iov(dst: QEMUIOVector, src_iov: list[iovec], src_cnt: int, soffset: int,
                          sbytes: int) -> None:
    """Append to `dst` the pieces of `src_iov` covering `sbytes` bytes from `soffset` (no copying: the new
    iovecs point into the same buffers, as bdrv_aio_multiwrite's merged vectors do)."""
    done = 0
    for v in src_iov[:src_cnt]:
        if done >= sbytes:
            break
        if soffset < v.iov_len:
            length = min(v.iov_len - soffset, sbytes - done)
            qemu_iovec_add(dst, v.iov_base, length, v.iov_offset + soffset)
            soffset = 0
            done += length
        else:
            soffset -= v.iov_len


@tracepoint("qemu-block", args=("dst", "src", "soffset", "sbytes"))
def qemu_iovec_concat(dst: QEMUIOVector, src: QEMUIOVector, soffset: int, sbytes: int) -> None:
    qemu_iovec_concat_iov(dst, src.iov, src.niov, soffset, sbytes)
