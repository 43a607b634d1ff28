"""hw/pci/pci.c (QEMU v1.6.1): PCI devices, their 256-byte config space, BARs and INTx lines.

A device's config space is bytes with a write mask (`wmask`: which bits the guest may change) and a
write-1-to-clear mask. Writing the command register or a BAR remaps the device's regions
(`pci_update_mappings`): an I/O BAR appears in the I/O address space only once the guest has given it an
address and set PCI_COMMAND_IO. An interrupt goes `pci_set_irq` (the device's INTx pin) →
`pci_change_irq_level` → the bus's `map_irq` (which PIRQ line the slot's pin lands on) → `set_irq`
(PIIX3's router, hw/pci-host/piix.c).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, Callable

from ....trace.tracepoint import tracepoint
from ...memory import MemoryRegion, memory_region_add_subregion, memory_region_del_subregion
from ..core.irq import IRQState, qemu_allocate_irqs

# include/hw/pci/pci_regs.h / pci.h
PCI_CONFIG_SPACE_SIZE = 0x100
PCI_CONFIG_HEADER_SIZE = 0x40
PCI_VENDOR_ID, PCI_DEVICE_ID, PCI_COMMAND, PCI_STATUS = 0x00, 0x02, 0x04, 0x06
PCI_REVISION_ID, PCI_CLASS_PROG, PCI_CLASS_DEVICE = 0x08, 0x09, 0x0A
PCI_CACHE_LINE_SIZE, PCI_HEADER_TYPE = 0x0C, 0x0E
PCI_BASE_ADDRESS_0 = 0x10
PCI_SUBSYSTEM_VENDOR_ID, PCI_SUBSYSTEM_ID = 0x2C, 0x2E
PCI_ROM_ADDRESS = 0x30
PCI_INTERRUPT_LINE, PCI_INTERRUPT_PIN = 0x3C, 0x3D
PCI_COMMAND_IO, PCI_COMMAND_MEMORY, PCI_COMMAND_MASTER = 0x1, 0x2, 0x4
PCI_COMMAND_INTX_DISABLE = 0x400
PCI_STATUS_INTERRUPT = 0x08
PCI_HEADER_TYPE_MULTI_FUNCTION = 0x80
PCI_BASE_ADDRESS_SPACE_IO = 0x01
PCI_NUM_REGIONS = 7
PCI_NUM_PINS = 4
PCI_BAR_UNMAPPED = -1  # ~(pcibus_t)0


def PCI_DEVFN(slot: int, func: int) -> int:  # noqa: N802 - the C macro
    return ((slot & 0x1F) << 3) | (func & 0x07)


@dataclass(eq=False)
class PCIIORegion:
    """One BAR: where it is mapped now (`addr`, or PCI_BAR_UNMAPPED), its size, type and region."""

    addr: int = PCI_BAR_UNMAPPED
    size: int = 0
    type: int = 0
    memory: MemoryRegion | None = None
    address_space: MemoryRegion | None = None

    def view(self) -> dict:
        return {"addr": None if self.addr == PCI_BAR_UNMAPPED else self.addr, "size": self.size,
                "io": bool(self.type & PCI_BASE_ADDRESS_SPACE_IO),
                "region": self.memory.name if self.memory is not None else None}


@dataclass(eq=False)
class PCIDevice:
    """A PCI function: config space, masks, BARs and its four INTx pins (`irq[0]` is INTA#)."""

    name: str = ""
    devfn: int = 0
    bus: "PCIBus | None" = None
    config: bytearray = field(default_factory=lambda: bytearray(PCI_CONFIG_SPACE_SIZE))
    wmask: bytearray = field(default_factory=lambda: bytearray(PCI_CONFIG_SPACE_SIZE))
    w1cmask: bytearray = field(default_factory=lambda: bytearray(PCI_CONFIG_SPACE_SIZE))
    io_regions: list[PCIIORegion] = field(default_factory=lambda: [PCIIORegion() for _ in range(PCI_NUM_REGIONS)])
    irq: list[IRQState] = field(default_factory=list)
    irq_state: int = 0  # one bit per pin: the level the device drives
    # PCIDeviceClass hooks (pci_default_* unless the device overrides them, as virtio-pci and PIIX3 do)
    config_read: Callable[["PCIDevice", int, int], int] | None = None
    config_write: Callable[["PCIDevice", int, int, int], None] | None = None
    owner: Any = None  # the device state this function is the first member of (C's DO_UPCAST)

    def word(self, off: int) -> int:
        return struct.unpack_from("<H", self.config, off)[0]

    def view(self) -> dict:
        c = self.config
        return {"name": self.name, "bdf": f"00:{self.devfn >> 3:02x}.{self.devfn & 7}",
                "vendor_id": self.word(PCI_VENDOR_ID), "device_id": self.word(PCI_DEVICE_ID),
                "subsystem_vendor_id": self.word(PCI_SUBSYSTEM_VENDOR_ID),
                "subsystem_id": self.word(PCI_SUBSYSTEM_ID), "revision": c[PCI_REVISION_ID],
                "class": (c[PCI_CLASS_DEVICE + 1] << 16) | (c[PCI_CLASS_DEVICE] << 8) | c[PCI_CLASS_PROG],
                "command": self.word(PCI_COMMAND), "status": self.word(PCI_STATUS),
                "bars": [r.view() for r in self.io_regions if r.size],
                "interrupt_line": c[PCI_INTERRUPT_LINE], "interrupt_pin": c[PCI_INTERRUPT_PIN],
                "irq_state": self.irq_state}


@dataclass(eq=False)
class PCIBus:
    """A root PCI bus: its devices by devfn, the INTx router (`set_irq`, `map_irq`) and the address
    spaces BARs map into."""

    name: str = "pci.0"
    devices: dict[int, PCIDevice] = field(default_factory=dict)
    set_irq: Callable[[Any, int, int], None] | None = None
    map_irq: Callable[[PCIDevice, int], int] | None = None
    irq_opaque: Any = None
    irq_count: list[int] = field(default_factory=list)
    nirq: int = 0
    address_space_io: MemoryRegion | None = None
    address_space_mem: MemoryRegion | None = None

    def view(self) -> dict:
        return {"name": self.name, "irq_count": list(self.irq_count),
                "devices": [d.view() for _, d in sorted(self.devices.items())]}


def pci_bus_new(name: str, address_space_mem: MemoryRegion | None, address_space_io: MemoryRegion) -> PCIBus:
    return PCIBus(name=name, address_space_io=address_space_io, address_space_mem=address_space_mem)


@tracepoint("qemu-pci", args=("bus", "set_irq", "map_irq", "irq_opaque", "nirq"))
def pci_bus_irqs(bus: PCIBus, set_irq: Callable, map_irq: Callable, irq_opaque: Any, nirq: int) -> None:
    """Give the bus its INTx router: `map_irq(dev, pin)` picks the line, `set_irq(opaque, line, level)`."""
    bus.set_irq, bus.map_irq, bus.irq_opaque, bus.nirq = set_irq, map_irq, irq_opaque, nirq
    bus.irq_count = [0] * nirq


@tracepoint("qemu-pci", args=("bus", "irq_num"))
def pci_bus_get_irq_level(bus: PCIBus, irq_num: int) -> int:
    return 1 if bus.irq_count[irq_num] else 0


@tracepoint("qemu-pci", args=("bus", "bus_num", "devfn"))
def pci_find_device(bus: PCIBus, bus_num: int, devfn: int) -> PCIDevice | None:
    """The function at bus_num:devfn (the model has one root bus, number 0)."""
    if bus_num != 0:
        return None
    return bus.devices.get(devfn)


@tracepoint("qemu-pci", args=("dev",))
def pci_init_wmask(dev: PCIDevice) -> None:
    """Which header bits the guest may write: cache line size, interrupt line, command's I/O, memory,
    bus master and INTx-disable bits; everything past the standard header (device-specific space)."""
    dev.wmask[PCI_CACHE_LINE_SIZE] = 0xFF
    dev.wmask[PCI_INTERRUPT_LINE] = 0xFF
    struct.pack_into("<H", dev.wmask, PCI_COMMAND,
                     PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_INTX_DISABLE)
    dev.wmask[PCI_CONFIG_HEADER_SIZE:] = b"\xff" * (PCI_CONFIG_SPACE_SIZE - PCI_CONFIG_HEADER_SIZE)


@tracepoint("qemu-pci", args=("pci_dev", "bus", "name", "devfn"))
def do_pci_register_device(pci_dev: PCIDevice, bus: PCIBus, name: str, devfn: int, vendor_id: int,
                           device_id: int, class_id: int, revision: int = 0,
                           header_type: int = 0) -> PCIDevice:
    """Put the device on the bus at `devfn`: ids and class into config space, masks, and its four INTx
    pins as qemu_irqs whose handler is pci_set_irq."""
    if devfn in bus.devices:
        raise ValueError(f"PCI: slot {devfn >> 3} function {devfn & 7} not available for {name}, in use by "
                         f"{bus.devices[devfn].name}")
    pci_dev.bus, pci_dev.devfn, pci_dev.name = bus, devfn, name
    struct.pack_into("<HH", pci_dev.config, PCI_VENDOR_ID, vendor_id, device_id)
    pci_dev.config[PCI_REVISION_ID] = revision
    struct.pack_into("<H", pci_dev.config, PCI_CLASS_DEVICE, class_id)
    pci_dev.config[PCI_HEADER_TYPE] = header_type
    pci_init_wmask(pci_dev)
    pci_dev.config_read = pci_dev.config_read or pci_default_read_config
    pci_dev.config_write = pci_dev.config_write or pci_default_write_config
    pci_dev.irq = qemu_allocate_irqs(pci_set_irq, pci_dev, PCI_NUM_PINS)
    bus.devices[devfn] = pci_dev
    return pci_dev


@tracepoint("qemu-pci", args=("d", "reg"))
def pci_bar(d: PCIDevice, reg: int) -> int:
    return PCI_BASE_ADDRESS_0 + reg * 4 if reg != PCI_NUM_REGIONS - 1 else PCI_ROM_ADDRESS


@tracepoint("qemu-pci", args=("pci_dev", "region_num", "type", "memory"))
def pci_register_bar(pci_dev: PCIDevice, region_num: int, type: int, memory: MemoryRegion) -> None:  # noqa: A002
    """Declare BAR `region_num`: its size (a power of two) becomes the BAR's write mask, so the guest
    reads the size back by writing all ones (the classic BAR sizing). Unmapped until the guest maps it."""
    size = memory.size
    if size & (size - 1):
        raise ValueError(f"PCI region size must be pow2 type={type:#x}, size={size:#x}")
    r = pci_dev.io_regions[region_num]
    r.addr, r.size, r.type, r.memory = PCI_BAR_UNMAPPED, size, type, memory
    addr = pci_bar(pci_dev, region_num)
    struct.pack_into("<I", pci_dev.config, addr, type)
    struct.pack_into("<I", pci_dev.wmask, addr, ~(size - 1) & 0xFFFFFFFF)
    r.address_space = pci_dev.bus.address_space_io if type & PCI_BASE_ADDRESS_SPACE_IO \
        else pci_dev.bus.address_space_mem


@tracepoint("qemu-pci", args=("d", "reg", "type", "size"))
def pci_bar_address(d: PCIDevice, reg: int, type: int, size: int) -> int:  # noqa: A002
    """Where the guest has put BAR `reg`, or PCI_BAR_UNMAPPED (decoding off, address 0, past 64 KiB)."""
    cmd = d.word(PCI_COMMAND)
    if type & PCI_BASE_ADDRESS_SPACE_IO:
        if not cmd & PCI_COMMAND_IO:
            return PCI_BAR_UNMAPPED
        new_addr = struct.unpack_from("<I", d.config, pci_bar(d, reg))[0] & ~(size - 1)
        last_addr = new_addr + size - 1
        if last_addr <= new_addr or new_addr == 0 or last_addr > 0xFFFF:  # only 64K ioports on PC
            return PCI_BAR_UNMAPPED
        return new_addr
    return PCI_BAR_UNMAPPED  # memory BARs: no device in the model has one


@tracepoint("qemu-pci", args=("d",))
def pci_update_mappings(d: PCIDevice) -> None:
    """Map, move or unmap every BAR whose decoded address changed."""
    for i, r in enumerate(d.io_regions):
        if not r.size:
            continue
        new_addr = pci_bar_address(d, i, r.type, r.size)
        if new_addr == r.addr:
            continue
        if r.addr != PCI_BAR_UNMAPPED:
            memory_region_del_subregion(r.address_space, r.memory)
        r.addr = new_addr
        if r.addr != PCI_BAR_UNMAPPED:
            memory_region_add_subregion(r.address_space, r.addr, r.memory)  # _overlap(..., 1) in C


@tracepoint("qemu-pci", args=("d",))
def pci_irq_disabled(d: PCIDevice) -> bool:
    return bool(d.word(PCI_COMMAND) & PCI_COMMAND_INTX_DISABLE)


@tracepoint("qemu-pci", args=("d", "was_irq_disabled"))
def pci_update_irq_disabled(d: PCIDevice, was_irq_disabled: bool) -> None:
    disabled = pci_irq_disabled(d)
    if disabled == was_irq_disabled:
        return
    for i in range(PCI_NUM_PINS):
        state = (d.irq_state >> i) & 1
        pci_change_irq_level(d, i, -state if disabled else state)


@tracepoint("qemu-pci", args=("d", "address", "len"))
def pci_default_read_config(d: PCIDevice, address: int, len: int) -> int:  # noqa: A002
    return int.from_bytes(d.config[address:address + len], "little")


def _ranges_overlap(a: int, alen: int, b: int, blen: int) -> bool:
    return a < b + blen and b < a + alen


@tracepoint("qemu-pci", args=("d", "addr", "val", "l"))
def pci_default_write_config(d: PCIDevice, addr: int, val: int, l: int) -> None:  # noqa: E741
    """Store the bytes the masks allow; a write to a BAR or the command register remaps the BARs, and
    flipping INTx-disable re-drives the pins."""
    was_irq_disabled = pci_irq_disabled(d)
    for i in range(l):
        wmask, w1cmask = d.wmask[addr + i], d.w1cmask[addr + i]
        d.config[addr + i] = (d.config[addr + i] & ~wmask) | (val & wmask)
        d.config[addr + i] &= ~(val & w1cmask) & 0xFF
        val >>= 8
    if _ranges_overlap(addr, l, PCI_BASE_ADDRESS_0, 24) or _ranges_overlap(addr, l, PCI_ROM_ADDRESS, 4) \
            or addr <= PCI_COMMAND < addr + l:
        pci_update_mappings(d)
    if addr <= PCI_COMMAND < addr + l:
        pci_update_irq_disabled(d, was_irq_disabled)


@tracepoint("qemu-pci", args=("opaque=pci_dev", "irq_num", "level"))
def pci_set_irq(pci_dev: PCIDevice, irq_num: int, level: int) -> None:
    """The device drives INTx pin `irq_num`: on a change, note it (status bit 3) and tell the bus,
    unless the guest set INTx-disable."""
    change = level - ((pci_dev.irq_state >> irq_num) & 1)
    if not change:
        return
    pci_dev.irq_state = (pci_dev.irq_state & ~(1 << irq_num)) | (level << irq_num)
    status = pci_dev.word(PCI_STATUS)
    status = status | PCI_STATUS_INTERRUPT if pci_dev.irq_state else status & ~PCI_STATUS_INTERRUPT
    struct.pack_into("<H", pci_dev.config, PCI_STATUS, status)
    if pci_irq_disabled(pci_dev):
        return
    pci_change_irq_level(pci_dev, irq_num, change)


@tracepoint("qemu-pci", args=("pci_dev", "irq_num", "change"))
def pci_change_irq_level(pci_dev: PCIDevice, irq_num: int, change: int) -> None:
    """Count the pin on the PIRQ line the slot maps it to; the line is high while any device drives it."""
    bus = pci_dev.bus
    irq_num = bus.map_irq(pci_dev, irq_num)
    bus.irq_count[irq_num] += change
    bus.set_irq(bus.irq_opaque, irq_num, 1 if bus.irq_count[irq_num] != 0 else 0)
