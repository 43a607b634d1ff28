"""hw/ide/piix.c (QEMU v1.6.1): the PIIX3 IDE function of the PC's south bridge.

Two legacy channels at fixed ports: primary 0x1f0-0x1f7 + 0x3f6 on ISA IRQ 14, secondary 0x170-0x177 +
0x376 on IRQ 15. `-hda disk.img` becomes the primary master (`ide-hd`); the other three slots are empty.
"""
from __future__ import annotations

from ....trace.tracepoint import tracepoint
from ..core.irq import IRQState
from .core import ide_bus_reset, ide_create_drive, ide_init2, ide_init_ioport
from .internal import IDEBus
from .pci import BMDMAState, PCIIDEState, bmdma_init

# port_info[] of pci_piix_init_ports: (iobase, iobase2, isairq)
PORT_INFO = ((0x1F0, 0x3F6, 14), (0x170, 0x376, 15))


@tracepoint("qemu-ide", args=("d",))
def pci_piix_init_ports(d: PCIIDEState, isa_irqs: dict[int, IRQState | None], address_space_io) -> None:
    """Set up both channels: ports, drive slots on their ISA IRQ, and the BMDMA hook in front of the IRQ.
    (QEMU takes the IRQ from the ISA bus with isa_get_irq; the model is given the lines.)"""
    d.bus, d.bmdma = [], []
    for i, (iobase, iobase2, isairq) in enumerate(PORT_INFO):
        bus = IDEBus(bus_id=i, max_units=2)  # ide_bus_new
        d.bus.append(bus)
        ide_init_ioport(bus, None, iobase, iobase2, address_space_io)
        ide_init2(bus, isa_irqs.get(isairq))
        bm = BMDMAState()
        d.bmdma.append(bm)
        bmdma_init(bus, bm, d)
        bm.bus = bus
        d.vm_change_state_handlers.append((bus.dma.ops.restart_cb, bm.dma))  # qemu_add_vm_change_state_handler


def piix3_reset(d: PCIIDEState) -> None:
    """System reset (qemu_system_reset at start-up): both channels and their BMDMA registers."""
    for bus in d.bus:
        ide_bus_reset(bus)  # also resets the channel's BMDMA registers (bus.dma.ops.reset)


def pci_piix_ide_init(bs, isa_irq: IRQState | None, address_space_io, isa_irq15: IRQState | None = None,
                      ) -> PCIIDEState:
    """pci_piix3_ide_init + pci_ide_create_devs for `-hda`: the PIIX3 IDE function with `bs` as the
    primary master, interrupts on `isa_irq` (ISA IRQ 14, wrapped by bmdma_irq), then the start-up reset.
    The secondary channel exists (its ports answer) but has no drives; its IRQ 15 line may be None."""
    d = PCIIDEState()
    pci_piix_init_ports(d, {14: isa_irq, 15: isa_irq15}, address_space_io)
    if bs is not None:
        ide_create_drive(d.bus[0], 0, bs)
    piix3_reset(d)
    return d
