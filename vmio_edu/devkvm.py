"""The seam between QEMU and the kernel: something that behaves like `/dev/kvm`.

QEMU talks to KVM only through file descriptors: ioctl() on /dev/kvm, on a VM fd and on a vCPU fd, plus an
mmap of the vCPU fd that holds `struct kvm_run` (page 0) and the PIO data (page 1). vmio-edu keeps exactly
that seam. `open_dev_kvm("kvm")` opens the real device (vmio_edu.kvm); `open_dev_kvm("unicorn")` opens
the model of the Linux 3.7 kernel (vmio_edu.linux) running guest code on Unicorn. QEMU's model
(vmio_edu.qemu) cannot tell them apart, which is the point.

Contract for both engines
-------------------------
* `ioctl(request, arg)` takes the request numbers and ctypes structures of
  `vmio_edu.linux.include.uapi.linux.kvm`. It returns an int, or a new `KvmFile` for KVM_CREATE_VM and
  KVM_CREATE_VCPU. Failure raises OSError with the errno the kernel would give.
* KVM_SET_USER_MEMORY_REGION: `userspace_addr` is a real host address (QEMU's RAM is an mmap owned by the
  QEMU model; both engines map that same memory).
* KVM_RUN runs on the vCPU model thread. While the guest is halted inside the kernel (HLT with the in-kernel
  irqchip) the engine blocks that thread through the scheduler (`sched.block("halted")`), and KVM_IRQ_LINE_STATUS
  wakes it (`sched.wake(vcpu_thread)`). If the vCPU halts with nothing left to wake it, the scheduler goes
  idle and the run ends there: the machine reports that as the final HLT.
* Errors in the guest (bad opcode, triple fault, fetch from nowhere) come back as KVM_EXIT_INTERNAL_ERROR /
  KVM_EXIT_SHUTDOWN exits, or as `vmio_edu.errors.GuestFault`, never as a crash or a hang.
"""
from __future__ import annotations

import ctypes
from typing import Any, Protocol


class KvmFile(Protocol):
    """An open /dev/kvm, VM or vCPU file descriptor."""

    def ioctl(self, request: int, arg: "int | ctypes.Structure" = 0) -> "int | KvmFile": ...

    def mmap(self, length: int) -> memoryview: ...

    def close(self) -> None: ...


ENGINES = ("unicorn", "kvm", "auto")


def open_dev_kvm(engine: str, sched: Any = None, stack: Any = None) -> tuple[KvmFile, str, str]:
    """Open /dev/kvm for `engine`; returns (file, engine actually used, a note for the learner).

    "auto" uses the real device when it can be opened and says when it fell back to the model.
    `stack` (a vmio_edu.stacks.Stack) picks the kernel the emulated engine models: Linux 3.7 by default.
    """
    from .errors import EngineUnavailable

    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}: choose one of {', '.join(ENGINES)}")
    if engine in ("kvm", "auto"):
        try:
            from .kvm.device import open_real_kvm
            return open_real_kvm(sched), "kvm", ""
        except EngineUnavailable as e:
            if engine == "kvm":
                raise
            note = f"real KVM unavailable ({e}); using the emulated engine"
    else:
        note = ""
    if stack is None:
        from .linux.virt.kvm.kvm_main import open_emulated_kvm
    else:
        open_emulated_kvm = stack.entry("kernel")
    return open_emulated_kvm(sched), "unicorn", note
