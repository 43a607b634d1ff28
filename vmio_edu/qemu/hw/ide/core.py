"""hw/ide/core.c (QEMU v1.6.1): the ATA disk as the guest's driver sees it, in PIO mode.

The guest programs the task file (0x1f1-0x1f6), writes a command to 0x1f7 and moves data through 0x1f0.
A WRITE SECTORS of one sector goes:

    ide_ioport_write(0x1f7, 0x30) → ide_exec_cmd → cmd_write_pio → ide_transfer_start   status 0x58 (DRQ)
    256 × ide_data_writew(0x1f0, word)                                                  fills io_buffer
      the 256th → ide_sector_write → bdrv_aio_writev                                    status 0xD0 (BSY)
    ... the block layer writes the sector on a pool thread; later, on the main loop:
    ide_sector_write_cb → ide_transfer_stop (or the next window), ide_set_irq           status 0x50, IRQ 14

A READ SECTORS starts the first read at once (0xD0); each completion opens a 512-byte window (0x58) and
raises the IRQ; the 256th ide_data_readw starts the next sector, or, at the end, leaves 0x50 with no IRQ.

Simplified here: only PIO (no DMA, ATAPI or CF-ATA), and the command table holds the commands listed in
`ide_cmd_table`; every other opcode is aborted like an unknown one (`abort_reason` says which real QEMU
would have run). C pointers into io_buffer are byte offsets.
"""
from __future__ import annotations

import errno
import os

from ....errors import VmioError
from ....trace.tracepoint import current_context, emit, tracepoint
from ... import block as _block
from ...block import bdrv_aio_readv, bdrv_aio_writev, bdrv_get_geometry
from ...ioport import MemoryRegionPortio, PortioList, portio_list_add, portio_list_init
from ...util.iov import QEMUIOVector, iovec, qemu_iovec_init_external
from ..core.irq import IRQState, qemu_irq_lower
from .internal import (ABRT_ERR, BM_STATUS_DMA_RETRY, BM_STATUS_PIO_RETRY, BM_STATUS_RETRY_READ, BUSY_STAT,
                       DRQ_STAT, ERR_STAT, IDE_CD, IDE_CFATA, IDE_CMD_RESET, IDE_HD, MAX_MULT_SECTORS, READY_STAT,
                       SEEK_STAT, WIN_DEVICE_RESET, WIN_IDENTIFY, WIN_READ, WIN_READ_EXT, WIN_READ_ONCE, WIN_WRITE,
                       WIN_WRITE_EXT, WIN_WRITE_ONCE, IDEBus, IDEDevice, IDEDMA, IDEDMAOps, IDEState,
                       idebus_active_if, ide_set_irq)

BDRV_SECTOR_SIZE = 512
QEMU_VERSION = "1.6.1"  # qemu_get_version(): the IDENTIFY firmware revision


class IDEModelError(VmioError):
    """The IDE model reached a state real QEMU would abort() on (a bug in the model, not the guest)."""


# =====================================================================================================
# block.c's werror/rerror policy and cpus.c's vm_stop, as IDE uses them.
# QEMU 1.6.1 keeps these in block.c / cpus.c; vmio_edu.qemu.block and .cpus don't model them (yet), so
# they live here, and the real ones are used instead as soon as those modules define them.
# =====================================================================================================
BLOCKDEV_ON_ERROR_REPORT = "report"
BLOCKDEV_ON_ERROR_IGNORE = "ignore"
BLOCKDEV_ON_ERROR_ENOSPC = "enospc"
BLOCKDEV_ON_ERROR_STOP = "stop"
BDRV_ACTION_REPORT = "report"
BDRV_ACTION_IGNORE = "ignore"
BDRV_ACTION_STOP = "stop"
RUN_STATE_IO_ERROR = "io-error"

# blockdev.c drive_init: werror defaults to enospc, rerror to report (blockdev.c:521, 534).
DEFAULT_ON_WRITE_ERROR = BLOCKDEV_ON_ERROR_ENOSPC
DEFAULT_ON_READ_ERROR = BLOCKDEV_ON_ERROR_REPORT

_POLICY_WHY = {
    (BLOCKDEV_ON_ERROR_ENOSPC, BDRV_ACTION_STOP):
        "werror=enospc (QEMU 1.6.1's default): a full host disk stops the VM (vm_stop(RUN_STATE_IO_ERROR)) "
        "instead of failing the guest's write, so the administrator can free space and type 'cont'; the "
        "same sector is then written again (bmdma_restart_bh → ide_sector_write). The guest sees nothing: "
        "status stays 0x50, no IRQ, nsector and the LBA registers unchanged.",
    (BLOCKDEV_ON_ERROR_ENOSPC, BDRV_ACTION_REPORT):
        "werror=enospc reports every error except ENOSPC to the guest: status 0x41 (DRDY|ERR), error 0x04 "
        "(ABRT), IRQ.",
    (BLOCKDEV_ON_ERROR_REPORT, BDRV_ACTION_REPORT):
        "report: the error goes to the guest as status 0x41 (DRDY|ERR), error 0x04 (ABRT), IRQ.",
    (BLOCKDEV_ON_ERROR_STOP, BDRV_ACTION_STOP):
        "stop: every error stops the VM until 'cont', which retries the request.",
    (BLOCKDEV_ON_ERROR_IGNORE, BDRV_ACTION_IGNORE):
        "ignore: the error is dropped and the command carries on as if it had worked.",
}


def _local_bdrv_get_error_action(bs, is_read: bool, error: int) -> str:
    """What the drive's rerror/werror option says to do with `error` (a positive errno)."""
    on_err = getattr(bs, "on_read_error", DEFAULT_ON_READ_ERROR) if is_read else \
        getattr(bs, "on_write_error", DEFAULT_ON_WRITE_ERROR)
    if on_err == BLOCKDEV_ON_ERROR_ENOSPC:
        return BDRV_ACTION_STOP if error == errno.ENOSPC else BDRV_ACTION_REPORT
    if on_err == BLOCKDEV_ON_ERROR_STOP:
        return BDRV_ACTION_STOP
    if on_err == BLOCKDEV_ON_ERROR_REPORT:
        return BDRV_ACTION_REPORT
    if on_err == BLOCKDEV_ON_ERROR_IGNORE:
        return BDRV_ACTION_IGNORE
    raise IDEModelError(f"unknown {'rerror' if is_read else 'werror'} policy {on_err!r}")


def bdrv_set_on_error(bs, on_read_error: str, on_write_error: str) -> None:
    """`-drive rerror=...,werror=...`: report, ignore, enospc (werror only) or stop."""
    for v in (on_read_error, on_write_error):
        if v not in (BLOCKDEV_ON_ERROR_REPORT, BLOCKDEV_ON_ERROR_IGNORE, BLOCKDEV_ON_ERROR_ENOSPC,
                     BLOCKDEV_ON_ERROR_STOP):
            raise IDEModelError(f"unknown error policy {v!r} (report, ignore, enospc or stop)")
    bs.on_read_error, bs.on_write_error = on_read_error, on_write_error


def bdrv_iostatus_set_err(bs, error: int) -> None:
    """Note on the BDS that it stopped the VM: "nospace" for ENOSPC, else "failed" (query-block shows it)."""
    if getattr(bs, "iostatus", "ok") == "ok":
        bs.iostatus = "nospace" if error == errno.ENOSPC else "failed"


bdrv_get_error_action = getattr(_block, "bdrv_get_error_action", None) or \
    tracepoint("qemu-block", args=("is_read", "error"), name="bdrv_get_error_action")(_local_bdrv_get_error_action)


def _local_bdrv_error_action(bs, action: str, is_read: bool, error: int) -> None:
    """Tell the management layer (QMP BLOCK_IO_ERROR) and, for "stop", stop the VM."""
    emit("BLOCK_IO_ERROR", "qemu-block", operation="read" if is_read else "write", action=action,
         error=error, errno=errno.errorcode.get(error, str(error)))
    if action == BDRV_ACTION_STOP:
        from ...cpus import vm_stop
        on = "read" if is_read else "write"
        vm_stop(RUN_STATE_IO_ERROR, f"{on} error {errno.errorcode.get(error, error)} on "
                                    f"{getattr(bs, 'filename', '?')}")
        bdrv_iostatus_set_err(bs, error)


bdrv_error_action = getattr(_block, "bdrv_error_action", None) or \
    tracepoint("qemu-block", args=("action", "is_read", "error"), name="bdrv_error_action")(_local_bdrv_error_action)


# =====================================================================================================
# IDENTIFY DEVICE
# =====================================================================================================
def padstr(buf: bytearray, off: int, src: str, length: int) -> None:
    """An ATA string: space-padded, and the two bytes of each word swapped (ATA strings are big-endian
    per word, so "QEMU" is stored as "EQUM")."""
    data = src.encode("ascii", "replace")
    for i in range(length):
        buf[off + (i ^ 1)] = data[i] if i < len(data) else 0x20


def put_le16(buf: bytearray, word: int, v: int) -> None:
    """Store word number `word` of a 256-word block, little-endian, truncated to 16 bits."""
    buf[2 * word:2 * word + 2] = (v & 0xFFFF).to_bytes(2, "little")


@tracepoint("qemu-ide", args=())
def ide_identify(s: IDEState) -> None:
    """Fill io_buffer with the 256 IDENTIFY DEVICE words of a QEMU hard disk (built once, then cached)."""
    if s.identify_set:
        s.io_buffer[0:512] = s.identify_data
        return
    dev = s.bus.slave if s.unit else s.bus.master
    p = s.io_buffer
    p[0:512] = bytes(512)
    put_le16(p, 0, 0x0040)  # fixed device
    put_le16(p, 1, s.cylinders)
    put_le16(p, 3, s.heads)
    put_le16(p, 4, 512 * s.sectors)  # retired
    put_le16(p, 5, 512)  # retired
    put_le16(p, 6, s.sectors)
    padstr(p, 10 * 2, s.drive_serial_str, 20)  # serial number, words 10-19
    put_le16(p, 20, 3)  # retired: buffer type
    put_le16(p, 21, 512)  # cache size in sectors
    put_le16(p, 22, 4)  # ECC bytes
    padstr(p, 23 * 2, s.version, 8)  # firmware revision, words 23-26
    padstr(p, 27 * 2, s.drive_model_str, 40)  # model, words 27-46
    put_le16(p, 47, 0x8000 | MAX_MULT_SECTORS)
    put_le16(p, 48, 1)  # dword I/O
    put_le16(p, 49, (1 << 11) | (1 << 9) | (1 << 8))  # IORDY, LBA and DMA supported
    put_le16(p, 51, 0x200)  # PIO transfer cycle
    put_le16(p, 52, 0x200)  # DMA transfer cycle
    put_le16(p, 53, 1 | (1 << 1) | (1 << 2))  # words 54-58, 64-70 and 88 are valid
    put_le16(p, 54, s.cylinders)
    put_le16(p, 55, s.heads)
    put_le16(p, 56, s.sectors)
    oldsize = s.cylinders * s.heads * s.sectors
    put_le16(p, 57, oldsize)
    put_le16(p, 58, oldsize >> 16)
    if s.mult_sectors:
        put_le16(p, 59, 0x100 | s.mult_sectors)
    put_le16(p, 60, s.nb_sectors)  # LBA28 capacity, low word
    put_le16(p, 61, s.nb_sectors >> 16)
    put_le16(p, 62, 0x07)  # single-word DMA 0-2
    put_le16(p, 63, 0x07)  # multiword DMA 0-2
    put_le16(p, 64, 0x03)  # PIO 3-4
    for w in (65, 66, 67, 68):
        put_le16(p, w, 120)
    if dev is not None and dev.conf.discard_granularity:
        put_le16(p, 69, 1 << 14)  # deterministic TRIM
    put_le16(p, 80, 0xF0)  # ATA-3 to ATA-6
    put_le16(p, 81, 0x16)  # conforms to ATA-5
    put_le16(p, 82, (1 << 14) | (1 << 5) | 1)  # NOP, write cache, SMART supported
    put_le16(p, 83, (1 << 14) | (1 << 13) | (1 << 12) | (1 << 10))  # FLUSH CACHE (EXT), LBA48
    put_le16(p, 84, (1 << 14) | (1 << 8) if s.wwn else (1 << 14))
    if getattr(s.bs, "enable_write_cache", True):  # bdrv_enable_write_cache
        put_le16(p, 85, (1 << 14) | (1 << 5) | 1)
    else:
        put_le16(p, 85, (1 << 14) | 1)
    put_le16(p, 86, (1 << 13) | (1 << 12) | (1 << 10))
    put_le16(p, 87, (1 << 14) | (1 << 8) if s.wwn else (1 << 14))
    put_le16(p, 88, 0x3F | (1 << 13))  # UDMA 0-5 supported, UDMA5 selected
    put_le16(p, 93, 1 | (1 << 14) | 0x2000)
    for i, w in enumerate((100, 101, 102, 103)):  # LBA48 capacity
        put_le16(p, w, s.nb_sectors >> (16 * i))
    if dev is not None and dev.conf.physical_block_size:
        exp, size = 0, dev.conf.physical_block_size
        while size > dev.conf.logical_block_size:
            exp, size = exp + 1, size >> 1
        put_le16(p, 106, 0x6000 | exp)
    if s.wwn:
        for i, w in enumerate((108, 109, 110, 111)):
            put_le16(p, w, s.wwn >> (48 - 16 * i))
    if dev is not None and dev.conf.discard_granularity:
        put_le16(p, 169, 1)  # TRIM supported
    s.identify_data[:] = p[0:512]
    s.identify_set = 1


@tracepoint("qemu-ide", args=())
def ide_set_signature(s: IDEState) -> None:
    """After a reset the task file holds the device signature: 1/1/0/0 for a disk, 0xff/0xff if absent."""
    s.select &= 0xF0  # clear head
    s.nsector = 1
    s.sector = 1
    if s.drive_kind == IDE_CD:
        s.lcyl, s.hcyl = 0x14, 0xEB
    elif s.bs is not None:
        s.lcyl, s.hcyl = 0, 0
    else:
        s.lcyl, s.hcyl = 0xFF, 0xFF


# =====================================================================================================
# PIO windows and the task-file address
# =====================================================================================================
@tracepoint("qemu-ide", args=())
def ide_abort_command(s: IDEState) -> None:
    """Fail the current command: status DRDY|ERR (0x41), error ABRT (0x04). The caller raises the IRQ."""
    s.status = READY_STAT | ERR_STAT
    s.error = ABRT_ERR


@tracepoint("qemu-ide", args=("size", "end_transfer_func"))
def ide_transfer_start(s: IDEState, buf, size: int, end_transfer_func) -> None:
    """Open a PIO window of `size` bytes at `buf` (s.io_buffer, or an offset into it); DRQ tells the guest
    to move the data. `end_transfer_func` runs when the guest has moved the last byte."""
    start = 0 if buf is s.io_buffer else int(buf)
    s.end_transfer_func = end_transfer_func
    s.data_ptr = start
    s.data_end = start + size
    if not (s.status & ERR_STAT):
        s.status |= DRQ_STAT
    s.bus.dma.ops.start_transfer(s.bus.dma)


@tracepoint("qemu-ide", args=())
def ide_transfer_stop(s: IDEState) -> None:
    """Close the window: DRQ off, pointers back to the start of io_buffer."""
    s.end_transfer_func = ide_transfer_stop
    s.data_ptr = 0
    s.data_end = 0
    s.status &= ~DRQ_STAT


def _sector_from_regs(s: IDEState) -> int:
    if s.select & 0x40:
        if not s.lba48:  # LBA28: device[3:0], hcyl, lcyl, sector
            return ((s.select & 0x0F) << 24) | (s.hcyl << 16) | (s.lcyl << 8) | s.sector
        return (s.hob_hcyl << 40) | (s.hob_lcyl << 32) | (s.hob_sector << 24) | \
            (s.hcyl << 16) | (s.lcyl << 8) | s.sector
    # CHS: sectors count from 1
    return ((s.hcyl << 8) | s.lcyl) * s.heads * s.sectors + (s.select & 0x0F) * s.sectors + (s.sector - 1)


def describe_sector(s: IDEState) -> int:
    """The sector the registers address now (for views; the same sum as ide_get_sector, untraced)."""
    return _sector_from_regs(s)


@tracepoint("qemu-ide", args=())
def ide_get_sector(s: IDEState) -> int:
    """The 512-byte sector the task file points at: LBA28, LBA48 (with the HOB bytes) or CHS."""
    return _sector_from_regs(s)


@tracepoint("qemu-ide", args=("sector_num",))
def ide_set_sector(s: IDEState, sector_num: int) -> None:
    """Write a sector number back into the task file, in the addressing mode in use."""
    if s.select & 0x40:
        if not s.lba48:
            s.select = ((s.select & 0xF0) | (sector_num >> 24)) & 0xFF
            s.hcyl = (sector_num >> 16) & 0xFF
            s.lcyl = (sector_num >> 8) & 0xFF
            s.sector = sector_num & 0xFF
        else:
            s.sector = sector_num & 0xFF
            s.lcyl = (sector_num >> 8) & 0xFF
            s.hcyl = (sector_num >> 16) & 0xFF
            s.hob_sector = (sector_num >> 24) & 0xFF
            s.hob_lcyl = (sector_num >> 32) & 0xFF
            s.hob_hcyl = (sector_num >> 40) & 0xFF
    else:
        cyl, r = divmod(sector_num, s.heads * s.sectors)
        s.hcyl = (cyl >> 8) & 0xFF
        s.lcyl = cyl & 0xFF
        s.select = ((s.select & 0xF0) | ((r // s.sectors) & 0x0F)) & 0xFF
        s.sector = (r % s.sectors) + 1


@tracepoint("qemu-ide", args=("lba48",))
def ide_cmd_lba48_transform(s: IDEState, lba48: int) -> None:
    """Turn the count register into the full sector count: for 28-bit commands 0 means 256; for 48-bit
    commands the count is hob_nsector:nsector and 0:0 means 65536."""
    s.lba48 = lba48
    if not s.lba48:
        if not s.nsector:
            s.nsector = 256
    else:
        if not s.nsector and not s.hob_nsector:
            s.nsector = 65536
        else:
            s.nsector = (s.hob_nsector << 8) | s.nsector


# =====================================================================================================
# Errors from the block layer
# =====================================================================================================
@tracepoint("qemu-ide", args=())
def ide_rw_error(s: IDEState) -> None:
    """Report an I/O error to the guest: ABRT, then the IRQ."""
    ide_abort_command(s)
    ide_set_irq(s.bus)


@tracepoint("qemu-ide", args=("error", "op"))
def ide_handle_rw_error(s: IDEState, error: int, op: int) -> bool:
    """Apply the drive's rerror/werror policy to a failed PIO or DMA request; True if the caller must stop.

    stop:   remember which drive and request to retry (bus.error_status), then stop the VM.
    report: ide_rw_error (0x41/0x04 + IRQ).        ignore: carry on as if it had worked.
    """
    is_read = bool(op & BM_STATUS_RETRY_READ)
    action = bdrv_get_error_action(s.bs, is_read, error)
    policy = getattr(s.bs, "on_read_error", DEFAULT_ON_READ_ERROR) if is_read else \
        getattr(s.bs, "on_write_error", DEFAULT_ON_WRITE_ERROR)
    s.last_io_error = {
        "errno": error, "name": errno.errorcode.get(error, str(error)), "message": os.strerror(error),
        "operation": "read" if is_read else "write", "sector_num": _sector_from_regs(s),
        "policy": f"{'rerror' if is_read else 'werror'}={policy}", "action": action,
        "why": _POLICY_WHY.get((policy, action), f"{policy} → {action}"),
    }
    if action == BDRV_ACTION_STOP:
        s.bus.dma.ops.set_unit(s.bus.dma, s.unit)
        s.bus.error_status = op
    elif action == BDRV_ACTION_REPORT:
        if op & BM_STATUS_DMA_RETRY:  # pragma: no cover - DMA is not modelled
            raise IDEModelError("DMA error handling is not modelled")
        s.abort_reason = f"I/O error {s.last_io_error['name']} ({s.last_io_error['message']}) on the " \
                         f"{s.last_io_error['operation']} of sector {s.last_io_error['sector_num']}"
        ide_rw_error(s)
    bdrv_error_action(s.bs, action, is_read, error)
    return action != BDRV_ACTION_IGNORE


# =====================================================================================================
# READ SECTORS / WRITE SECTORS, one sector per DRQ block
# =====================================================================================================
def _pio_qiov(s: IDEState, n: int, sector_num: int) -> None:
    # One iovec over the first n sectors of io_buffer (core.c:792-795).
    s.iov = iovec(s.io_buffer, n * BDRV_SECTOR_SIZE)
    s.qiov = QEMUIOVector()
    qemu_iovec_init_external(s.qiov, [s.iov], 1)
    # For byte provenance: which io_buffer bytes the QEMUIOVector's element 0 covers, for which sectors.
    emit("ide_pio_qiov", "qemu-ide", sector_num=sector_num, nb_sectors=n, iov=0,
         io_buffer_offset=s.iov.iov_offset, iov_len=s.iov.iov_len)


@tracepoint("qemu-ide", args=("ret",))
def ide_sector_read_cb(opaque: IDEState, ret: int) -> None:
    """A sector read finished (main-loop thread): open a window over it (DRQ), raise the IRQ, then move
    the LBA registers on and count the sector off."""
    s = opaque
    s.pio_aiocb = None
    s.status &= ~BUSY_STAT
    if ret != 0:
        if ide_handle_rw_error(s, -ret, BM_STATUS_PIO_RETRY | BM_STATUS_RETRY_READ):
            return
    n = min(s.nsector, s.req_nb_sectors)
    ide_transfer_start(s, s.io_buffer, n * BDRV_SECTOR_SIZE, ide_sector_read)
    ide_set_irq(s.bus)
    ide_set_sector(s, ide_get_sector(s) + n)
    s.nsector -= n


@tracepoint("qemu-ide", args=())
def ide_sector_read(s: IDEState) -> None:
    """Start reading the next block into io_buffer (BSY), or, with nothing left, close the window."""
    s.status = READY_STAT | SEEK_STAT
    s.error = 0  # not needed by the IDE spec, but Windows wants it
    sector_num = ide_get_sector(s)
    n = s.nsector
    if n == 0:
        ide_transfer_stop(s)
        return
    s.status |= BUSY_STAT
    n = min(n, s.req_nb_sectors)
    _pio_qiov(s, n, sector_num)
    s.pio_aiocb = bdrv_aio_readv(s.bs, sector_num, s.qiov, n, ide_sector_read_cb, s)


@tracepoint("qemu-ide", args=("ret",))
def ide_sector_write_cb(opaque: IDEState, ret: int) -> None:
    """A sector write finished (main-loop thread): count it off, open the next window or close it, move
    the LBA registers on and raise the IRQ."""
    s = opaque
    s.pio_aiocb = None
    s.status &= ~BUSY_STAT
    if ret != 0:
        if ide_handle_rw_error(s, -ret, BM_STATUS_PIO_RETRY):
            return
    n = min(s.nsector, s.req_nb_sectors)
    s.nsector -= n
    if s.nsector == 0:
        ide_transfer_stop(s)  # no more sectors to write
    else:
        n1 = min(s.nsector, s.req_nb_sectors)
        ide_transfer_start(s, s.io_buffer, n1 * BDRV_SECTOR_SIZE, ide_sector_write)
    ide_set_sector(s, ide_get_sector(s) + n)
    # (QEMU's -win2k-hack would delay this IRQ with a timer; it is off by default.)
    ide_set_irq(s.bus)


@tracepoint("qemu-ide", args=())
def ide_sector_write(s: IDEState) -> None:
    """The guest filled the window: set BSY and hand io_buffer to the block layer as one sector."""
    s.status = READY_STAT | SEEK_STAT | BUSY_STAT
    sector_num = ide_get_sector(s)
    n = min(s.nsector, s.req_nb_sectors)
    _pio_qiov(s, n, sector_num)
    s.pio_aiocb = bdrv_aio_writev(s.bs, sector_num, s.qiov, n, ide_sector_write_cb, s)


# =====================================================================================================
# Commands
# =====================================================================================================
@tracepoint("qemu-ide", args=("cmd",))
def cmd_nop(s: IDEState, cmd: int) -> bool:
    """Commands with nothing to do (RECALIBRATE, STANDBY, IDLE, ...): complete at once."""
    return True


@tracepoint("qemu-ide", args=("cmd",))
def cmd_identify(s: IDEState, cmd: int) -> bool:
    """IDENTIFY DEVICE: build the 256 words, open a read window (0x58) and raise the IRQ at once."""
    if s.bs is not None and s.drive_kind != IDE_CD:
        if s.drive_kind == IDE_CFATA:  # pragma: no cover - CF-ATA is not modelled
            raise IDEModelError("CF-ATA IDENTIFY is not modelled")
        ide_identify(s)
        s.status = READY_STAT | SEEK_STAT
        ide_transfer_start(s, s.io_buffer, 512, ide_transfer_stop)
        ide_set_irq(s.bus)
        return False
    if s.drive_kind == IDE_CD:
        ide_set_signature(s)
    s.abort_reason = "IDENTIFY DEVICE on a drive without a disk"
    ide_abort_command(s)
    return True


@tracepoint("qemu-ide", args=("cmd",))
def cmd_read_pio(s: IDEState, cmd: int) -> bool:
    """READ SECTORS (EXT): one sector per DRQ block; the first read starts now."""
    lba48 = int(cmd == WIN_READ_EXT)
    if s.drive_kind == IDE_CD:  # pragma: no cover - ATAPI is not modelled
        ide_set_signature(s)
        ide_abort_command(s)
        return True
    if s.bs is None:
        s.abort_reason = "READ SECTORS on a drive without a disk"
        ide_abort_command(s)
        return True
    ide_cmd_lba48_transform(s, lba48)
    s.req_nb_sectors = 1
    ide_sector_read(s)
    return False


@tracepoint("qemu-ide", args=("cmd",))
def cmd_write_pio(s: IDEState, cmd: int) -> bool:
    """WRITE SECTORS (EXT): open the first 512-byte window (0x58). No IRQ before the first block."""
    lba48 = int(cmd == WIN_WRITE_EXT)
    if s.bs is None:
        s.abort_reason = "WRITE SECTORS on a drive without a disk"
        ide_abort_command(s)
        return True
    ide_cmd_lba48_transform(s, lba48)
    s.req_nb_sectors = 1
    s.status = SEEK_STAT | READY_STAT
    ide_transfer_start(s, s.io_buffer, 512, ide_sector_write)
    s.media_changed = 1
    return False


HD_OK = 1 << IDE_HD
CD_OK = 1 << IDE_CD
CFA_OK = 1 << IDE_CFATA
HD_CFA_OK = HD_OK | CFA_OK
ALL_OK = HD_OK | CD_OK | CFA_OK
SET_DSC = 1 << 8  # set DSC when the command completes without error

# opcode -> (handler, flags): the part of QEMU 1.6.1's 57-entry table this model runs.
ide_cmd_table: dict[int, tuple] = {
    0x10: (cmd_nop, HD_CFA_OK | SET_DSC),  # WIN_RECAL
    WIN_READ: (cmd_read_pio, ALL_OK),
    WIN_READ_ONCE: (cmd_read_pio, ALL_OK),
    WIN_READ_EXT: (cmd_read_pio, HD_CFA_OK),
    WIN_WRITE: (cmd_write_pio, HD_CFA_OK),
    WIN_WRITE_ONCE: (cmd_write_pio, HD_CFA_OK),
    WIN_WRITE_EXT: (cmd_write_pio, HD_CFA_OK),
    0x91: (cmd_nop, HD_CFA_OK | SET_DSC),  # WIN_SPECIFY
    0x94: (cmd_nop, ALL_OK), 0x95: (cmd_nop, ALL_OK), 0x96: (cmd_nop, ALL_OK),  # standby / idle
    0x97: (cmd_nop, ALL_OK), 0x99: (cmd_nop, ALL_OK),
    0xE0: (cmd_nop, ALL_OK), 0xE1: (cmd_nop, ALL_OK), 0xE2: (cmd_nop, ALL_OK),
    0xE3: (cmd_nop, ALL_OK), 0xE6: (cmd_nop, ALL_OK),
    WIN_IDENTIFY: (cmd_identify, ALL_OK),
}

# Opcodes real QEMU 1.6.1 accepts for a hard disk that this model does not run (it aborts them, and says so).
NOT_MODELLED = {
    0x06: "DATA SET MANAGEMENT", 0x25: "READ DMA EXT", 0x27: "READ NATIVE MAX ADDRESS EXT",
    0x29: "READ MULTIPLE EXT", 0x35: "WRITE DMA EXT", 0x39: "WRITE MULTIPLE EXT", 0x3C: "WRITE VERIFY",
    0x40: "READ VERIFY SECTORS", 0x41: "READ VERIFY SECTORS (no retry)", 0x42: "READ VERIFY SECTORS EXT",
    0x70: "SEEK", 0x90: "EXECUTE DEVICE DIAGNOSTIC", 0x98: "CHECK POWER MODE", 0xB0: "SMART",
    0xC4: "READ MULTIPLE", 0xC5: "WRITE MULTIPLE", 0xC6: "SET MULTIPLE MODE", 0xC8: "READ DMA",
    0xC9: "READ DMA (no retry)", 0xCA: "WRITE DMA", 0xCB: "WRITE DMA (no retry)", 0xE5: "CHECK POWER MODE",
    0xE7: "FLUSH CACHE", 0xEA: "FLUSH CACHE EXT", 0xEF: "SET FEATURES", 0xF5: "CFA WEAR LEVEL",
    0xF8: "READ NATIVE MAX ADDRESS",
}


def ide_cmd_permitted(s: IDEState, cmd: int) -> bool:
    entry = ide_cmd_table.get(cmd)
    return entry is not None and bool(entry[1] & (1 << s.drive_kind))


@tracepoint("qemu-ide", args=("val",))
def ide_exec_cmd(bus: IDEBus, val: int) -> None:
    """Run the command written to 0x1f7 on the selected drive.

    Dropped while BSY or DRQ (except DEVICE RESET) and for an absent slave; an opcode the drive doesn't
    support is aborted (0x41/0x04) with an IRQ. Otherwise: DRDY|BSY, error 0, run the handler; a handler
    that finishes at once gets BSY cleared, DSC if its table entry says so, and the IRQ."""
    s = idebus_active_if(bus)
    if s is not bus.ifs[0] and s.bs is None:  # ignore commands to a non-existent slave
        return
    if (s.status & (BUSY_STAT | DRQ_STAT)) and val != WIN_DEVICE_RESET:
        return
    s.command = val
    s.abort_reason = None
    if not ide_cmd_permitted(s, val):
        if val in NOT_MODELLED:
            s.abort_reason = f"opcode 0x{val:02x} ({NOT_MODELLED[val]}) exists in QEMU 1.6.1 but this model " \
                             "does not run it"
        else:
            s.abort_reason = f"opcode 0x{val:02x} is not an ATA command QEMU 1.6.1 supports for this drive"
        ide_abort_command(s)
        ide_set_irq(s.bus)
        return
    s.status = READY_STAT | BUSY_STAT
    s.error = 0
    handler, flags = ide_cmd_table[val]
    complete = handler(s, val)
    if complete:
        s.status &= ~BUSY_STAT
        if bool(s.error) != bool(s.status & ERR_STAT):
            raise IDEModelError(f"command 0x{val:02x} finished with error {s.error:#x} but status "
                                f"{s.status:#x}")
        if (flags & SET_DSC) and not s.error:
            s.status |= SEEK_STAT
        ide_set_irq(s.bus)


# =====================================================================================================
# Port handlers (opaque = the IDEBus)
# =====================================================================================================
def ide_clear_hob(bus: IDEBus) -> None:
    """Any task-file write clears the HOB bit (bit 7 of the device register) on both drives."""
    bus.ifs[0].select &= ~0x80
    bus.ifs[1].select &= ~0x80


@tracepoint("qemu-ide", args=("addr", "val"))
def ide_ioport_write(opaque: IDEBus, addr: int, val: int) -> None:
    """A byte written to 0x1f0-0x1f7. Registers 1-5 go to *both* drives (the old value to hob_*);
    register 6 selects the drive and the addressing mode; 7 is the command. While the selected drive is
    BSY or DRQ, everything but the command register is ignored."""
    bus = opaque
    addr &= 7
    val &= 0xFF
    if addr != 7 and (idebus_active_if(bus).status & (BUSY_STAT | DRQ_STAT)):
        return
    a, b = bus.ifs
    if addr == 0:
        pass
    elif addr == 1:
        ide_clear_hob(bus)
        a.hob_feature, b.hob_feature = a.feature, b.feature
        a.feature = b.feature = val
    elif addr == 2:
        ide_clear_hob(bus)
        a.hob_nsector, b.hob_nsector = a.nsector & 0xFF, b.nsector & 0xFF  # uint8_t hob_nsector
        a.nsector = b.nsector = val
    elif addr == 3:
        ide_clear_hob(bus)
        a.hob_sector, b.hob_sector = a.sector, b.sector
        a.sector = b.sector = val
    elif addr == 4:
        ide_clear_hob(bus)
        a.hob_lcyl, b.hob_lcyl = a.lcyl, b.lcyl
        a.lcyl = b.lcyl = val
    elif addr == 5:
        ide_clear_hob(bus)
        a.hob_hcyl, b.hob_hcyl = a.hcyl, b.hcyl
        a.hcyl = b.hcyl = val
    elif addr == 6:
        # bits 7 and 5 always read as 1; bit 4 is forced per drive, so each sees itself selected or not
        a.select = ((val & ~0x10) | 0xA0) & 0xFF
        b.select = (val | 0x10 | 0xA0) & 0xFF
        bus.unit = (val >> 4) & 1
    else:
        ide_exec_cmd(bus, val)


@tracepoint("qemu-ide", args=("addr",))
def ide_ioport_read(opaque: IDEBus, addr: int) -> int:
    """A byte read of 0x1f0-0x1f7. Reading the status register (7) also lowers the IRQ line: that read
    is how the guest acknowledges the interrupt. With no drive at all, or an absent slave selected, the
    error and status registers read 0. A byte read of the data port gives 0xff."""
    bus = opaque
    s = idebus_active_if(bus)
    reg = addr & 7
    hob = 0  # QEMU 1.6.1: "FIXME: HOB readback uses bit 7, but it's always set right now"
    no_drives = bus.ifs[0].bs is None and bus.ifs[1].bs is None
    absent = s is not bus.ifs[0] and s.bs is None
    if reg == 0:
        ret = 0xFF
    elif reg == 1:
        ret = 0 if (no_drives or absent) else (s.hob_feature if hob else s.error)
    elif reg == 2:
        ret = 0 if no_drives else (s.hob_nsector if hob else s.nsector & 0xFF)
    elif reg == 3:
        ret = 0 if no_drives else (s.hob_sector if hob else s.sector)
    elif reg == 4:
        ret = 0 if no_drives else (s.hob_lcyl if hob else s.lcyl)
    elif reg == 5:
        ret = 0 if no_drives else (s.hob_hcyl if hob else s.hcyl)
    elif reg == 6:
        ret = 0 if no_drives else s.select
    else:
        ret = 0 if (no_drives or absent) else s.status
        qemu_irq_lower(bus.irq)
    return ret


@tracepoint("qemu-ide", args=("addr",))
def ide_status_read(opaque: IDEBus, addr: int) -> int:
    """Alternate status (a read of 0x3f6): the same byte as 0x1f7, but the IRQ line is left alone."""
    bus = opaque
    s = idebus_active_if(bus)
    if (bus.ifs[0].bs is None and bus.ifs[1].bs is None) or (s is not bus.ifs[0] and s.bs is None):
        return 0
    return s.status


@tracepoint("qemu-ide", args=("addr", "val"))
def ide_cmd_write(opaque: IDEBus, addr: int, val: int) -> None:
    """Device control (a write of 0x3f6), for both drives. SRST 0→1: BSY|DSC, error 1. SRST 1→0: DRDY|DSC
    and the signature in the task file. The byte is kept in bus.cmd; its bit 1 (nIEN) masks the IRQ.
    (QEMU 1.6.1 does not cancel a request in flight or reset the PIO window here.)"""
    bus = opaque
    val &= 0xFF
    if not (bus.cmd & IDE_CMD_RESET) and (val & IDE_CMD_RESET):
        for s in bus.ifs:  # reset low to high
            s.status = BUSY_STAT | SEEK_STAT
            s.error = 0x01
    elif (bus.cmd & IDE_CMD_RESET) and not (val & IDE_CMD_RESET):
        for s in bus.ifs:  # high to low
            s.status = 0x00 if s.drive_kind == IDE_CD else READY_STAT | SEEK_STAT
            ide_set_signature(s)
    bus.cmd = val


@tracepoint("qemu-ide", args=())
def ide_is_pio_out(s: IDEState) -> bool:
    """True if the open window is device-to-host (the guest reads), False if host-to-device; told apart
    by the function that will end it."""
    f = s.end_transfer_func
    if f is ide_sector_write:
        return False
    if f is ide_sector_read or f is ide_transfer_stop or f is ide_dummy_transfer_stop:
        return True
    raise IDEModelError(f"ide_is_pio_out: unexpected end_transfer_func {getattr(f, '__name__', f)!r} "
                        "(QEMU would abort())")


def _data_write(bus: IDEBus, val: int, size: int) -> None:
    s = idebus_active_if(bus)
    # Data moves only with DRQ set; a write into a device-to-host window is ignored.
    if not (s.status & DRQ_STAT) or ide_is_pio_out(s):
        return
    p = s.data_ptr
    emit("ide_pio_data", "qemu-ide", io_buffer_offset=p, size=size, is_in=0)  # (for byte provenance)
    s.io_buffer[p:p + size] = (val & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
    p += size
    s.data_ptr = p
    if p >= s.data_end:
        s.end_transfer_func(s)


def _data_read(bus: IDEBus, size: int) -> int:
    s = idebus_active_if(bus)
    # Reads outside an open device-to-host window give 0 and don't move the pointer.
    if not (s.status & DRQ_STAT) or not ide_is_pio_out(s):
        return 0
    p = s.data_ptr
    emit("ide_pio_data", "qemu-ide", io_buffer_offset=p, size=size, is_in=1)  # (for byte provenance)
    ret = int.from_bytes(s.io_buffer[p:p + size], "little")
    p += size
    s.data_ptr = p
    if p >= s.data_end:
        s.end_transfer_func(s)
    return ret


@tracepoint("qemu-ide", args=("addr", "val"))
def ide_data_writew(opaque: IDEBus, addr: int, val: int) -> None:
    """A 16-bit write to the data port: store the word at data_ptr, move 2 bytes on, and when the window
    is full call end_transfer_func (ide_sector_write for WRITE SECTORS)."""
    _data_write(opaque, val, 2)


@tracepoint("qemu-ide", args=("addr",))
def ide_data_readw(opaque: IDEBus, addr: int) -> int:
    """A 16-bit read of the data port: the word at data_ptr; after the last one, end_transfer_func
    (ide_sector_read starts the next sector or finishes the command)."""
    return _data_read(opaque, 2)


@tracepoint("qemu-ide", args=("addr", "val"))
def ide_data_writel(opaque: IDEBus, addr: int, val: int) -> None:
    """A 32-bit write to the data port (outsd): as ide_data_writew, 4 bytes at a time."""
    _data_write(opaque, val, 4)


@tracepoint("qemu-ide", args=("addr",))
def ide_data_readl(opaque: IDEBus, addr: int) -> int:
    """A 32-bit read of the data port (insd): as ide_data_readw, 4 bytes at a time."""
    return _data_read(opaque, 4)


@tracepoint("qemu-ide", args=())
def ide_dummy_transfer_stop(s: IDEState) -> None:
    """The end function after a reset: an empty window, with 0xff bytes at the start of the buffer."""
    s.data_ptr = 0
    s.data_end = 0
    s.io_buffer[0:4] = b"\xff\xff\xff\xff"


# =====================================================================================================
# Reset and set-up
# =====================================================================================================
@tracepoint("qemu-ide", args=())
def ide_reset(s: IDEState) -> None:
    """Power-on / hardware reset of one drive: registers cleared, status DRDY|DSC, the signature."""
    if s.pio_aiocb is not None:
        cancel = getattr(_block, "bdrv_aio_cancel", None)
        if cancel is not None:
            cancel(s.pio_aiocb)
        else:  # the block layer has no cancel: the late completion would land on a reset drive
            raise IDEModelError("ide_reset with a request in flight needs bdrv_aio_cancel, not modelled")
        s.pio_aiocb = None
    s.mult_sectors = 0 if s.drive_kind == IDE_CFATA else MAX_MULT_SECTORS
    s.feature = s.error = s.nsector = s.sector = s.lcyl = s.hcyl = 0
    s.hob_feature = s.hob_sector = s.hob_nsector = s.hob_lcyl = s.hob_hcyl = 0
    s.select = 0xA0
    s.status = READY_STAT | SEEK_STAT
    s.lba48 = 0
    s.req_nb_sectors = 0
    s.command = None
    s.abort_reason = None
    ide_set_signature(s)
    # so that data-port reads give 0 (no DRQ) and the buffer starts with 0xffff
    s.end_transfer_func = ide_dummy_transfer_stop
    ide_dummy_transfer_stop(s)
    s.media_changed = 0


def ide_bus_reset(bus: IDEBus) -> None:
    """System reset of a channel: master selected, device control 0, both drives reset."""
    bus.unit = 0
    bus.cmd = 0
    ide_reset(bus.ifs[0])
    ide_reset(bus.ifs[1])
    ide_clear_hob(bus)
    if bus.dma is not None:
        bus.dma.ops.reset(bus.dma)


def hd_geometry_guess(bs) -> tuple[int, int, int]:
    """hw/block/hd-geometry.c: cylinders/heads/sectors for a disk given no geometry. An MBR partition
    ending on a cylinder boundary gives the logical geometry; otherwise 16 heads × 63 sectors and the
    cylinders that fit (2 .. 16383). The MBR is read straight from the raw image, as QEMU reads it
    synchronously at start-up."""
    nb_sectors = bdrv_get_geometry(bs)
    mbr = b""
    try:
        with open(bs.filename, "rb") as f:
            mbr = f.read(512)
    except (OSError, AttributeError, TypeError):
        pass
    if len(mbr) == 512 and mbr[510] == 0x55 and mbr[511] == 0xAA:
        for i in range(4):
            e = mbr[0x1BE + 16 * i:0x1BE + 16 * (i + 1)]
            nr_sects = int.from_bytes(e[12:16], "little")
            end_head, end_sector = e[5], e[6]
            if nr_sects and end_head:
                heads, secs = end_head + 1, end_sector & 63
                if secs == 0:
                    continue
                cyls = nb_sectors // (heads * secs)
                if cyls < 1 or cyls > 16383:
                    continue
                if heads > 16:  # a BIOS translation was active: use the standard geometry
                    break
                return cyls, heads, secs
    cyls = min(max(nb_sectors // (16 * 63), 2), 16383)
    return cyls, 16, 63


@tracepoint("qemu-ide", args=("kind",))
def ide_init_drive(s: IDEState, bs, kind: int, version: str | None = None, serial: str | None = None,
                   model: str | None = None, wwn: int = 0, cylinders: int = 0, heads: int = 0,
                   secs: int = 0, chs_trans: int = 0) -> int:
    """Attach a disk image to a drive slot: capacity, geometry, serial "QM0000n", model "QEMU HARDDISK",
    firmware "1.6.1", then reset. (QEMU 1.6.1 refuses a read-only disk here; the model accepts it so a
    learner can watch a write fail with EACCES → ABRT.)"""
    s.bs = bs
    s.drive_kind = kind
    s.nb_sectors = bdrv_get_geometry(bs)
    if not (cylinders or heads or secs):
        cylinders, heads, secs = hd_geometry_guess(bs)
    s.cylinders, s.heads, s.sectors, s.chs_trans = cylinders, heads, secs, chs_trans
    s.wwn = wwn
    s.drive_serial_str = (serial if serial else f"QM{s.drive_serial:05d}")[:20]
    if model:
        s.drive_model_str = model[:40]
    else:
        s.drive_model_str = {IDE_CD: "QEMU DVD-ROM", IDE_CFATA: "QEMU MICRODRIVE"}.get(kind, "QEMU HARDDISK")
    s.version = (version or QEMU_VERSION)[:8]
    ide_reset(s)
    # bdrv_iostatus_enable: the BDS can now report "nospace"/"failed" after a stop
    bs.iostatus_enabled = True
    if not hasattr(bs, "iostatus"):
        bs.iostatus = "ok"
    return 0


def ide_init1(bus: IDEBus, unit: int) -> IDEState:
    """Make drive slot `unit`. The serial number counts slots as QEMU's static counter does for the
    first controller (primary master = 1); here it is per machine, so runs stay deterministic."""
    s = IDEState(bus=bus, unit=unit)
    s.drive_serial = bus.bus_id * 2 + unit + 1
    return s


def _nop_start_transfer(dma: IDEDMA) -> int:
    return 0


def _nop_set_unit(dma: IDEDMA, unit: int) -> int:
    return 0


def _nop_reset(dma: IDEDMA) -> int:
    return 0


ide_dma_nop_ops = IDEDMAOps(start_transfer=_nop_start_transfer, set_unit=_nop_set_unit, reset=_nop_reset)


@tracepoint("qemu-ide", args=())
def ide_init2(bus: IDEBus, irq: IRQState | None) -> None:
    """Create both drive slots empty and reset, connect the IRQ line, no DMA provider yet."""
    bus.ifs = [ide_init1(bus, 0), ide_init1(bus, 1)]
    for s in bus.ifs:
        ide_reset(s)
    bus.irq = irq
    bus.dma = IDEDMA(ops=ide_dma_nop_ops)


ide_portio_list = [
    MemoryRegionPortio(0, 8, 1, read=ide_ioport_read, write=ide_ioport_write),
    MemoryRegionPortio(0, 2, 2, read=ide_data_readw, write=ide_data_writew),
    MemoryRegionPortio(0, 4, 4, read=ide_data_readl, write=ide_data_writel),
]

ide_portio2_list = [
    MemoryRegionPortio(0, 1, 1, read=ide_status_read, write=ide_cmd_write),
]


@tracepoint("qemu-ide", args=("iobase", "iobase2"))
def ide_init_ioport(bus: IDEBus, dev, iobase: int, iobase2: int, address_space_io=None) -> None:
    """Register the channel's ports: ide_portio_list at iobase (0x1f0), ide_portio2_list at iobase2
    (0x3f6). `address_space_io` is the I/O address space (QEMU uses the ISA bus's, a global); with None
    nothing is mapped and the handlers can only be called directly."""
    if address_space_io is None:
        return
    bus.portio_list = PortioList()
    portio_list_init(bus.portio_list, ide_portio_list, bus, "ide")
    portio_list_add(bus.portio_list, address_space_io, iobase)
    if iobase2:
        bus.portio2_list = PortioList()
        portio_list_init(bus.portio2_list, ide_portio2_list, bus, "ide")
        portio_list_add(bus.portio2_list, address_space_io, iobase2)


def ide_create_drive(bus: IDEBus, unit: int, bs) -> IDEDevice:
    """hw/ide/qdev.c: an `ide-hd` device on `bus` at `unit` with default properties, over `bs`."""
    dev = IDEDevice(unit=unit)
    if unit:
        bus.slave = dev
    else:
        bus.master = dev
    ide_init_drive(bus.ifs[unit], bs, IDE_HD, dev.version, dev.serial, dev.model, dev.wwn)
    return dev
