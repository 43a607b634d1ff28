"""vmio-edu: single-step a disk write through the real QEMU 1.6.1 / Linux 3.7 KVM I/O path.

Start with `Machine` (vmio_edu.machine). The package tree mirrors the real sources: `vmio_edu/qemu/` is
QEMU (kvm-all.c → qemu/kvm_all.py, hw/ide/core.c → qemu/hw/ide/core.py, ...), `vmio_edu/linux/` is the
Linux 3.7 host kernel (arch/x86/kvm/vmx.c → linux/arch/x86/kvm/vmx.py, ...).
"""
from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["Machine"]


def __getattr__(name: str):
    if name == "Machine":
        from .machine import Machine
        return Machine
    raise AttributeError(name)
