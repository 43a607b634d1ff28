"""The VM exits that never reach QEMU: handled inside the (emulated) kernel, the vCPU straight back in.

API (stable):
    m.kernel_exits                 # list[KernelExitRecord], in order (Machine; emulated engine only)
    rec.reason                     # "IO(ioeventfd)", "IO(pic)", "EXTERNAL_INTERRUPT", "HLT", ...
    rec.exit_reason                # the VMX basic exit reason number (30, 1, 12, ...)
    rec.rip, rec.direction, rec.size, rec.port, rec.data   # as in ExitRecord (I/O exits only)
    rec.thread                     # the model thread that took it (the vCPU thread)
    count_kernel_exits(m.kernel_exits) -> {"IO(ioeventfd)": 3, "EXTERNAL_INTERRUPT": 2, ...}

`Machine.exits` lists the exits to userspace (what KVM_RUN returned to QEMU); both engines agree on those,
exit by exit. `Machine.kernel_exits` is the other half, separate from it: exits whose handler returned 1
in Linux 3.7's `vcpu_enter_guest`, so `__vcpu_run` entered the guest again without returning from
KVM_RUN. Reasons, by the VMX exit taken:
* "IO(<device>)": a port access an in-kernel device on the KVM PIO bus took: "IO(ioeventfd)" (a
  KVM_IOEVENTFD registration, virt/kvm/eventfd.c) or "IO(pic)" (the in-kernel i8259). A KVM MMIO bus
  device gives "MMIO(<device>)" the same way.
* "IO(emulator)": an I/O exit the instruction emulator finished without any device (a `rep outsw`
  re-entered with RCX=0 after its last element went out).
* "EXTERNAL_INTERRUPT": the host timer tick (see vmio_edu/linux/kernel/sched/core.py).
* otherwise the VMX exit's name: "HLT" (the in-kernel irqchip halts the vCPU in the kernel),
  "PENDING_INTERRUPT" (an interrupt window opened), "EXCEPTION_NMI" (a #UD re-injected), ...

On the real engine (/dev/kvm) the kernel's own exits are invisible to userspace, so `m.kernel_exits` is
empty there. Their effect is visible: an ioeventfd's signals add up in its eventfd counter (read(2) on the
eventfd returns the count; `vmio_edu.linux.fs.eventfd.eventfd_count(fd)` peeks at it via /proc without
consuming it), and a spinning guest is kicked out of KVM_RUN by vmio_edu.kvm.kick instead of ticking.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from ..cpu import vmcs as V

_VMX_NAMES = {v: k[len("EXIT_REASON_"):] for v, k in V.EXIT_REASON_NAMES.items()}
_IO_DEVICE_KIND = {"pic-master": "pic", "pic-slave": "pic", "pic-elcr": "pic"}


@dataclass
class KernelExitRecord:
    """One VM exit handled inside KVM (never seen by QEMU)."""

    reason: str
    exit_reason: int
    rip: int | None = None
    thread: str | None = None
    direction: str | None = None
    size: int | None = None
    port: int | None = None
    data: str | None = None  # hex of the bytes written (OUT) or read (IN)
    phys_addr: int | None = None  # MMIO only

    def to_json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


def _device_kind(name: str | None) -> str | None:
    return None if name is None else _IO_DEVICE_KIND.get(name, name)


class KernelExitRecorder:
    """Listens to the emulated kernel's `kvm_exit_in_kernel` point event (arch/x86/kvm/x86.py)."""

    def __init__(self) -> None:
        self.exits: list[KernelExitRecord] = []

    def __call__(self, name: str, layer: str, fields: dict, ctx: Any) -> None:
        if name != "kvm_exit_in_kernel":
            return
        vcpu, reason = fields["vcpu"], fields["exit_reason"]
        device = _device_kind(fields.get("device"))
        rec = KernelExitRecord(_VMX_NAMES.get(reason, str(reason)), reason, fields.get("rip"),
                               getattr(ctx, "name", None))
        if reason == V.EXIT_REASON_IO_INSTRUCTION and device is not None:
            pio = vcpu.arch.pio
            rec.reason = f"IO({device})"
            rec.direction = "in" if pio.in_ else "out"
            rec.size, rec.port = pio.size, pio.port
            rec.data = bytes(vcpu.arch.pio_data[:pio.size]).hex()
        elif reason == V.EXIT_REASON_IO_INSTRUCTION:
            rec.reason = "IO(emulator)"  # x86_emulate_instruction finished it (e.g. a rep string with RCX=0)
        elif reason in (V.EXIT_REASON_EPT_VIOLATION, V.EXIT_REASON_EPT_MISCONFIG) and device is not None:
            rec.reason = f"MMIO({device})"
            rec.phys_addr = vcpu.cpu.vmcs.GUEST_PHYSICAL_ADDRESS
        self.exits.append(rec)


def count_kernel_exits(exits: list[KernelExitRecord]) -> dict[str, int]:
    """How many exits of each reason, most frequent first."""
    return dict(Counter(e.reason for e in exits).most_common())
