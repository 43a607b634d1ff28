"""hw/pci-host/piix.c (QEMU v1.6.1): the i440FX host bridge (00:00.0) and the PIIX3 PCI-to-ISA bridge
(00:01.0), reduced to what a PCI device on this PC needs: the config ports and INTx routing.

The host bridge owns ports 0xcf8/0xcfc (pci_host.c). PIIX3 routes the four PCI interrupt lines PIRQA-D
to ISA IRQs through its config registers 0x60-0x63 (PIIX_PIRQC); at reset they read 0x80 (routing off),
so firmware (SeaBIOS's piix_isa_bridge_setup) writes them, and so does vmio-edu's virtio guest. A slot's
INTA# lands on PIRQ[(slot - 1 + pin) & 3] (`pci_slot_get_pirq`). The chosen ISA IRQ is one of the GSI
lines of hw/i386/kvm/ioapic.c, so an interrupt ends as KVM_IRQ_LINE_STATUS like IDE's IRQ 14.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ....trace.tracepoint import tracepoint
from ...memory import MemoryRegion, memory_region_add_subregion
from ..core.irq import IRQState, qemu_set_irq
from ..pci.pci import (PCI_DEVFN, PCI_HEADER_TYPE_MULTI_FUNCTION, PCIBus, PCIDevice, do_pci_register_device,
                       pci_bus_get_irq_level, pci_bus_irqs, pci_bus_new, pci_default_write_config)
from ..pci.pci_host import PCIHostState, pci_host_conf_le_ops, pci_host_data_le_ops

PIIX_NUM_PIC_IRQS = 16  # i8259 interrupt controller
PIIX_NUM_PIRQS = 4  # PIRQ[A-D]
PIIX_PIRQC = 0x60

PCI_VENDOR_ID_INTEL = 0x8086
PCI_DEVICE_ID_INTEL_82441 = 0x1237  # i440FX host bridge
PCI_DEVICE_ID_INTEL_82371SB_0 = 0x7000  # PIIX3 PCI-to-ISA bridge
PCI_CLASS_BRIDGE_HOST = 0x0600
PCI_CLASS_BRIDGE_ISA = 0x0601


@dataclass(eq=False)
class PIIX3State:
    """The ISA bridge function: its config space (with the PIRQ routing) and the ISA lines it drives."""

    dev: PCIDevice = field(default_factory=PCIDevice)
    pic: list[IRQState] = field(default_factory=list)  # ISA IRQ lines (the GSI handlers)
    pic_levels: int = 0  # bit (pic_irq * 4 + pirq): PIRQ `pirq` is high and routed to `pic_irq`

    def view(self) -> dict:
        return {"pirq_route": [self.dev.config[PIIX_PIRQC + i] for i in range(PIIX_NUM_PIRQS)],
                "pic_levels": self.pic_levels}


@dataclass(eq=False)
class I440FXState:
    """The host bridge (PCIHostState with its config latch) and the two functions on the bus."""

    host: PCIHostState
    bus: PCIBus
    i440fx: PCIDevice
    piix3: PIIX3State

    def view(self) -> dict:
        return {"host": self.host.view(), "bus": self.bus.view(), "piix3": self.piix3.view()}


@tracepoint("qemu-pci", args=("pci_dev", "pci_intx"))
def pci_slot_get_pirq(pci_dev: PCIDevice, pci_intx: int) -> int:
    """Which PIRQ line a slot's pin lands on: the PC's swizzle, (pin + slot - 1) mod 4."""
    slot_addend = (pci_dev.devfn >> 3) - 1
    return (pci_intx + slot_addend) & 3


@tracepoint("qemu-pci", args=("piix3", "pic_irq"))
def piix3_set_irq_pic(piix3: PIIX3State, pic_irq: int) -> None:
    """Drive ISA IRQ `pic_irq` high while any PIRQ routed to it is high."""
    mask = ((1 << PIIX_NUM_PIRQS) - 1) << (pic_irq * PIIX_NUM_PIRQS)
    qemu_set_irq(piix3.pic[pic_irq], 1 if piix3.pic_levels & mask else 0)


@tracepoint("qemu-pci", args=("piix3", "pirq", "level"))
def piix3_set_irq_level(piix3: PIIX3State, pirq: int, level: int) -> None:
    """Note PIRQ `pirq`'s level under the ISA IRQ its routing register names; 0x80 (off) drops it."""
    pic_irq = piix3.dev.config[PIIX_PIRQC + pirq]
    if pic_irq >= PIIX_NUM_PIC_IRQS:
        return
    mask = 1 << (pic_irq * PIIX_NUM_PIRQS + pirq)
    piix3.pic_levels &= ~mask
    if level:
        piix3.pic_levels |= mask
    piix3_set_irq_pic(piix3, pic_irq)


@tracepoint("qemu-pci", args=("opaque=piix3", "pirq", "level"))
def piix3_set_irq(piix3: PIIX3State, pirq: int, level: int) -> None:
    """The bus's set_irq: a PIRQ line changed."""
    piix3_set_irq_level(piix3, pirq, level)


@tracepoint("qemu-pci", args=("piix3",))
def piix3_update_irq_levels(piix3: PIIX3State) -> None:
    """The routing changed: rebuild pic_levels from the bus's PIRQ levels."""
    piix3.pic_levels = 0
    for pirq in range(PIIX_NUM_PIRQS):
        piix3_set_irq_level(piix3, pirq, pci_bus_get_irq_level(piix3.dev.bus, pirq))


@tracepoint("qemu-pci", args=("dev", "address", "val", "len"))
def piix3_write_config(dev: PCIDevice, address: int, val: int, len: int) -> None:  # noqa: A002
    """Config write to PIIX3: a write touching 0x60-0x63 re-routes the PIRQ lines."""
    pci_default_write_config(dev, address, val, len)
    if address < PIIX_PIRQC + 4 and PIIX_PIRQC < address + len:
        piix3 = dev.owner
        piix3_update_irq_levels(piix3)
        for pic_irq in range(PIIX_NUM_PIC_IRQS):
            piix3_set_irq_pic(piix3, pic_irq)


@tracepoint("qemu-pci", args=("opaque=d",))
def piix3_reset(d: PIIX3State) -> None:
    """The PIIX3 registers at reset (only those the model uses): command = master, memory and I/O;
    PIRQ routing 0x80 = disabled on all four lines."""
    c = d.dev.config
    c[0x04], c[0x05], c[0x06], c[0x07] = 0x07, 0x00, 0x00, 0x02
    for i in range(PIIX_NUM_PIRQS):
        c[PIIX_PIRQC + i] = 0x80
    d.pic_levels = 0


@tracepoint("qemu-pci", args=("address_space_io", "pic"))
def i440fx_init(address_space_io: MemoryRegion, pic: list[IRQState]) -> I440FXState:
    """The PCI side of `pc_init1` with an i440FX: the host bridge's ports 0xcf8/0xcfc
    (i440fx_pcihost_initfn), bus pci.0, the host bridge function at 00:00.0 and PIIX3 at 00:01.0,
    whose router drives the ISA lines `pic`."""
    host = PCIHostState()
    memory_region_add_subregion(address_space_io, 0xCF8, MemoryRegion("pci-conf-idx", 4, pci_host_conf_le_ops, host))
    memory_region_add_subregion(address_space_io, 0xCFC, MemoryRegion("pci-conf-data", 4, pci_host_data_le_ops, host))
    bus = pci_bus_new("pci.0", None, address_space_io)
    host.bus = bus
    i440fx = do_pci_register_device(PCIDevice(), bus, "i440FX", PCI_DEVFN(0, 0), PCI_VENDOR_ID_INTEL,
                                    PCI_DEVICE_ID_INTEL_82441, PCI_CLASS_BRIDGE_HOST, revision=0x02)
    piix3 = PIIX3State(pic=pic)
    piix3.dev.config_write = piix3_write_config
    piix3.dev.owner = piix3  # DO_UPCAST(PIIX3State, dev, dev)
    do_pci_register_device(piix3.dev, bus, "PIIX3", PCI_DEVFN(1, 0), PCI_VENDOR_ID_INTEL,
                           PCI_DEVICE_ID_INTEL_82371SB_0, PCI_CLASS_BRIDGE_ISA,
                           header_type=PCI_HEADER_TYPE_MULTI_FUNCTION)
    pci_bus_irqs(bus, piix3_set_irq, pci_slot_get_pirq, piix3, PIIX_NUM_PIRQS)
    piix3_reset(piix3)
    return I440FXState(host, bus, i440fx, piix3)
