"""hw/ide/core.c (QEMU v10.2.0): the ATA disk in PIO mode, as the guest's driver sees it.

The state machine is 1.6.1's; the names and a few steps changed. A WRITE SECTORS of one sector:

    ide_ioport_write(0x1f7, 0x30) → ide_bus_exec_cmd → cmd_write_pio → ide_transfer_start   status 0x58
    256 × ide_data_writew(0x1f0, word); the 256th clears DRQ and calls ide_sector_write    status 0xD0
      → blk_aio_pwritev(s->blk, sector_num << 9, &s->qiov, 0, ide_sector_write_cb, s)
    ... later, on the main loop, out of the coroutine: blk_aio_complete → ide_sector_write_cb
      → ide_transfer_stop (→ ide_cmd_done) or the next window, ide_bus_set_irq              status 0x50

What a reader of 1.6.1 notices: the block call is byte-based (`blk_aio_pwritev`, `blk_aio_preadv`
through `ide_buffered_readv`'s bounce buffer); `ide_set_irq` is `ide_bus_set_irq`; `ide_exec_cmd` is
`ide_bus_exec_cmd` and a command write first lowers the IRQ; the data port clears DRQ *before* calling
end_transfer_func and refuses to run past the window; `ide_transfer_start` also records where to retry
(`ide_set_retry`); aborting a command closes the PIO window; the range of a request is checked
(`ide_sect_range_ok`) before it is sent; the HOB bit lives in the device-control register; an SRST is
finished by a bottom half. Functions whose code did not change are 1.6.1's, shared with `unchanged`.
PIO only (no DMA, ATAPI or CF-ATA), and the command table holds the commands of 1.6.1's model.
"""
from __future__ import annotations

import errno
import os

from ....qemu.hw.ide import core as _c161
from ....errors import ImageError
# helpers: padstr's C text is the same at both tags; put_le16 is a byte store; IDEModelError is the model's
from ....qemu.hw.ide.core import IDEModelError, padstr, put_le16  # noqa: F401
from ....trace.stacks import unchanged
from ....trace.tracepoint import emit, tracepoint
from ...block.block_backend import (BLOCK_ACCT_READ, BLOCK_ACCT_WRITE, BLOCK_ERROR_ACTION_IGNORE,
                                    BLOCK_ERROR_ACTION_REPORT, BLOCK_ERROR_ACTION_STOP, BlockAcctCookie,
                                    blk_aio_cancel, blk_aio_preadv, blk_aio_pwritev, blk_enable_write_cache,
                                    blk_error_action, blk_get_error_action, blk_get_geometry, blk_get_stats,
                                    block_acct_done, block_acct_failed, block_acct_invalid, block_acct_start)
from ...system.ioport import MemoryRegionPortio
from ...util.async_ import aio_bh_schedule_oneshot
from ...util.iov import QEMUIOVector, qemu_iovec_from_buf, qemu_iovec_init_buf
from ...util.main_loop import qemu_get_aio_context
from ..core.irq import qemu_irq_lower, qemu_irq_raise
from .internal import (ABRT_ERR, ATA_DEV_ALWAYS_ON, ATA_DEV_HS, ATA_DEV_LBA, ATA_DEV_LBA_MSB, ATA_DEV_SELECT,
                       BUSY_STAT, DRQ_STAT, ERR_STAT, IDE_CD, IDE_CFATA, IDE_CTRL_DISABLE_IRQ, IDE_CTRL_HOB,
                       IDE_CTRL_RESET, IDE_HD, IDE_RETRY_PIO, IDE_RETRY_READ, MAX_MULT_SECTORS, READY_STAT,
                       SEEK_STAT, WIN_DEVICE_RESET, WIN_IDENTIFY, WIN_READ, WIN_READ_EXT, WIN_READ_ONCE,
                       WIN_WRITE, WIN_WRITE_EXT, WIN_WRITE_ONCE, IDEBus, IDEDevice, IDEState, ide_bus_active_if)

BDRV_SECTOR_BITS = 9
BDRV_SECTOR_SIZE = 512
QEMU_HW_VERSION = "2.5+"  # include/qemu/hw-version.h: what qemu_hw_version() gives IDENTIFY
MAX_BUFFERED_REQS = 16
_GH = "https://github.com/qemu/qemu/blob"


# =====================================================================================================
# IDENTIFY DEVICE
# =====================================================================================================
@tracepoint("qemu-ide", args=("s",))
def ide_identify_size(s: IDEState) -> None:
    """Words 60-61 (LBA28 capacity, capped at 2^28-1) and 100-103 (LBA48 capacity) of identify_data."""
    p = s.identify_data
    lba28 = min(s.nb_sectors, (1 << 28) - 1)
    put_le16(p, 60, lba28)
    put_le16(p, 61, lba28 >> 16)
    for i, w in enumerate((100, 101, 102, 103)):
        put_le16(p, w, s.nb_sectors >> (16 * i))


@tracepoint("qemu-ide", args=("s",))
def ide_identify(s: IDEState) -> None:
    """Build the 256 IDENTIFY words in identify_data once (10.2 keeps them there and takes the capacity
    words from ide_identify_size), then copy them to io_buffer."""
    dev = s.bus.slave if s.unit else s.bus.master
    p = s.identify_data
    if not s.identify_set:
        p[0:512] = bytes(512)
        put_le16(p, 0, 0x0040)
        put_le16(p, 1, s.cylinders)
        put_le16(p, 3, s.heads)
        put_le16(p, 4, 512 * s.sectors)
        put_le16(p, 5, 512)
        put_le16(p, 6, s.sectors)
        padstr(p, 10 * 2, s.drive_serial_str, 20)
        put_le16(p, 20, 3)
        put_le16(p, 21, 512)
        put_le16(p, 22, 4)
        padstr(p, 23 * 2, s.version, 8)
        padstr(p, 27 * 2, s.drive_model_str, 40)
        put_le16(p, 47, 0x8000 | MAX_MULT_SECTORS)
        put_le16(p, 48, 1)
        put_le16(p, 49, (1 << 11) | (1 << 9) | (1 << 8))
        put_le16(p, 51, 0x200)
        put_le16(p, 52, 0x200)
        put_le16(p, 53, 1 | (1 << 1) | (1 << 2))
        put_le16(p, 54, s.cylinders)
        put_le16(p, 55, s.heads)
        put_le16(p, 56, s.sectors)
        oldsize = s.cylinders * s.heads * s.sectors
        put_le16(p, 57, oldsize)
        put_le16(p, 58, oldsize >> 16)
        if s.mult_sectors:
            put_le16(p, 59, 0x100 | s.mult_sectors)
        put_le16(p, 62, 0x07)
        put_le16(p, 63, 0x07)
        put_le16(p, 64, 0x03)
        for w in (65, 66, 67, 68):
            put_le16(p, w, 120)
        if dev is not None and dev.conf.discard_granularity:
            put_le16(p, 69, 1 << 14)
        put_le16(p, 80, 0xF0)
        put_le16(p, 81, 0x16)
        put_le16(p, 82, (1 << 14) | (1 << 5) | 1)
        put_le16(p, 83, (1 << 14) | (1 << 13) | (1 << 12) | (1 << 10))
        put_le16(p, 84, (1 << 14) | (1 << 8) if s.wwn else (1 << 14))
        put_le16(p, 85, (1 << 14) | (1 << 5) | 1 if blk_enable_write_cache(s.blk) else (1 << 14) | 1)
        put_le16(p, 86, (1 << 13) | (1 << 12) | (1 << 10))
        put_le16(p, 87, (1 << 14) | (1 << 8) if s.wwn else (1 << 14))
        put_le16(p, 88, 0x3F | (1 << 13))
        put_le16(p, 93, 1 | (1 << 14) | 0x2000)
        if dev is not None and dev.conf.physical_block_size:
            exp, size = 0, dev.conf.physical_block_size
            while size > dev.conf.logical_block_size:
                exp, size = exp + 1, size >> 1
            put_le16(p, 106, 0x6000 | exp)
        if s.wwn:
            for i, w in enumerate((108, 109, 110, 111)):
                put_le16(p, w, s.wwn >> (48 - 16 * i))
        if dev is not None and dev.conf.discard_granularity:
            put_le16(p, 169, 1)
        if dev is not None:
            put_le16(p, 217, getattr(dev, "rotation_rate", 0))  # nominal media rotation rate
        ide_identify_size(s)
        s.identify_set = 1
    s.io_buffer[0:512] = p[0:512]


@tracepoint("qemu-ide", args=("s",))
def ide_set_signature(s: IDEState) -> None:
    """The device signature in the task file: 1/1/0/0 for a disk, 0xff/0xff for an empty slot."""
    s.select &= ~ATA_DEV_HS
    s.nsector = 1
    s.sector = 1
    if s.drive_kind == IDE_CD:
        s.lcyl, s.hcyl = 0x14, 0xEB
    elif s.blk is not None:
        s.lcyl, s.hcyl = 0, 0
    else:
        s.lcyl, s.hcyl = 0xFF, 0xFF


def ide_sect_range_ok(s: IDEState, sector: int, nb_sectors: int) -> bool:
    """Is [sector, sector + nb_sectors) inside the disk? (static, inlined into its callers)"""
    total_sectors = blk_get_geometry(s.blk)
    return not (sector > total_sectors or nb_sectors > total_sectors - sector)


# =====================================================================================================
# PIO windows and the task-file address
# =====================================================================================================
@tracepoint("qemu-ide", args=("s",))
def ide_abort_command(s: IDEState) -> None:
    """Fail the command: DRDY|ERR (0x41), ABRT, and (new since 1.6.1) close any PIO window."""
    s.status = READY_STAT | ERR_STAT
    s.error = ABRT_ERR
    ide_transfer_stop(s)


@tracepoint("qemu-ide", args=("s",))
def ide_set_retry(s: IDEState) -> None:
    """Remember which drive, sector and count to retry after a werror/rerror stop (static)."""
    s.bus.retry_unit = s.unit
    s.bus.retry_sector_num = ide_get_sector(s)
    s.bus.retry_nsector = s.nsector


@tracepoint("qemu-ide", args=("s", "buf", "size", "end_transfer_func"))
def ide_transfer_start_norecurse(s: IDEState, buf, size: int, end_transfer_func) -> bool:
    """Open a PIO window of `size` bytes at `buf` and set DRQ. True if a DMA provider's pio_transfer hook
    moved the data at once (AHCI); BMDMA has none, so for PIIX this returns False."""
    start = 0 if buf is s.io_buffer else int(buf)
    s.data_ptr = start
    s.data_end = start + size
    ide_set_retry(s)
    if not (s.status & ERR_STAT):
        s.status |= DRQ_STAT
    pio_transfer = getattr(s.bus.dma.ops, "pio_transfer", None)
    if pio_transfer is None:
        s.end_transfer_func = end_transfer_func
        return False
    pio_transfer(s.bus.dma)
    return True


@tracepoint("qemu-ide", args=("s", "buf", "size", "end_transfer_func"))
def ide_transfer_start(s: IDEState, buf, size: int, end_transfer_func) -> None:
    """Open the window; the guest moves the data with insw/outsw and end_transfer_func runs at its end."""
    if ide_transfer_start_norecurse(s, buf, size, end_transfer_func):
        end_transfer_func(s)


@tracepoint("qemu-ide", args=("s",))
def ide_cmd_done(s: IDEState) -> None:
    """Tell the DMA provider the command is over (BMDMA has no cmd_done hook)."""
    cmd_done = getattr(s.bus.dma.ops, "cmd_done", None)
    if cmd_done is not None:
        cmd_done(s.bus.dma)


def ide_transfer_halt(s: IDEState) -> None:
    """Close the window without finishing the command (static, inlined)."""
    s.end_transfer_func = ide_transfer_stop
    s.data_ptr = 0
    s.data_end = 0
    s.status &= ~DRQ_STAT


@tracepoint("qemu-ide", args=("s",))
def ide_transfer_stop(s: IDEState) -> None:
    """Close the window (DRQ off) and end the command."""
    ide_transfer_halt(s)
    ide_cmd_done(s)


def _sector_from_regs(s: IDEState) -> int:
    if s.select & ATA_DEV_LBA:
        if s.lba48:
            return (s.hob_hcyl << 40) | (s.hob_lcyl << 32) | (s.hob_sector << 24) | \
                (s.hcyl << 16) | (s.lcyl << 8) | s.sector
        return ((s.select & ATA_DEV_LBA_MSB) << 24) | (s.hcyl << 16) | (s.lcyl << 8) | s.sector
    return ((s.hcyl << 8) | s.lcyl) * s.heads * s.sectors + (s.select & ATA_DEV_HS) * s.sectors + (s.sector - 1)


@tracepoint("qemu-ide", args=("s",))
def ide_get_sector(s: IDEState) -> int:
    """The sector the task file points at: LBA48, LBA28 or CHS (10.2 tests LBA48 first)."""
    return _sector_from_regs(s)


@tracepoint("qemu-ide", args=("s", "sector_num"))
def ide_set_sector(s: IDEState, sector_num: int) -> None:
    """Write a sector number back into the task file (LBA28 keeps only bits 27:24 in the device register)."""
    if s.select & ATA_DEV_LBA:
        if s.lba48:
            s.sector = sector_num & 0xFF
            s.lcyl = (sector_num >> 8) & 0xFF
            s.hcyl = (sector_num >> 16) & 0xFF
            s.hob_sector = (sector_num >> 24) & 0xFF
            s.hob_lcyl = (sector_num >> 32) & 0xFF
            s.hob_hcyl = (sector_num >> 40) & 0xFF
        else:
            s.select = (s.select & ~ATA_DEV_LBA_MSB) | ((sector_num >> 24) & ATA_DEV_LBA_MSB)
            s.hcyl = (sector_num >> 16) & 0xFF
            s.lcyl = (sector_num >> 8) & 0xFF
            s.sector = sector_num & 0xFF
    else:
        cyl, r = divmod(sector_num, s.heads * s.sectors)
        s.hcyl = (cyl >> 8) & 0xFF
        s.lcyl = cyl & 0xFF
        s.select = (s.select & ~ATA_DEV_HS) | ((r // s.sectors) & ATA_DEV_HS)
        s.sector = (r % s.sectors) + 1


# Unchanged since 1.6.1 (the C bodies are the same text):
#   https://github.com/qemu/qemu/blob/v1.6.1/hw/ide/core.c#L918 and
#   https://github.com/qemu/qemu/blob/v10.2.0/hw/ide/core.c#L1225
ide_cmd_lba48_transform = unchanged(_c161.ide_cmd_lba48_transform, globals(), layer="qemu-ide",
                                    args=("s", "lba48"))


# =====================================================================================================
# Errors from the block layer
# =====================================================================================================
@tracepoint("qemu-ide", args=("s",))
def ide_rw_error(s: IDEState) -> None:
    """Report an I/O error to the guest: ABRT, then the IRQ."""
    ide_abort_command(s)
    ide_bus_set_irq(s.bus)


@tracepoint("qemu-ide", args=("s", "error", "op"))
def ide_handle_rw_error(s: IDEState, error: int, op: int) -> bool:
    """Apply the drive's rerror/werror policy; True if the caller must stop (stop, report) here."""
    is_read = bool(op & IDE_RETRY_READ)
    action = blk_get_error_action(s.blk, is_read, error)
    s.last_io_error = {"errno": error, "name": errno.errorcode.get(error, str(error)),
                       "message": os.strerror(error), "operation": "read" if is_read else "write",
                       "sector_num": _sector_from_regs(s), "action": action}
    if action == BLOCK_ERROR_ACTION_STOP:
        s.bus.error_status = op
    elif action == BLOCK_ERROR_ACTION_REPORT:
        block_acct_failed(blk_get_stats(s.blk), s.acct)
        s.abort_reason = f"I/O error {s.last_io_error['name']} ({s.last_io_error['message']}) on the " \
                         f"{s.last_io_error['operation']} of sector {s.last_io_error['sector_num']}"
        ide_rw_error(s)
    blk_error_action(s.blk, action, is_read, error)
    return action != BLOCK_ERROR_ACTION_IGNORE


# =====================================================================================================
# READ SECTORS: a bounce buffer per request
# =====================================================================================================
class IDEBufferedRequest:
    """hw/ide/ide-internal.h: a read into a buffer of its own, copied to the drive's qiov when done."""

    def __init__(self, original_qiov: QEMUIOVector, original_cb, original_opaque) -> None:
        self.original_qiov = original_qiov
        self.original_cb = original_cb
        self.original_opaque = original_opaque
        self.qiov = QEMUIOVector()
        self.orphaned = False

    def view(self) -> dict:
        return {"bytes": self.qiov.size, "orphaned": self.orphaned,
                "cb": getattr(self.original_cb, "__name__", None)}


@tracepoint("qemu-ide", args=("opaque=req", "ret"))
def ide_buffered_readv_cb(req: IDEBufferedRequest, ret: int) -> None:
    """The read finished: copy the bounce buffer into the drive's qiov (unless cancelled), call the
    drive's callback, free the request."""
    if not req.orphaned:
        if not ret:
            qemu_iovec_from_buf(req.original_qiov, 0, req.qiov.iov[0].mem(), req.original_qiov.size)
        req.original_cb(req.original_opaque, ret)
    s = req.original_opaque
    if req in s.buffered_requests:
        s.buffered_requests.remove(req)


@tracepoint("qemu-ide", args=("s", "sector_num", "iov", "nb_sectors", "cb", "opaque"))
def ide_buffered_readv(s: IDEState, sector_num: int, iov: QEMUIOVector, nb_sectors: int, cb, opaque):
    """Read into a fresh buffer (so a cancelled request can never write into io_buffer later):
    blk_aio_preadv(s->blk, sector_num << 9, &req->qiov, 0, ide_buffered_readv_cb, req)."""
    if len(s.buffered_requests) > MAX_BUFFERED_REQS:
        raise IDEModelError("more than 16 buffered IDE reads in flight (blk_abort_aio_request: not modelled)")
    req = IDEBufferedRequest(iov, cb, opaque)
    qemu_iovec_init_buf(req.qiov, bytearray(iov.size), iov.size)  # blk_blockalign: a new buffer
    aioreq = blk_aio_preadv(s.blk, sector_num << BDRV_SECTOR_BITS, req.qiov, 0, ide_buffered_readv_cb, req)
    s.buffered_requests.insert(0, req)
    return aioreq


def _pio_qiov(s: IDEState, n: int, sector_num: int) -> None:
    # qemu_iovec_init_buf(&s->qiov, s->io_buffer, n * 512): one element over io_buffer
    s.qiov = QEMUIOVector()
    qemu_iovec_init_buf(s.qiov, s.io_buffer, n * BDRV_SECTOR_SIZE)
    s.iov = s.qiov.iov[0]
    emit("ide_pio_qiov", "qemu-ide", sector_num=sector_num, nb_sectors=n, iov=0,
         io_buffer_offset=s.iov.iov_offset, iov_len=s.iov.iov_len)  # (for byte provenance)


@tracepoint("qemu-ide", args=("opaque", "ret"))
def ide_sector_read_cb(opaque: IDEState, ret: int) -> None:
    """A sector read finished: BSY off, move the LBA registers on, open the window (DRQ), raise the IRQ.
    (10.2 moves the registers before opening the window; 1.6.1 after.)"""
    s = opaque
    s.pio_aiocb = None
    s.status &= ~BUSY_STAT
    if ret != 0:
        if ide_handle_rw_error(s, -ret, IDE_RETRY_PIO | IDE_RETRY_READ):
            return
    block_acct_done(blk_get_stats(s.blk), s.acct)
    n = min(s.nsector, s.req_nb_sectors)
    ide_set_sector(s, ide_get_sector(s) + n)
    s.nsector -= n
    ide_transfer_start(s, s.io_buffer, n * BDRV_SECTOR_SIZE, ide_sector_read)
    ide_bus_set_irq(s.bus)


@tracepoint("qemu-ide", args=("s",))
def ide_sector_read(s: IDEState) -> None:
    """Start reading the next block (BSY), or with nothing left close the window."""
    s.status = READY_STAT | SEEK_STAT
    s.error = 0
    sector_num = ide_get_sector(s)
    n = s.nsector
    if n == 0:
        ide_transfer_stop(s)
        return
    s.status |= BUSY_STAT
    n = min(n, s.req_nb_sectors)
    if not ide_sect_range_ok(s, sector_num, n):
        s.abort_reason = f"sector {sector_num} + {n} is past the end of the disk (ide_sect_range_ok)"
        ide_rw_error(s)
        block_acct_invalid(blk_get_stats(s.blk), BLOCK_ACCT_READ)
        return
    _pio_qiov(s, n, sector_num)
    s.acct = BlockAcctCookie()
    block_acct_start(blk_get_stats(s.blk), s.acct, n * BDRV_SECTOR_SIZE, BLOCK_ACCT_READ)
    s.pio_aiocb = ide_buffered_readv(s, sector_num, s.qiov, n, ide_sector_read_cb, s)


# =====================================================================================================
# WRITE SECTORS
# =====================================================================================================
@tracepoint("qemu-ide", args=("opaque", "ret"))
def ide_sector_write_cb(opaque: IDEState, ret: int) -> None:
    """A sector write finished (main loop, out of the coroutine): count it off, move the registers on,
    open the next window or end the command, raise the IRQ."""
    s = opaque
    s.pio_aiocb = None
    s.status &= ~BUSY_STAT
    if ret != 0:
        if ide_handle_rw_error(s, -ret, IDE_RETRY_PIO):
            return
    block_acct_done(blk_get_stats(s.blk), s.acct)
    n = min(s.nsector, s.req_nb_sectors)
    s.nsector -= n
    ide_set_sector(s, ide_get_sector(s) + n)
    if s.nsector == 0:
        ide_transfer_stop(s)  # no more sectors to write
    else:
        n1 = min(s.nsector, s.req_nb_sectors)
        ide_transfer_start(s, s.io_buffer, n1 * BDRV_SECTOR_SIZE, ide_sector_write)
    # (-win2k-hack would delay the IRQ by a timer; it is off by default)
    ide_bus_set_irq(s.bus)


@tracepoint("qemu-ide", args=("s",))
def ide_sector_write(s: IDEState) -> None:
    """The guest filled the window: BSY, check the range, and hand io_buffer to the BlockBackend as
    bytes: blk_aio_pwritev(s->blk, sector_num << 9, &s->qiov, 0, ide_sector_write_cb, s)."""
    s.status = READY_STAT | SEEK_STAT | BUSY_STAT
    sector_num = ide_get_sector(s)
    n = min(s.nsector, s.req_nb_sectors)
    if not ide_sect_range_ok(s, sector_num, n):
        s.abort_reason = f"sector {sector_num} + {n} is past the end of the disk (ide_sect_range_ok)"
        ide_rw_error(s)
        block_acct_invalid(blk_get_stats(s.blk), BLOCK_ACCT_WRITE)
        return
    _pio_qiov(s, n, sector_num)
    s.acct = BlockAcctCookie()
    block_acct_start(blk_get_stats(s.blk), s.acct, n * BDRV_SECTOR_SIZE, BLOCK_ACCT_WRITE)
    s.pio_aiocb = blk_aio_pwritev(s.blk, sector_num << BDRV_SECTOR_BITS, s.qiov, 0, ide_sector_write_cb, s)


# =====================================================================================================
# Commands
# =====================================================================================================
# Unchanged since 1.6.1: https://github.com/qemu/qemu/blob/v1.6.1/hw/ide/core.c#L1016 and
# https://github.com/qemu/qemu/blob/v10.2.0/hw/ide/core.c#L1409 (the same text)
cmd_nop = unchanged(_c161.cmd_nop, globals(), layer="qemu-ide", args=("s", "cmd"))


@tracepoint("qemu-ide", args=("s", "cmd"))
def cmd_identify(s: IDEState, cmd: int) -> bool:
    """IDENTIFY DEVICE: the 256 words, a read window (0x58), the IRQ at once."""
    if s.blk is not None and s.drive_kind != IDE_CD:
        if s.drive_kind == IDE_CFATA:  # pragma: no cover - CF-ATA is not modelled
            raise IDEModelError("CF-ATA IDENTIFY is not modelled")
        ide_identify(s)
        s.status = READY_STAT | SEEK_STAT
        ide_transfer_start(s, s.io_buffer, 512, ide_transfer_stop)
        ide_bus_set_irq(s.bus)
        return False
    if s.drive_kind == IDE_CD:
        ide_set_signature(s)
    s.abort_reason = "IDENTIFY DEVICE on a drive without a disk"
    ide_abort_command(s)
    return True


@tracepoint("qemu-ide", args=("s", "cmd"))
def cmd_read_pio(s: IDEState, cmd: int) -> bool:
    """READ SECTORS (EXT): one sector per DRQ block; the first read starts now."""
    lba48 = int(cmd == WIN_READ_EXT)
    if s.drive_kind == IDE_CD:  # pragma: no cover - ATAPI is not modelled
        ide_set_signature(s)
        ide_abort_command(s)
        return True
    if s.blk is None:
        s.abort_reason = "READ SECTORS on a drive without a disk"
        ide_abort_command(s)
        return True
    ide_cmd_lba48_transform(s, lba48)
    s.req_nb_sectors = 1
    ide_sector_read(s)
    return False


@tracepoint("qemu-ide", args=("s", "cmd"))
def cmd_write_pio(s: IDEState, cmd: int) -> bool:
    """WRITE SECTORS (EXT): open the first 512-byte window (0x58); no IRQ before the first block."""
    lba48 = int(cmd == WIN_WRITE_EXT)
    if s.blk is None:
        s.abort_reason = "WRITE SECTORS on a drive without a disk"
        ide_abort_command(s)
        return True
    ide_cmd_lba48_transform(s, lba48)
    s.req_nb_sectors = 1
    s.status = SEEK_STAT | READY_STAT
    ide_transfer_start(s, s.io_buffer, 512, ide_sector_write)
    s.media_changed = 1
    return False


@tracepoint("qemu-ide", args=("s", "cmd"))
def cmd_specify(s: IDEState, cmd: int) -> bool:
    """INITIALIZE DEVICE PARAMETERS: take the CHS geometry (heads from the device register, sectors per
    track from the count) and raise the IRQ; 1.6.1 ignored the command (cmd_nop)."""
    if s.blk is not None and s.drive_kind != IDE_CD:
        s.heads = (s.select & ATA_DEV_HS) + 1
        s.sectors = s.nsector
        ide_bus_set_irq(s.bus)
    else:
        ide_abort_command(s)
    return True


HD_OK, CD_OK, CFA_OK = 1 << IDE_HD, 1 << IDE_CD, 1 << IDE_CFATA
HD_CFA_OK = HD_OK | CFA_OK
ALL_OK = HD_OK | CD_OK | CFA_OK
SET_DSC = 1 << 8

# opcode -> (handler, flags): the entries of 10.2's table (hw/ide/core.c:2086) that this model runs, with
# 10.2's flags (the power-state commands are HD_CFA_OK there, where 1.6.1 had ALL_OK); any other opcode is
# aborted as an unknown one.
ide_cmd_table: dict[int, tuple] = {
    0x10: (cmd_nop, HD_CFA_OK | SET_DSC),  # WIN_RECAL
    WIN_READ: (cmd_read_pio, ALL_OK),
    WIN_READ_ONCE: (cmd_read_pio, HD_CFA_OK),
    WIN_READ_EXT: (cmd_read_pio, HD_CFA_OK),
    WIN_WRITE: (cmd_write_pio, HD_CFA_OK),
    WIN_WRITE_ONCE: (cmd_write_pio, HD_CFA_OK),
    WIN_WRITE_EXT: (cmd_write_pio, HD_CFA_OK),
    0x91: (cmd_specify, HD_CFA_OK | SET_DSC),  # WIN_SPECIFY
    # WIN_STANDBYNOW2, WIN_IDLEIMMEDIATE2, WIN_STANDBY2, WIN_SETIDLE2, WIN_SLEEPNOW2
    0x94: (cmd_nop, HD_CFA_OK), 0x95: (cmd_nop, HD_CFA_OK), 0x96: (cmd_nop, HD_CFA_OK),
    0x97: (cmd_nop, HD_CFA_OK), 0x99: (cmd_nop, HD_CFA_OK),
    # WIN_STANDBYNOW1, WIN_IDLEIMMEDIATE, WIN_STANDBY, WIN_SETIDLE1, WIN_SLEEPNOW1
    0xE0: (cmd_nop, HD_CFA_OK), 0xE1: (cmd_nop, HD_CFA_OK), 0xE2: (cmd_nop, HD_CFA_OK),
    0xE3: (cmd_nop, HD_CFA_OK), 0xE6: (cmd_nop, HD_CFA_OK),
    WIN_IDENTIFY: (cmd_identify, ALL_OK),
}


def ide_cmd_permitted(s: IDEState, cmd: int) -> bool:
    entry = ide_cmd_table.get(cmd)
    return entry is not None and bool(entry[1] & (1 << s.drive_kind))


@tracepoint("qemu-ide", args=("bus", "val"))
def ide_bus_exec_cmd(bus: IDEBus, val: int) -> None:
    """Run the command byte on the selected drive (1.6.1's ide_exec_cmd). While BSY/DRQ only DEVICE RESET
    to an ATAPI drive gets through; an unsupported opcode is aborted with the IRQ."""
    s = ide_bus_active_if(bus)
    if s is not bus.ifs[0] and s.blk is None:  # ignore commands to a non-existent slave
        return
    if s.status & (BUSY_STAT | DRQ_STAT):
        if val != WIN_DEVICE_RESET or s.drive_kind != IDE_CD:
            return
    s.command = val
    s.abort_reason = None
    if not ide_cmd_permitted(s, val):
        s.abort_reason = f"opcode 0x{val:02x} is not in this model's ATA command table"
        ide_abort_command(s)
        ide_bus_set_irq(s.bus)
        return
    s.status = READY_STAT | BUSY_STAT
    s.error = 0
    s.io_buffer_offset = 0
    handler, flags = ide_cmd_table[val]
    complete = handler(s, val)
    if complete:
        s.status &= ~BUSY_STAT
        if bool(s.error) != bool(s.status & ERR_STAT):
            raise IDEModelError(f"command 0x{val:02x} finished with error {s.error:#x} but status {s.status:#x}")
        if (flags & SET_DSC) and not s.error:
            s.status |= SEEK_STAT
        ide_cmd_done(s)
        ide_bus_set_irq(s.bus)


# =====================================================================================================
# Port handlers (opaque = the IDEBus)
# =====================================================================================================
@tracepoint("qemu-ide", args=("bus",))
def ide_clear_hob(bus: IDEBus) -> None:
    """Any task-file write clears HOB, now bit 7 of the device-control register."""
    bus.cmd &= ~IDE_CTRL_HOB


@tracepoint("qemu-ide", args=("opaque", "addr", "val"))
def ide_ioport_write(opaque: IDEBus, addr: int, val: int) -> None:
    """A byte written to 0x1f0-0x1f7: registers 1-5 go to both drives (the old value to hob_*), 6 selects
    the drive, 7 lowers the IRQ and runs the command. Ignored (but 7) while the drive is BSY or DRQ."""
    bus = opaque
    s = ide_bus_active_if(bus)
    reg_num = addr & 7
    val &= 0xFF
    if reg_num != 7 and (s.status & (BUSY_STAT | DRQ_STAT)):
        return
    a, b = bus.ifs
    if reg_num == 0:
        pass
    elif reg_num == 1:
        ide_clear_hob(bus)
        a.hob_feature, b.hob_feature = a.feature, b.feature
        a.feature = b.feature = val
    elif reg_num == 2:
        ide_clear_hob(bus)
        a.hob_nsector, b.hob_nsector = a.nsector & 0xFF, b.nsector & 0xFF
        a.nsector = b.nsector = val
    elif reg_num == 3:
        ide_clear_hob(bus)
        a.hob_sector, b.hob_sector = a.sector, b.sector
        a.sector = b.sector = val
    elif reg_num == 4:
        ide_clear_hob(bus)
        a.hob_lcyl, b.hob_lcyl = a.lcyl, b.lcyl
        a.lcyl = b.lcyl = val
    elif reg_num == 5:
        ide_clear_hob(bus)
        a.hob_hcyl, b.hob_hcyl = a.hcyl, b.hcyl
        a.hcyl = b.hcyl = val
    elif reg_num == 6:
        ide_clear_hob(bus)
        a.select = b.select = val | ATA_DEV_ALWAYS_ON
        bus.unit = 1 if val & ATA_DEV_SELECT else 0
    else:
        ide_clear_hob(bus)
        qemu_irq_lower(bus.irq)
        ide_bus_exec_cmd(bus, val)


@tracepoint("qemu-ide", args=("opaque", "addr"))
def ide_ioport_read(opaque: IDEBus, addr: int) -> int:
    """A byte read of 0x1f0-0x1f7. The status register (7) also lowers the IRQ (the guest's acknowledge).
    A byte read of the data port now consumes a data word (for the pre-GRUB Solaris loader)."""
    bus = opaque
    s = ide_bus_active_if(bus)
    reg_num = addr & 7
    hob = bus.cmd & IDE_CTRL_HOB
    no_drives = bus.ifs[0].blk is None and bus.ifs[1].blk is None
    absent = s is not bus.ifs[0] and s.blk is None
    if reg_num == 0:
        ret = ide_data_readw(bus, addr) & 0xFF
    elif reg_num == 1:
        ret = 0 if (no_drives or absent) else (s.hob_feature if hob else s.error)
    elif reg_num == 2:
        ret = 0 if no_drives else (s.hob_nsector if hob else s.nsector & 0xFF)
    elif reg_num == 3:
        ret = 0 if no_drives else (s.hob_sector if hob else s.sector)
    elif reg_num == 4:
        ret = 0 if no_drives else (s.hob_lcyl if hob else s.lcyl)
    elif reg_num == 5:
        ret = 0 if no_drives else (s.hob_hcyl if hob else s.hcyl)
    elif reg_num == 6:
        ret = 0 if no_drives else s.select
    else:
        ret = 0 if (no_drives or absent) else s.status
        qemu_irq_lower(bus.irq)
    return ret


@tracepoint("qemu-ide", args=("opaque", "addr"))
def ide_status_read(opaque: IDEBus, addr: int) -> int:
    """Alternate status (0x3f6): the status byte without lowering the IRQ."""
    bus = opaque
    s = ide_bus_active_if(bus)
    if (bus.ifs[0].blk is None and bus.ifs[1].blk is None) or (s is not bus.ifs[0] and s.blk is None):
        return 0
    return s.status


@tracepoint("qemu-ide", args=("s",))
def ide_perform_srst(s: IDEState) -> None:
    """Software reset of one drive: halt PIO, reset, then EXECUTE DEVICE DIAGNOSTIC's result (error 1)."""
    s.status |= BUSY_STAT
    ide_transfer_halt(s)
    ide_reset(s)
    # cmd_exec_dev_diagnostic(s, WIN_DIAGNOSE): the signature, error 0x01, DRDY|DSC for a disk
    ide_set_signature(s)
    s.status = 0 if s.drive_kind == IDE_CD else READY_STAT | SEEK_STAT
    s.error = 0x01


@tracepoint("qemu-ide", args=("opaque=bus",))
def ide_bus_perform_srst(bus: IDEBus) -> None:
    """The bottom half an SRST schedules: reset both drives, then clear SRST."""
    for s in bus.ifs:
        ide_perform_srst(s)
    bus.cmd &= ~IDE_CTRL_RESET


@tracepoint("qemu-ide", args=("opaque", "addr", "val"))
def ide_ctrl_write(opaque: IDEBus, addr: int, val: int) -> None:
    """Device control (a write of 0x3f6; 1.6.1's ide_cmd_write): SRST 0→1 sets BSY and schedules the reset
    as a bottom half; the byte is kept in bus.cmd (bit 1 nIEN masks the IRQ, bit 7 is HOB)."""
    bus = opaque
    val &= 0xFF
    if not (bus.cmd & IDE_CTRL_RESET) and (val & IDE_CTRL_RESET):
        for s in bus.ifs:
            s.status |= BUSY_STAT
        aio_bh_schedule_oneshot(qemu_get_aio_context(), ide_bus_perform_srst, bus)
    bus.cmd = val


# Unchanged since 1.6.1 (the same text; 10.2 adds the ATAPI end functions to both lists):
#   https://github.com/qemu/qemu/blob/v1.6.1/hw/ide/core.c#L1875 and
#   https://github.com/qemu/qemu/blob/v10.2.0/hw/ide/core.c#L2381
ide_is_pio_out = unchanged(_c161.ide_is_pio_out, globals(), layer="qemu-ide", args=("s",))


def _data_access(bus: IDEBus, size: int, val: int | None) -> int:
    """The body shared by ide_data_writew/readw/writel/readl (10.2's four functions repeat it)."""
    s = ide_bus_active_if(bus)
    is_write = val is not None
    if not (s.status & DRQ_STAT) or ide_is_pio_out(s) == is_write:
        return 0
    p = s.data_ptr
    if p + size > s.data_end:  # 10.2 refuses to run past the window
        return 0
    emit("ide_pio_data", "qemu-ide", io_buffer_offset=p, size=size, is_in=int(not is_write))
    if is_write:
        s.io_buffer[p:p + size] = (val & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
        ret = 0
    else:
        ret = int.from_bytes(s.io_buffer[p:p + size], "little")
    p += size
    s.data_ptr = p
    if p >= s.data_end:
        s.status &= ~DRQ_STAT
        s.end_transfer_func(s)
    return ret


@tracepoint("qemu-ide", args=("opaque", "addr", "val"))
def ide_data_writew(opaque: IDEBus, addr: int, val: int) -> None:
    """A 16-bit write to the data port: store it at data_ptr; after the window's last word clear DRQ and
    call end_transfer_func (ide_sector_write for WRITE SECTORS)."""
    _data_access(opaque, 1 if ide_bus_active_if(opaque).io8 else 2, val)


@tracepoint("qemu-ide", args=("opaque", "addr"))
def ide_data_readw(opaque: IDEBus, addr: int) -> int:
    """A 16-bit read of the data port; after the last word DRQ off and end_transfer_func
    (ide_sector_read: the next sector, or the end)."""
    return _data_access(opaque, 1 if ide_bus_active_if(opaque).io8 else 2, None)


@tracepoint("qemu-ide", args=("opaque", "addr", "val"))
def ide_data_writel(opaque: IDEBus, addr: int, val: int) -> None:
    _data_access(opaque, 4, val)


@tracepoint("qemu-ide", args=("opaque", "addr"))
def ide_data_readl(opaque: IDEBus, addr: int) -> int:
    return _data_access(opaque, 4, None)


# Unchanged since 1.6.1: https://github.com/qemu/qemu/blob/v1.6.1/hw/ide/core.c#L1974 and
# https://github.com/qemu/qemu/blob/v10.2.0/hw/ide/core.c#L2530 (the same text)
ide_dummy_transfer_stop = unchanged(_c161.ide_dummy_transfer_stop, globals(), layer="qemu-ide", args=("s",))


# =====================================================================================================
# Reset, IRQ and set-up
# =====================================================================================================
@tracepoint("qemu-ide", args=("s",))
def ide_reset(s: IDEState) -> None:
    """Reset one drive: cancel a PIO request in flight, registers cleared, DRDY|DSC, the signature."""
    if s.pio_aiocb is not None:
        blk_aio_cancel(s.pio_aiocb)
        s.pio_aiocb = None
    if s.reset_reverts:
        s.reset_reverts = False
        s.heads, s.sectors = s.drive_heads, s.drive_sectors
    s.mult_sectors = 0 if s.drive_kind == IDE_CFATA else MAX_MULT_SECTORS
    s.feature = s.error = s.nsector = s.sector = s.lcyl = s.hcyl = 0
    s.hob_feature = s.hob_sector = s.hob_nsector = s.hob_lcyl = s.hob_hcyl = 0
    s.select = ATA_DEV_ALWAYS_ON
    s.status = READY_STAT | SEEK_STAT
    s.lba48 = 0
    s.req_nb_sectors = 0
    s.command = None
    s.abort_reason = None
    ide_set_signature(s)
    s.end_transfer_func = ide_dummy_transfer_stop
    ide_dummy_transfer_stop(s)
    s.media_changed = 0


@tracepoint("qemu-ide", args=("bus",))
def ide_bus_set_irq(bus: IDEBus) -> None:
    """Raise the channel's IRQ unless the guest set nIEN (1.6.1's ide_set_irq, now in core.c)."""
    if not (bus.cmd & IDE_CTRL_DISABLE_IRQ):
        qemu_irq_raise(bus.irq)


def ide_bus_reset(bus: IDEBus) -> None:
    """System reset of a channel: master selected, device control 0, both drives and the DMA provider."""
    bus.unit = 0
    bus.cmd = 0
    ide_reset(bus.ifs[0])
    ide_reset(bus.ifs[1])
    ide_clear_hob(bus)
    reset = getattr(bus.dma.ops, "reset", None) if bus.dma is not None else None
    if reset is not None:
        reset(bus.dma)


def ide_init1(bus: IDEBus, unit: int) -> IDEState:
    """Make drive slot `unit` (serial numbers counted per machine, primary master = 1)."""
    s = IDEState(bus=bus, unit=unit)
    s.drive_serial = bus.bus_id * 2 + unit + 1
    return s


class _NopDMAOps:
    """ide_dma_nop's ops: no hooks this path calls."""

    reset = None
    pio_transfer = None
    cmd_done = None


@tracepoint("qemu-ide", args=("bus", "irq_out"))
def ide_bus_init_output_irq(bus: IDEBus, irq_out) -> None:
    """Both drive slots, reset, the output IRQ line, the no-op DMA provider (1.6.1's ide_init2)."""
    bus.ifs = [ide_init1(bus, 0), ide_init1(bus, 1)]
    for s in bus.ifs:
        ide_reset(s)
    bus.irq = irq_out
    from .internal import IDEDMA
    bus.dma = IDEDMA(ops=_NopDMAOps())


@tracepoint("qemu-ide", args=("s", "dev", "kind"))
def ide_init_drive(s: IDEState, dev: IDEDevice, kind: int, blk=None) -> int:
    """Attach a BlockBackend to a drive slot: capacity, geometry, serial "QM0000n", model "QEMU HARDDISK",
    firmware qemu_hw_version() "2.5+". The geometry is hd_geometry_guess's (hw/block/hd-geometry.c, via
    blkconf_geometry): 10.2 first asks blk_probe_geometry, which only succeeds on s390 DASDs, then guesses
    as 1.6.1 did, so the 1.6.1 model's helper computes it."""
    if kind != IDE_CD and blk.root is not None and blk.root.bs.read_only:
        raise ImageError(f"QEMU 10.2 refuses a read-only disk for an IDE hard disk (ide_init_drive: \"Can't use "
                         f"a read-only drive\"): {blk.filename!r} was opened with readonly=True. QEMU 1.6.1 "
                         "accepted it (stack='1.6.1'), and 10.2 can read it as an IDE CD-ROM, not modelled")
    s.blk = blk
    s.drive_kind = kind
    nb_sectors = blk_get_geometry(blk)
    cyls, heads, secs = _c161.hd_geometry_guess(_GeometryProbe(blk, nb_sectors))
    s.cylinders, s.heads, s.sectors = cyls, heads, secs
    s.drive_heads, s.drive_sectors = heads, secs
    s.nb_sectors = nb_sectors
    s.wwn = dev.wwn
    s.drive_serial_str = (dev.serial or f"QM{s.drive_serial:05d}")[:20]
    if dev.model:
        s.drive_model_str = dev.model[:40]
    else:
        s.drive_model_str = {IDE_CD: "QEMU DVD-ROM", IDE_CFATA: "QEMU MICRODRIVE"}.get(kind, "QEMU HARDDISK")
    s.version = (dev.version or QEMU_HW_VERSION)[:8]
    ide_reset(s)
    return 0


class _GeometryProbe:
    """What hd_geometry_guess reads of a disk: its size and the image file (for the MBR)."""

    def __init__(self, blk, nb_sectors: int) -> None:
        self.filename = blk.root.bs.filename
        self._nb = nb_sectors
        self.total_sectors = nb_sectors
        self.drv = True


def ide_create_drive(bus: IDEBus, unit: int, blk) -> IDEDevice:
    """hw/ide/ide-dev.c: an `ide-hd` device on `bus` at `unit` with default properties, over `blk`."""
    dev = IDEDevice(unit=unit)
    dev.rotation_rate = 0
    if unit:
        bus.slave = dev
    else:
        bus.master = dev
    ide_init_drive(bus.ifs[unit], dev, IDE_HD, blk)
    return dev


# hw/ide/core.c:84-94: the task file at 0x1f0-0x1f7 (byte entries over all 8 ports; the 2- and 4-byte data
# entries have len 1 in 10.2, where 1.6.1 gave them 2 and 4) and 0x3f6 (alternate status / device control).
ide_portio_list = [
    MemoryRegionPortio(0, 8, 1, read=ide_ioport_read, write=ide_ioport_write),
    MemoryRegionPortio(0, 1, 2, read=ide_data_readw, write=ide_data_writew),
    MemoryRegionPortio(0, 1, 4, read=ide_data_readl, write=ide_data_writel),
]
ide_portio2_list = [MemoryRegionPortio(0, 1, 1, read=ide_status_read, write=ide_ctrl_write)]
