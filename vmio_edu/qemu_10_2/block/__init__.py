"""block.c + include/block/block_int-common.h (QEMU v10.2.0): the block graph. (block.c is this package's
__init__ because block/ is also the directory of the drivers and of io.c / block-backend.c.)

`-hda disk.img` in QEMU 10.2 is a BlockBackend (the device's handle, block/block-backend.c) whose root
child is the *format* node (driver "raw", block/raw-format.c, found by probing the image), whose `file`
child is the *protocol* node (driver "file", block/file-posix.c, which owns the fd):

    BlockBackend --root--> BDS "raw" --file--> BDS "file" (fd)

Edges are `BdrvChild`ren. Requests are byte-based (offset, bytes) since QEMU 2.x; `bs->bl` holds each
node's limits (request_alignment is 1 for a file opened without O_DIRECT, so IDE's 512-byte requests are
never padded).
"""
from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from typing import Any, Callable

from ...errors import ImageError
from ...trace.tracepoint import tracepoint

BDRV_SECTOR_BITS = 9
BDRV_SECTOR_SIZE = 512
BLOCK_PROBE_BUF_SIZE = 512

# include/block/block-common.h open flags
BDRV_O_RDWR = 0x0002
BDRV_O_NOCACHE = 0x0020
BDRV_O_NO_FLUSH = 0x0200
BDRV_O_PROTOCOL = 0x8000

# BdrvRequestFlags
BDRV_REQ_COPY_ON_READ = 0x1
BDRV_REQ_ZERO_WRITE = 0x2
BDRV_REQ_MAY_UNMAP = 0x4
BDRV_REQ_FUA = 0x10
BDRV_REQ_WRITE_COMPRESSED = 0x20
BDRV_REQ_SERIALISING = 0x80
BDRV_REQ_NO_FALLBACK = 0x100
BDRV_REQ_REGISTERED_BUF = 0x1000

# enum BdrvTrackedRequestType
BDRV_TRACKED_READ, BDRV_TRACKED_WRITE, BDRV_TRACKED_DISCARD, BDRV_TRACKED_TRUNCATE = 0, 1, 2, 3
_TRACKED_NAMES = ("BDRV_TRACKED_READ", "BDRV_TRACKED_WRITE", "BDRV_TRACKED_DISCARD", "BDRV_TRACKED_TRUNCATE")


@dataclass
class BlockDriver:
    """A driver's name and entry points (None = not provided)."""

    format_name: str
    protocol_name: str | None = None
    bdrv_probe: Callable | None = None  # (buf, buf_size, filename) -> score
    bdrv_open: Callable | None = None  # (bs, flags) -> 0 / -errno; a protocol's opens bs->filename
    bdrv_close: Callable | None = None
    bdrv_co_getlength: Callable | None = None  # (bs) -> bytes
    bdrv_co_preadv: Callable | None = None  # coroutine_fn (bs, offset, bytes, qiov, flags)
    bdrv_co_pwritev: Callable | None = None
    is_filter: bool = False


@dataclass
class BlockLimits:
    request_alignment: int = 1
    max_transfer: int = 0  # 0: no limit


@dataclass
class BdrvChild:
    """An edge of the graph: the parent's handle on `bs` (blk->root, bs->file)."""

    name: str
    bs: "BlockDriverState"

    def view(self) -> dict:
        return {"name": self.name, "bs": self.bs.view()}


@dataclass
class BdrvTrackedRequest:
    """A request in flight on a node (io.c tracked_request_begin .. _end)."""

    bs: "BlockDriverState"
    offset: int
    bytes: int
    type: int
    co: Any = None

    def view(self) -> dict:
        return {"offset": self.offset, "bytes": self.bytes, "type": _TRACKED_NAMES[self.type],
                "co": getattr(self.co, "id", None)}


@dataclass(eq=False)
class BlockDriverState:
    """A node: its driver and driver state, its child, its size and the requests in flight."""

    filename: str
    drv: BlockDriver | None = None
    opaque: Any = None
    file: BdrvChild | None = None
    open_flags: int = 0
    read_only: bool = False
    total_sectors: int = 0
    bl: BlockLimits = field(default_factory=BlockLimits)
    supported_write_flags: int = 0
    probed: bool = False
    detect_zeroes: str = "off"
    copy_on_read: int = 0
    in_flight: int = 0
    write_gen: int = 0
    wr_highest_offset: int = 0
    tracked_requests: list[BdrvTrackedRequest] = field(default_factory=list)

    def view(self) -> dict:
        return {"filename": self.filename, "driver": self.drv.format_name if self.drv else None,
                "read_only": self.read_only, "total_sectors": self.total_sectors, "probed": self.probed,
                "request_alignment": self.bl.request_alignment, "in_flight": self.in_flight,
                "wr_highest_offset": self.wr_highest_offset, "write_gen": self.write_gen,
                "tracked_requests": [r.view() for r in self.tracked_requests],
                "fd": getattr(self.opaque, "fd", None),
                "file": self.file.bs.view() if self.file is not None else None}


BDRV_DRIVERS: list[BlockDriver] = []


def bdrv_register(bdrv: BlockDriver) -> None:
    """Add a driver to the list (10.2 has no AIO-emulation wrappers to fill in any more)."""
    BDRV_DRIVERS.append(bdrv)


def bdrv_find_format(name: str) -> BlockDriver | None:
    return next((d for d in BDRV_DRIVERS if d.format_name == name), None)


# Magic numbers of the image formats whose probes would claim an image (the model's probe knows these;
# raw's own probe always answers 1, the lowest score, so raw wins only when none of them matches).
_FORMAT_MAGICS = ((0, b"QFI\xfb", "qcow2"), (0, b"QED\x00", "qed"), (0, b"KDMV", "vmdk"), (0, b"COWD", "vmdk"),
                  (0, b"conectix", "vpc"), (0, b"vhdxfile", "vhdx"), (0, b"LUKS\xba\xbe", "luks"),
                  (0, b"Bochs Virtual HD Image", "bochs"), (0, b"WithoutFreeSpace", "parallels"),
                  (0, b"WithouFreSpacExt", "parallels"))


def bdrv_probe_all(buf: bytes, buf_size: int, filename: str | None) -> str:
    """The format whose probe scores `buf` highest: another format's magic, else "raw"."""
    for off, magic, name in _FORMAT_MAGICS:
        if buf[off:off + len(magic)] == magic:
            return name
    return "raw"


def _open_error(filename: str, flags: int, ret: int) -> str:
    how = "read-write" if flags & BDRV_O_RDWR else "read-only"
    why = os.strerror(-ret)
    if ret == -errno.EACCES and flags & BDRV_O_RDWR:
        why += " (the image is read-only; open it with readonly=True to only read it)"
    return f"could not open disk image {filename!r} {how}: {why}"


def bdrv_refresh_total_sectors(bs: BlockDriverState, hint: int) -> int:
    if bs.drv is not None and bs.drv.bdrv_co_getlength is not None:
        length = bs.drv.bdrv_co_getlength(bs)
        if length < 0:
            return length
        hint = (length + BDRV_SECTOR_SIZE - 1) >> BDRV_SECTOR_BITS  # DIV_ROUND_UP
    bs.total_sectors = hint
    return 0


@tracepoint("qemu-block", args=("filename", "flags"))
def bdrv_open(filename: str, flags: int) -> BlockDriverState:
    """Open `filename` as QEMU does for `-hda`: the protocol node ("file"), then probe its first sector
    for a format; a raw image gets the "raw" format node on top, marked `probed`. A missing, unreadable
    or read-only (for read-write) file, a directory, or an image in another format raises ImageError."""
    drv_file = bdrv_find_format("file")
    file_bs = BlockDriverState(filename, drv=drv_file, open_flags=flags | BDRV_O_PROTOCOL,
                               read_only=not flags & BDRV_O_RDWR)
    ret = drv_file.bdrv_open(file_bs, flags)
    if ret == 0:
        ret = bdrv_refresh_total_sectors(file_bs, 0)
    if ret < 0:
        bdrv_close(file_bs)
        raise ImageError(_open_error(filename, flags, ret))
    try:
        with open(filename, "rb") as f:
            head = f.read(BLOCK_PROBE_BUF_SIZE)
    except OSError as e:
        bdrv_close(file_bs)
        raise ImageError(f"cannot read disk image {filename!r}: {e.strerror}") from e
    fmt = bdrv_probe_all(head, len(head), filename)
    if fmt != "raw":
        bdrv_close(file_bs)
        raise ImageError(f"{filename!r} looks like a {fmt} image (its first bytes are {fmt}'s magic): QEMU "
                         f"would open it with the {fmt} driver, which this model does not have; give a raw image")
    bs = BlockDriverState(filename, drv=bdrv_find_format("raw"), open_flags=flags, read_only=file_bs.read_only,
                          probed=True)
    bs.file = BdrvChild("file", file_bs)
    ret = bs.drv.bdrv_open(bs, flags)
    if ret == 0:
        ret = bdrv_refresh_total_sectors(bs, file_bs.total_sectors)
    if ret < 0:
        bdrv_close(bs)
        raise ImageError(_open_error(filename, flags, ret))
    return bs


def bdrv_close(bs: BlockDriverState) -> None:
    """Close the node and its file child (closes the fd). Safe to call twice."""
    if bs.drv is not None:
        if bs.drv.bdrv_close is not None:
            bs.drv.bdrv_close(bs)
        bs.drv = None
    if bs.file is not None:
        bdrv_close(bs.file.bs)
        bs.file = None
    bs.total_sectors = 0


def bdrv_is_inserted(bs: BlockDriverState) -> bool:
    """bdrv_co_is_inserted: a node with a driver, whose children are inserted too."""
    if bs.drv is None:
        return False
    return bs.file is None or bdrv_is_inserted(bs.file.bs)


def bdrv_getlength(bs: BlockDriverState) -> int:
    if bs.drv is None:
        return -errno.ENOMEDIUM
    return bs.total_sectors * BDRV_SECTOR_SIZE


def bdrv_nb_sectors(bs: BlockDriverState) -> int:
    if bs.drv is None:
        return -errno.ENOMEDIUM
    return bs.total_sectors


# The drivers register themselves (block_init); they import the definitions above.
from .file_posix import bdrv_file  # noqa: E402
from .raw_format import bdrv_raw  # noqa: E402

bdrv_register(bdrv_file)
bdrv_register(bdrv_raw)
