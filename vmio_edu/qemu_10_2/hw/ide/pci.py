"""hw/ide/pci.c (QEMU v10.2.0): the BMDMA side of PCI IDE, which puts `bmdma_irq` in front of the bus's
IRQ line. PIO never starts DMA; only the IRQ hook is on this path."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ....qemu.hw.ide import pci as _pci161
from ....trace.stacks import unchanged
from ....trace.tracepoint import tracepoint
from ..core.irq import qemu_allocate_irq, qemu_set_irq  # noqa: F401 - bmdma_irq's callee
from .internal import IDEBus, IDEDMA

BM_STATUS_INT = 0x04


class _BmdmaOps:
    """bmdma_ops: DMA hooks (not on the PIO path); no pio_transfer or cmd_done."""

    pio_transfer = None
    cmd_done = None

    @staticmethod
    def reset(dma: Any) -> None:
        bm = dma.bm
        bm.cmd = bm.status = bm.addr = 0


@dataclass(eq=False)
class BMDMAState:
    cmd: int = 0
    status: int = 0
    addr: int = 0
    irq: Any = None
    bus: Any = None
    pci_dev: Any = None
    dma: IDEDMA = field(default_factory=IDEDMA)

    def view(self) -> dict:
        return {"cmd": self.cmd, "status": self.status, "int": bool(self.status & BM_STATUS_INT)}


@dataclass(eq=False)
class PCIIDEState:
    bus: list[IDEBus] = field(default_factory=list)
    bmdma: list[BMDMAState] = field(default_factory=list)

    def view(self) -> dict:
        return {"bus": [b.view() for b in self.bus], "bmdma": [b.view() for b in self.bmdma]}


# The same text at both tags: https://github.com/qemu/qemu/blob/v1.6.1/hw/ide/pci.c#L276 and
# https://github.com/qemu/qemu/blob/v10.2.0/hw/ide/pci.c#L364
bmdma_irq = unchanged(_pci161.bmdma_irq, globals(), layer="qemu-ide", args=("opaque", "n", "level"))


@tracepoint("qemu-ide", args=("bus", "bm", "d"))
def bmdma_init(bus: IDEBus, bm: BMDMAState, d: PCIIDEState) -> None:
    """Make BMDMA the bus's DMA provider and put bmdma_irq in front of the bus's IRQ line."""
    if bus.dma is bm.dma:
        return
    bm.dma.ops = _BmdmaOps()
    bm.dma.bm = bm
    bus.dma = bm.dma
    bm.irq = bus.irq
    bus.irq = qemu_allocate_irq(bmdma_irq, bm, 0)
    bm.bus = bus
    bm.pci_dev = d
