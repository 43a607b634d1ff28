"""hw/pci/pci_host.c (QEMU v1.6.1): PCI configuration mechanism #1, the ports 0xcf8 and 0xcfc.

The guest writes an address to 0xcf8 as one 32-bit OUT: bit 31 = enable, bus in bits 23:16, device/function
(devfn) in 15:8, register in 7:2. Then it reads or writes the register's bytes through 0xcfc-0xcff
(`addr & 3` picks the byte lane). With bit 31 clear, data reads return all ones and writes vanish; a
devfn with no device reads all ones too: that is how a driver sees an empty slot.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ....trace.tracepoint import tracepoint
from ...memory import MemoryRegionOps
from .pci import PCI_CONFIG_SPACE_SIZE, PCIBus, PCIDevice, pci_find_device


@dataclass(eq=False)
class PCIHostState:
    """The host bridge's config-address latch (the last 32-bit write to 0xcf8) and its root bus."""

    bus: PCIBus | None = None
    config_reg: int = 0

    def view(self) -> dict:
        c = self.config_reg
        return {"config_reg": c, "enabled": bool(c >> 31), "bus": (c >> 16) & 0xFF,
                "devfn": (c >> 8) & 0xFF, "register": c & 0xFC}


@tracepoint("qemu-pci", args=("bus", "addr"))
def pci_dev_find_by_addr(bus: PCIBus, addr: int) -> PCIDevice | None:
    return pci_find_device(bus, (addr >> 16) & 0xFF, (addr >> 8) & 0xFF)


@tracepoint("qemu-pci", args=("pci_dev", "addr", "limit", "val", "len"))
def pci_host_config_write_common(pci_dev: PCIDevice, addr: int, limit: int, val: int, len: int) -> None:  # noqa: A002
    pci_dev.config_write(pci_dev, addr, val, min(len, limit - addr))


@tracepoint("qemu-pci", args=("pci_dev", "addr", "limit", "len"))
def pci_host_config_read_common(pci_dev: PCIDevice, addr: int, limit: int, len: int) -> int:  # noqa: A002
    return pci_dev.config_read(pci_dev, addr, min(len, limit - addr))


@tracepoint("qemu-pci", args=("s", "addr", "val", "len"))
def pci_data_write(s: PCIBus, addr: int, val: int, len: int) -> None:  # noqa: A002
    """Write `len` bytes of config space of the device the address names (nothing if the slot is empty)."""
    pci_dev = pci_dev_find_by_addr(s, addr)
    if pci_dev is None:
        return
    pci_host_config_write_common(pci_dev, addr & (PCI_CONFIG_SPACE_SIZE - 1), PCI_CONFIG_SPACE_SIZE, val, len)


@tracepoint("qemu-pci", args=("s", "addr", "len"))
def pci_data_read(s: PCIBus, addr: int, len: int) -> int:  # noqa: A002
    """Read config space; an empty slot reads all ones (~0, truncated to the access by the caller)."""
    pci_dev = pci_dev_find_by_addr(s, addr)
    if pci_dev is None:
        return 0xFFFFFFFF
    return pci_host_config_read_common(pci_dev, addr & (PCI_CONFIG_SPACE_SIZE - 1), PCI_CONFIG_SPACE_SIZE, len)


@tracepoint("qemu-pci", args=("opaque=s", "addr", "val", "len"))
def pci_host_config_write(s: PCIHostState, addr: int, val: int, len: int) -> None:  # noqa: A002
    """0xcf8: only a whole 32-bit write at offset 0 sets the address latch."""
    if addr != 0 or len != 4:
        return
    s.config_reg = val


@tracepoint("qemu-pci", args=("opaque=s", "addr", "len"))
def pci_host_config_read(s: PCIHostState, addr: int, len: int) -> int:  # noqa: A002
    return s.config_reg


@tracepoint("qemu-pci", args=("opaque=s", "addr", "val", "len"))
def pci_host_data_write(s: PCIHostState, addr: int, val: int, len: int) -> None:  # noqa: A002
    if s.config_reg & (1 << 31):
        pci_data_write(s.bus, s.config_reg | (addr & 3), val, len)


@tracepoint("qemu-pci", args=("opaque=s", "addr", "len"))
def pci_host_data_read(s: PCIHostState, addr: int, len: int) -> int:  # noqa: A002
    if not s.config_reg & (1 << 31):
        return 0xFFFFFFFF
    return pci_data_read(s.bus, s.config_reg | (addr & 3), len)


def _conf_ops(read: Any, write: Any) -> MemoryRegionOps:
    return MemoryRegionOps(read, write)


pci_host_conf_le_ops = _conf_ops(pci_host_config_read, pci_host_config_write)
pci_host_data_le_ops = _conf_ops(pci_host_data_read, pci_host_data_write)
