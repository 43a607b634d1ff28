"""hw/ide/ide-internal.h + include/hw/ide/ide-bus.h (QEMU v10.2.0): the drive and bus state.

10.2's IDEState names the disk `blk` (a BlockBackend) where 1.6.1 had `bs`, adds `io8`, the retry
registers on the bus (`retry_unit`, `retry_sector_num`, `retry_nsector`, set by ide_transfer_start) and
the HOB bit moved to the device-control register (IDE_CTRL_HOB). The registers, the PIO window
(`data_ptr`/`data_end` as byte offsets into io_buffer) and the views are 1.6.1's (vmio_edu.qemu.hw.ide
.internal); these subclasses add the 10.2 fields.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ....qemu.hw.ide import internal as _i161
from ....qemu.hw.ide.internal import (ABRT_ERR, BUSY_STAT, DRQ_STAT, ERR_STAT, IDE_CD, IDE_CFATA, IDE_HD,  # noqa: F401
                                      MAX_MULT_SECTORS, READY_STAT, SEEK_STAT, WIN_DEVICE_RESET, WIN_IDENTIFY,
                                      WIN_READ, WIN_READ_EXT, WIN_READ_ONCE, WIN_WRITE, WIN_WRITE_EXT,
                                      WIN_WRITE_ONCE, BlockConf, IDEDevice, IDEDMA, IDEDMAOps)

# include/hw/ide/ide-bus.h / ide-internal.h (10.2 names)
IDE_CTRL_HOB = 0x80
IDE_CTRL_RESET = 0x04
IDE_CTRL_DISABLE_IRQ = 0x02
ATA_DEV_ALWAYS_ON = 0xA0
ATA_DEV_LBA = 0x40
ATA_DEV_SELECT = 0x10
ATA_DEV_LBA_MSB = 0x0F
ATA_DEV_HS = 0x0F
WIN_DIAGNOSE = 0x90
# IDE_RETRY_* (the bits of bus->error_status)
IDE_RETRY_DMA, IDE_RETRY_PIO, IDE_RETRY_ATAPI = 0x08, 0x10, 0x20
IDE_RETRY_READ, IDE_RETRY_FLUSH, IDE_RETRY_TRIM = 0x40, 0x80, 0x100
IDE_RETRY_HBA = 0x200


@dataclass(eq=False)
class IDEState(_i161.IDEState):
    """One drive (10.2): `blk` is its BlockBackend (None for an empty slot)."""

    blk: Any = None
    io8: bool = False
    reset_reverts: bool = False
    drive_heads: int = 0
    drive_sectors: int = 0
    io_buffer_offset: int = 0
    win2k_install_hack: int = 0
    buffered_requests: list = field(default_factory=list)  # IDEBufferedRequest, newest first

    @property
    def present(self) -> bool:
        return self.blk is not None

    def view(self) -> dict:
        v = super().view()
        v["present"] = self.blk is not None
        return v


@dataclass(eq=False)
class IDEBus(_i161.IDEBus):
    """One channel (10.2): the 1.6.1 fields plus the retry registers."""

    retry_unit: int = -1
    retry_sector_num: int = 0
    retry_nsector: int = 0

    def view(self) -> dict:
        v = super().view()
        v.update(nIEN=bool(self.cmd & IDE_CTRL_DISABLE_IRQ), SRST=bool(self.cmd & IDE_CTRL_RESET),
                 HOB=bool(self.cmd & IDE_CTRL_HOB), retry_unit=self.retry_unit,
                 retry_sector_num=self.retry_sector_num, retry_nsector=self.retry_nsector)
        return v


def ide_bus_active_if(bus: IDEBus) -> IDEState:
    """The drive selected on this bus (10.2's name for idebus_active_if)."""
    return bus.ifs[bus.unit]
