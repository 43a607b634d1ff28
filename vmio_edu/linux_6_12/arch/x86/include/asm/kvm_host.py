"""arch/x86/include/asm/kvm_host.h (Linux v6.12): the x86 part of a vCPU, `struct kvm_vcpu_arch`.

What the I/O path needs of it, as plain data. New since 3.7 and visible on this path:
* `struct kvm_pio_request` (kvm_host.h:408) remembers `linear_rip`, the CS-based address of the I/O
  instruction that went to userspace: `complete_fast_pio_out` / `complete_fast_pio_in` move RIP past it
  on the next KVM_RUN only if the vCPU is still there (userspace may have moved RIP meanwhile).
* the exit fastpath's verdicts, `enum exit_fastpath_completion` (kvm_host.h:211-216).
* EMULTYPE_* (kvm_host.h:2046-2054) and requests as KVM_ARCH_REQ(n) (kvm_host.h:84-88).
The register cache (`regs`, `regs_avail`, `regs_dirty`) works as in 3.7 (kvm_cache_regs.h).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

# enum kvm_reg and the register names: unchanged since 3.7
from vmio_edu.linux.arch.x86.include.asm.kvm_host import (NR_VCPU_REGS, REG_NAMES, VCPU_REGS_R8,  # noqa: F401
                                                          VCPU_REGS_RAX, VCPU_REGS_RBX, VCPU_REGS_RCX,
                                                          VCPU_REGS_RDI, VCPU_REGS_RDX, VCPU_REGS_RIP,
                                                          VCPU_REGS_RBP, VCPU_REGS_RSI, VCPU_REGS_RSP)

KVM_PIO_PAGE_OFFSET = 1  # arch/x86/include/uapi/asm/kvm.h:16
KVM_X86_SHADOW_INT_MOV_SS, KVM_X86_SHADOW_INT_STI = 0x01, 0x02  # uapi/asm/kvm.h:331-332
KVM_X86_QUIRK_OUT_7E_INC_RIP = 1 << 3  # uapi/asm/kvm.h:438; on unless userspace disables it

# include/linux/kvm_host.h:173 and KVM_ARCH_REQ(n) = n + KVM_REQUEST_ARCH_BASE (8)
KVM_REQ_UNBLOCK = 2
KVM_REQ_TRIPLE_FAULT = 8 + 2
KVM_REQ_EVENT = 8 + 6

EMULTYPE_NO_DECODE = 1 << 0
EMULTYPE_TRAP_UD = 1 << 1
EMULTYPE_SKIP = 1 << 2
EMULTYPE_ALLOW_RETRY_PF = 1 << 3
EMULTYPE_TRAP_UD_FORCED = 1 << 4
EMULTYPE_VMWARE_GP = 1 << 5
EMULTYPE_PF = 1 << 6
EMULTYPE_COMPLETE_USER_EXIT = 1 << 7

# enum exit_fastpath_completion
EXIT_FASTPATH_NONE, EXIT_FASTPATH_REENTER_GUEST, EXIT_FASTPATH_EXIT_HANDLED, EXIT_FASTPATH_EXIT_USERSPACE = 0, 1, 2, 3
FASTPATH_NAMES = ("EXIT_FASTPATH_NONE", "EXIT_FASTPATH_REENTER_GUEST", "EXIT_FASTPATH_EXIT_HANDLED",
                  "EXIT_FASTPATH_EXIT_USERSPACE")


@dataclass
class kvm_pio_request:
    """vcpu->arch.pio (kvm_host.h:408-414): the port access userspace still has to answer (count > 0)."""

    linear_rip: int = 0
    count: int = 0
    in_: bool = False  # `in` is a Python keyword
    port: int = 0
    size: int = 0


@dataclass
class kvm_queued_exception:
    """vcpu->arch.exception: 6.12 separates `pending` (to be delivered) from `injected` (being delivered)."""

    pending: bool = False
    injected: bool = False
    has_error_code: bool = False
    vector: int = 0
    error_code: int = 0

    @property
    def nr(self) -> int:  # the 3.7 name, for views written against it
        return self.vector


@dataclass
class kvm_queued_interrupt:
    """vcpu->arch.interrupt: the external interrupt being injected."""

    injected: bool = False
    soft: bool = False
    nr: int = 0

    @property
    def pending(self) -> bool:  # the 3.7 name, for views written against it
        return self.injected


@dataclass
class kvm_vcpu_arch:
    """struct kvm_vcpu_arch (6.12), reduced to what the I/O path uses."""

    regs: list[int] = field(default_factory=lambda: [0] * NR_VCPU_REGS)
    regs_avail: int = 0
    regs_dirty: int = 0
    mp_state: int = 0                    # KVM_MP_STATE_RUNNABLE
    pio: kvm_pio_request = field(default_factory=kvm_pio_request)
    pio_data: Any = None                 # memoryview of page 1 of the vCPU mmap
    complete_userspace_io: Callable | None = None
    exception: kvm_queued_exception = field(default_factory=kvm_queued_exception)
    interrupt: kvm_queued_interrupt = field(default_factory=kvm_queued_interrupt)
    nmi_injected: bool = False
    nmi_pending: int = 0
    emulate_ctxt: Any = None             # struct x86_emulate_ctxt (emulate.py)
    emulate_regs_need_sync_to_vcpu: bool = False
    emulate_regs_need_sync_from_vcpu: bool = False
    event_exit_inst_len: int = 0
    at_instruction_boundary: bool = False
    apic_base: int = 0xFEE00900
    cr8: int = 0
    efer: int = 0

    def view(self) -> dict:
        return {"regs": dict(zip(REG_NAMES, self.regs)), "regs_avail": self.regs_avail,
                "regs_dirty": self.regs_dirty, "mp_state": self.mp_state,
                "pio": vars(self.pio).copy(), "exception": vars(self.exception).copy(),
                "interrupt": vars(self.interrupt).copy(),
                "complete_userspace_io": getattr(self.complete_userspace_io, "__name__", None)}
