"""hw/ide/piix.c (QEMU v10.2.0): the PIIX3 IDE function (1.6.1's pci_piix_init_ports is pci_piix_init_bus,
one channel per call)."""
from __future__ import annotations

from ....trace.tracepoint import tracepoint
from .core import ide_bus_init_output_irq, ide_bus_reset, ide_create_drive
from .internal import IDEBus
from .ioport import ide_init_ioport
from .pci import BMDMAState, PCIIDEState, bmdma_init

PORT_INFO = ((0x1F0, 0x3F6, 14), (0x170, 0x376, 15))  # port_info[]: iobase, iobase2, isairq


@tracepoint("qemu-ide", args=("d", "i"))
def pci_piix_init_bus(d: PCIIDEState, i: int, isa_irqs: dict, address_space_io) -> bool:
    """Channel `i`: the bus, its ports, its output IRQ (ISA IRQ 14 / 15), BMDMA in front of the IRQ."""
    iobase, iobase2, isairq = PORT_INFO[i]
    bus = IDEBus(bus_id=i, max_units=2)  # ide_bus_init
    d.bus.append(bus)
    ide_init_ioport(bus, None, iobase, iobase2, address_space_io)
    ide_bus_init_output_irq(bus, isa_irqs.get(isairq))
    bm = BMDMAState()
    d.bmdma.append(bm)
    bmdma_init(bus, bm, d)
    return True


def pci_piix_ide_init(blk, isa_irqs: dict, address_space_io) -> PCIIDEState:
    """The PIIX3 IDE function with `blk` as the primary master (pci_ide_create_devs for -hda), then the
    system reset of both channels."""
    d = PCIIDEState()
    for i in range(2):
        pci_piix_init_bus(d, i, isa_irqs, address_space_io)
    if blk is not None:
        ide_create_drive(d.bus[0], 0, blk)
    for bus in d.bus:
        ide_bus_reset(bus)
    return d
