"""hw/ide/internal.h (QEMU v1.6.1): the IDE registers, the drive state and the bus.

One ATA channel (the PIIX primary: ports 0x1f0-0x1f7 and 0x3f6, IRQ 14) is an `IDEBus` with two drives,
`ifs[0]` (master) and `ifs[1]` (slave). Each drive is an `IDEState`: its task-file registers, its status,
its 128 KiB `io_buffer` and the PIO *window* the guest reads or writes with `insw`/`outsw`:

    data_ptr ... data_end      the part of io_buffer the next data-port access uses
    end_transfer_func          what runs when the window is used up (ide_sector_write, ide_sector_read, ...)

C pointers into io_buffer are kept as byte offsets (data_ptr = 0 is `s->io_buffer`). Everything is a plain
attribute, so a debugger view can show it and a snapshot can copy it; `view()` gives the learner's summary.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from ....trace.tracepoint import tracepoint
from ..core.irq import IRQState, qemu_irq_raise

# Status register bits (internal.h:32-40). DSC and SRV share bit 4.
ERR_STAT = 0x01
INDEX_STAT = 0x02
ECC_STAT = 0x04  # corrected error
DRQ_STAT = 0x08
SEEK_STAT = 0x10
SRV_STAT = 0x10
WRERR_STAT = 0x20
READY_STAT = 0x40
BUSY_STAT = 0x80

# Error register bits (internal.h:43-51).
MARK_ERR = 0x01
TRK0_ERR = 0x02
ABRT_ERR = 0x04  # command aborted
MCR_ERR = 0x08
ID_ERR = 0x10
MC_ERR = 0x20
ECC_ERR = 0x40
BBD_ERR = 0x80

# Device control register (the write side of 0x3f6).
IDE_CMD_RESET = 0x04  # SRST
IDE_CMD_DISABLE_IRQ = 0x02  # nIEN

# ATA command opcodes used by the model (internal.h:63-200 has the full list).
WIN_DEVICE_RESET = 0x08
WIN_READ = 0x20  # READ SECTORS, 28-bit
WIN_READ_ONCE = 0x21
WIN_READ_EXT = 0x24  # READ SECTORS EXT, 48-bit
WIN_WRITE = 0x30  # WRITE SECTORS, 28-bit
WIN_WRITE_ONCE = 0x31
WIN_WRITE_EXT = 0x34  # WRITE SECTORS EXT, 48-bit
WIN_IDENTIFY = 0xEC  # IDENTIFY DEVICE

MAX_MULT_SECTORS = 16
IDE_DMA_BUF_SECTORS = 256

# IDEDriveKind
IDE_HD, IDE_CD, IDE_CFATA = 0, 1, 2

# BMDMA status bits, and the "retry" flags QEMU keeps in bus->error_status (internal.h:560-570;
# "FIXME These are not status register bits").
BM_STATUS_DMAING = 0x01
BM_STATUS_ERROR = 0x02
BM_STATUS_INT = 0x04
BM_STATUS_DMA_RETRY = 0x08
BM_STATUS_PIO_RETRY = 0x10
BM_STATUS_RETRY_READ = 0x20
BM_STATUS_RETRY_FLUSH = 0x40
BM_STATUS_RETRY_TRIM = 0x80

STATUS_BITS = (("BSY", BUSY_STAT), ("DRDY", READY_STAT), ("DF", WRERR_STAT), ("DSC", SEEK_STAT),
               ("DRQ", DRQ_STAT), ("CORR", ECC_STAT), ("IDX", INDEX_STAT), ("ERR", ERR_STAT))

COMMAND_NAMES = {WIN_DEVICE_RESET: "WIN_DEVICE_RESET", WIN_READ: "WIN_READ", WIN_READ_ONCE: "WIN_READ_ONCE",
                 WIN_READ_EXT: "WIN_READ_EXT", WIN_WRITE: "WIN_WRITE", WIN_WRITE_ONCE: "WIN_WRITE_ONCE",
                 WIN_WRITE_EXT: "WIN_WRITE_EXT", WIN_IDENTIFY: "WIN_IDENTIFY"}


def decode_status(status: int) -> dict[str, bool]:
    """The status byte as named bits, most significant first (BSY DRDY DF DSC DRQ CORR IDX ERR)."""
    return {name: bool(status & bit) for name, bit in STATUS_BITS}


def status_text(status: int) -> str:
    """E.g. 0x58 -> "DRDY|DSC|DRQ"; 0 -> "-"."""
    return "|".join(name for name, bit in STATUS_BITS if status & bit) or "-"


@dataclass
class BlockConf:
    """The drive's qdev block properties that IDENTIFY reports (ide-hd defaults in QEMU 1.6.1)."""

    logical_block_size: int = 512
    physical_block_size: int = 512
    discard_granularity: int = 512  # ide_dev_initfn turns the default -1 into 512


@dataclass
class IDEDevice:
    """The qdev side of a drive (`ide-hd`): its unit and configuration. Version/serial/model None = default."""

    unit: int
    conf: BlockConf = field(default_factory=BlockConf)
    version: str | None = None
    serial: str | None = None
    model: str | None = None
    wwn: int = 0


@dataclass
class IDEDMAOps:
    """The DMA provider's hooks. PIO uses `start_transfer` (a no-op for BMDMA) and `set_unit`
    (remember which drive must retry after a stop); the others serve DMA, which this model leaves out."""

    start_transfer: Callable[["IDEDMA"], int]
    set_unit: Callable[["IDEDMA", int], int]
    reset: Callable[["IDEDMA"], int]
    restart_cb: Callable[[Any, int, str], None] | None = None


@dataclass
class IDEDMA:
    """struct IDEDMA: the bus's DMA provider (BMDMAState embeds one; `ide_dma_nop` until bmdma_init)."""

    ops: IDEDMAOps | None = None
    aiocb: Any = None


@dataclass(eq=False)
class IDEState:
    """One drive: configuration, task-file registers, status, and the PIO window over io_buffer.

    Model-only fields (not in QEMU's struct) are marked; they exist so a learner can see what happened.
    """

    bus: "IDEBus | None" = None
    unit: int = 0
    # ide config
    drive_kind: int = IDE_HD
    cylinders: int = 0
    heads: int = 0
    sectors: int = 0
    chs_trans: int = 0
    nb_sectors: int = 0
    mult_sectors: int = 0
    identify_set: int = 0
    identify_data: bytearray = field(default_factory=lambda: bytearray(512))
    drive_serial: int = 0
    drive_serial_str: str = ""
    drive_model_str: str = ""
    wwn: int = 0
    # ide regs (uint8_t except nsector, which holds the full count once a command starts)
    feature: int = 0
    error: int = 0
    nsector: int = 0
    sector: int = 0
    lcyl: int = 0
    hcyl: int = 0
    # the other half of the task file for LBA48 (the previous value written to each register)
    hob_feature: int = 0
    hob_nsector: int = 0
    hob_sector: int = 0
    hob_lcyl: int = 0
    hob_hcyl: int = 0
    select: int = 0xA0
    status: int = 0
    lba48: int = 0
    bs: Any = None  # BlockDriverState, None for an empty slot
    version: str = ""
    media_changed: int = 0
    # asynchronous PIO request in flight, and the one-element vector over io_buffer it uses
    pio_aiocb: Any = None
    iov: Any = None  # util.iov.iovec
    qiov: Any = None  # util.iov.QEMUIOVector
    acct: Any = None  # block.BlockAcctCookie: the I/O being counted (bdrv_acct_start .. bdrv_acct_done)
    # PIO transfer handling
    req_nb_sectors: int = 0  # sectors per DRQ block (1 for READ/WRITE SECTORS)
    end_transfer_func: Callable[["IDEState"], None] | None = None
    data_ptr: int = 0  # offset into io_buffer
    data_end: int = 0  # offset into io_buffer
    io_buffer: bytearray = field(default_factory=lambda: bytearray(IDE_DMA_BUF_SECTORS * 512 + 4))
    io_buffer_total_len: int = IDE_DMA_BUF_SECTORS * 512 + 4
    irq_count: int = 0
    # model-only: the last command byte ide_exec_cmd accepted (or refused), for views
    command: int | None = None
    # model-only: why the last command was aborted (unknown opcode, I/O error), for views
    abort_reason: str | None = None
    # model-only: the last I/O error ide_handle_rw_error saw and what the werror/rerror policy did
    last_io_error: dict | None = None

    def view(self) -> dict:
        """Registers, decoded status, the PIO window, the current command and the end function."""
        from .core import describe_sector  # the LBA/CHS the registers point at, computed without tracing
        efn = self.end_transfer_func
        efn_name = getattr(efn, "__name__", None) if efn is not None else None
        pos, end = self.data_ptr, self.data_end
        window = None
        if self.status & DRQ_STAT:
            window = "device-to-host (guest reads)" if efn_name in _PIO_OUT_FUNCS else "host-to-device (guest writes)"
        return {
            "unit": self.unit,
            "present": self.bs is not None,
            "registers": {
                "feature": self.feature, "error": self.error, "nsector": self.nsector, "sector": self.sector,
                "lcyl": self.lcyl, "hcyl": self.hcyl, "select": self.select, "status": self.status,
                "hob_feature": self.hob_feature, "hob_nsector": self.hob_nsector, "hob_sector": self.hob_sector,
                "hob_lcyl": self.hob_lcyl, "hob_hcyl": self.hob_hcyl,
            },
            "status_bits": decode_status(self.status),
            "status_text": status_text(self.status),
            "addressing": "LBA48" if (self.select & 0x40 and self.lba48) else
                          ("LBA28" if self.select & 0x40 else "CHS"),
            "sector_num": describe_sector(self),
            "command": None if self.command is None else
                       {"opcode": self.command, "name": COMMAND_NAMES.get(self.command, f"0x{self.command:02x}")},
            "end_transfer_func": efn_name,
            "buffer": {"data_ptr": pos, "data_end": end, "remaining": max(0, end - pos),
                       "words_done": pos // 2, "window": window,
                       "next_bytes": bytes(self.io_buffer[pos:min(end, pos + 16)]).hex()},
            "req_nb_sectors": self.req_nb_sectors,
            "aio_in_flight": self.pio_aiocb is not None,
            "abort_reason": self.abort_reason,
            "last_io_error": dict(self.last_io_error) if self.last_io_error else None,
            "geometry": {"cylinders": self.cylinders, "heads": self.heads, "sectors": self.sectors,
                         "nb_sectors": self.nb_sectors},
        }


# end_transfer_func names that open a device-to-host window (ide_is_pio_out's "true" list).
_PIO_OUT_FUNCS = ("ide_sector_read", "ide_transfer_stop", "ide_dummy_transfer_stop")


@dataclass(eq=False)
class IDEBus:
    """One ATA channel: two drives, the selected unit, the device-control byte and the IRQ line."""

    bus_id: int = 0
    master: IDEDevice | None = None
    slave: IDEDevice | None = None
    ifs: list[IDEState] = field(default_factory=list)
    max_units: int = 2
    dma: IDEDMA | None = None
    unit: int = 0  # the drive selected by bit 4 of 0x1f6
    cmd: int = 0  # the last byte written to the device-control register (0x3f6)
    irq: IRQState | None = None
    error_status: int = 0  # BM_STATUS_*_RETRY flags of a request stopped by the werror/rerror policy
    portio_list: Any = None  # model-only: the PortioLists ide_init_ioport registered
    portio2_list: Any = None

    def view(self) -> dict:
        return {
            "bus_id": self.bus_id,
            "unit": self.unit,
            "device_control": self.cmd,
            "nIEN": bool(self.cmd & IDE_CMD_DISABLE_IRQ),
            "SRST": bool(self.cmd & IDE_CMD_RESET),
            "irq_level": self.irq.level if self.irq is not None else None,
            "error_status": self.error_status,
            "drives": [s.view() for s in self.ifs],
        }


def idebus_active_if(bus: IDEBus) -> IDEState:
    """The drive selected on this bus (bit 4 of the device register)."""
    return bus.ifs[bus.unit]


@tracepoint("qemu-ide", args=("bus",))
def ide_set_irq(bus: IDEBus) -> None:
    """Raise the channel's interrupt line, unless the guest set nIEN in the device-control register.

    The line stays up until the guest reads the status register (ide_ioport_read lowers it)."""
    if not (bus.cmd & IDE_CMD_DISABLE_IRQ):
        qemu_irq_raise(bus.irq)
