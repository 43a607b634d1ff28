"""hw/ide/ioport.c (QEMU v10.2.0): register a channel's ports (1.6.1 had ide_init_ioport in core.c).

The lists it registers, `ide_portio_list` / `ide_portio2_list`, are in hw/ide/core.c (core.py here).
"""
from __future__ import annotations

from ....trace.tracepoint import tracepoint
from ...system.ioport import PortioList, portio_list_add, portio_list_init
from .core import ide_portio2_list, ide_portio_list
from .internal import IDEBus


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
