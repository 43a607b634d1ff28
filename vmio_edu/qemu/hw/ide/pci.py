"""hw/ide/pci.c (QEMU v1.6.1): the PCI IDE controller's bus-master DMA (BMDMA) state, reduced to what PIO
uses: the IRQ hook and the "retry after a stop" path.

`bmdma_init` puts `bmdma_irq` between the IDE bus and its ISA line, so every IDE interrupt first sets
BM_STATUS_INT in the BMDMA status register (a driver using DMA reads it there), then goes on to IRQ 14.
When the werror policy stopped the VM, `bmdma_restart_cb` runs on `cont`, and its bottom half re-issues
the stopped PIO request (`ide_sector_write` / `ide_sector_read`) on the drive `set_unit` remembered.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ....trace.tracepoint import tracepoint
from ...async_ import qemu_bh_delete, qemu_bh_schedule
from ...main_loop import qemu_bh_new
from ..core.irq import IRQState, qemu_allocate_irqs, qemu_set_irq
from .core import IDEModelError, ide_sector_read, ide_sector_write
from .internal import (BM_STATUS_DMA_RETRY, BM_STATUS_INT, BM_STATUS_PIO_RETRY, BM_STATUS_RETRY_FLUSH,
                       BM_STATUS_RETRY_READ, IDEBus, IDEDMA, IDEDMAOps, IDEState)


@dataclass(eq=False)
class BMDMAState(IDEDMA):
    """One channel's bus-master DMA registers. In C an IDEDMA is its first member (DO_UPCAST); here it is
    the base class, so `bm.dma is bm`."""

    cmd: int = 0
    status: int = 0  # BM_STATUS_* (bit 2 = INT: an IDE interrupt happened)
    addr: int = 0
    bus: IDEBus | None = None
    irq: IRQState | None = None  # the ISA line this channel's interrupts go on to
    unit: int = -1  # the drive a stopped request belongs to (-1: none); QEMU's (uint8_t)-1
    pci_dev: Any = None
    bh: Any = None  # the restart bottom half while one is pending

    @property
    def dma(self) -> "BMDMAState":
        return self

    def view(self) -> dict:
        return {"cmd": self.cmd, "status": self.status, "int": bool(self.status & BM_STATUS_INT),
                "unit": self.unit, "restart_pending": self.bh is not None}


@dataclass(eq=False)
class PCIIDEState:
    """The PIIX3 IDE function: two channels and their BMDMA states."""

    bus: list[IDEBus] = field(default_factory=list)
    bmdma: list[BMDMAState] = field(default_factory=list)
    # model-only: (callback, opaque) pairs QEMU registers with qemu_add_vm_change_state_handler
    vm_change_state_handlers: list[tuple] = field(default_factory=list)

    def view(self) -> dict:
        return {"bus": [b.view() for b in self.bus], "bmdma": [b.view() for b in self.bmdma]}


def bmdma_active_if(bm: BMDMAState) -> IDEState:
    """The drive whose request was stopped (set by set_unit)."""
    if bm.unit == -1:
        raise IDEModelError("bmdma_active_if: no stopped request (set_unit was never called)")
    return bm.bus.ifs[bm.unit]


def bmdma_start_transfer(dma: IDEDMA) -> int:
    return 0


def bmdma_set_unit(dma: IDEDMA, unit: int) -> int:
    dma.unit = unit
    return 0


def bmdma_reset(dma: IDEDMA) -> int:
    bm = dma
    bm.cmd = bm.status = bm.addr = 0
    return 0


@tracepoint("qemu-ide", args=("opaque",))
def bmdma_restart_bh(opaque: BMDMAState) -> None:
    """After `cont`: re-issue the PIO request that stopped the VM (a write: ide_sector_write writes the
    same io_buffer to the same sector again)."""
    bm = opaque
    bus = bm.bus
    qemu_bh_delete(bm.bh)
    bm.bh = None
    if bm.unit == -1:
        return
    is_read = bool(bus.error_status & BM_STATUS_RETRY_READ)
    # cleared first: the retry may fail again and set a new error status
    error_status = bus.error_status
    bus.error_status = 0
    if error_status & BM_STATUS_DMA_RETRY:  # pragma: no cover - DMA is not modelled
        raise NotImplementedError("DMA restart is not modelled")
    if error_status & BM_STATUS_PIO_RETRY:
        if is_read:
            ide_sector_read(bmdma_active_if(bm))
        else:
            ide_sector_write(bmdma_active_if(bm))
    elif error_status & BM_STATUS_RETRY_FLUSH:  # pragma: no cover - FLUSH CACHE is not modelled
        raise NotImplementedError("FLUSH CACHE restart is not modelled")


@tracepoint("qemu-ide", args=("opaque", "running", "state"))
def bmdma_restart_cb(opaque: IDEDMA, running: int, state: str) -> None:
    """VM run-state change: when the VM runs again, schedule bmdma_restart_bh on the main loop."""
    bm = opaque
    if not running:
        return
    if bm.bh is None:
        bm.bh = qemu_bh_new(bmdma_restart_bh, bm.dma)
        qemu_bh_schedule(bm.bh)


bmdma_ops = IDEDMAOps(start_transfer=bmdma_start_transfer, set_unit=bmdma_set_unit, reset=bmdma_reset,
                      restart_cb=bmdma_restart_cb)


@tracepoint("qemu-ide", args=("opaque", "n", "level"))
def bmdma_irq(opaque: BMDMAState, n: int, level: int) -> None:
    """The IDE bus's IRQ line as PCI IDE sees it: a raise also sets BM_STATUS_INT; both raise and lower
    pass on to the ISA line (IRQ 14 for the primary channel)."""
    bm = opaque
    if not level:
        qemu_set_irq(bm.irq, level)  # pass through lower
        return
    bm.status |= BM_STATUS_INT
    qemu_set_irq(bm.irq, level)  # trigger the real irq


@tracepoint("qemu-ide", args=("bus", "bm", "d"))
def bmdma_init(bus: IDEBus, bm: BMDMAState, d: PCIIDEState) -> None:
    """Make `bm` the bus's DMA provider and put bmdma_irq in front of the bus's IRQ line."""
    if bus.dma is bm:
        return
    bm.ops = bmdma_ops
    bus.dma = bm
    bm.irq = bus.irq
    bus.irq = qemu_allocate_irqs(bmdma_irq, bm, 1)[0]
    bm.pci_dev = d
