"""hw/ide/ioport.c (QEMU v10.2.0): register a channel's ports (1.6.1 had ide_init_ioport in core.c).

`ide_portio_list` / `ide_portio2_list` themselves are in hw/ide/core.c:84-94: the task file at 0x1f0-0x1f7
(byte entries over 8 ports, the 2- and 4-byte data entries with len 1) and 0x3f6 (alternate status /
device control).
"""
from __future__ import annotations

from ....trace.tracepoint import tracepoint
from ...system.ioport import MemoryRegionPortio, PortioList, portio_list_add, portio_list_init
from .core import (ide_ctrl_write, ide_data_readl, ide_data_readw, ide_data_writel, ide_data_writew,
                   ide_ioport_read, ide_ioport_write, ide_status_read)
from .internal import IDEBus

ide_portio_list = [
    MemoryRegionPortio(0, 8, 1, read=ide_ioport_read, write=ide_ioport_write),
    MemoryRegionPortio(0, 1, 2, read=ide_data_readw, write=ide_data_writew),
    MemoryRegionPortio(0, 1, 4, read=ide_data_readl, write=ide_data_writel),
]
ide_portio2_list = [MemoryRegionPortio(0, 1, 1, read=ide_status_read, write=ide_ctrl_write)]


@tracepoint("qemu-ide", args=("bus", "dev", "iobase", "iobase2"))
def ide_init_ioport(bus: IDEBus, dev, iobase: int, iobase2: int, address_space_io=None) -> int:
    """isa_register_portio_list for both lists, in the ISA bus's I/O space (`address_space_io`)."""
    bus.portio_list = PortioList()
    portio_list_init(bus.portio_list, dev, ide_portio_list, bus, "ide")
    portio_list_add(bus.portio_list, address_space_io, iobase)
    if iobase2:
        bus.portio2_list = PortioList()
        portio_list_init(bus.portio2_list, dev, ide_portio2_list, bus, "ide")
        portio_list_add(bus.portio2_list, address_space_io, iobase2)
    return 0
