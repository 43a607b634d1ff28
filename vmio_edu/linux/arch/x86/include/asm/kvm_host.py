"""arch/x86/include/asm/kvm_host.h (Linux v3.7): the x86 part of a vCPU, `struct kvm_vcpu_arch`.

Plain data, so a view can show it: the register cache KVM keeps between VM exit and VM entry, the PIO
request that is in flight, the event queues, the halt state, and `complete_userspace_io`, the callback the
next KVM_RUN calls first to finish an instruction userspace has just answered.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

# enum kvm_reg: the order of vcpu->arch.regs[]
VCPU_REGS_RAX, VCPU_REGS_RCX, VCPU_REGS_RDX, VCPU_REGS_RBX = 0, 1, 2, 3
VCPU_REGS_RSP, VCPU_REGS_RBP, VCPU_REGS_RSI, VCPU_REGS_RDI = 4, 5, 6, 7
VCPU_REGS_R8 = 8
VCPU_REGS_RIP = 16
NR_VCPU_REGS = 17
REG_NAMES = ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13",
             "r14", "r15", "rip")

KVM_PIO_PAGE_OFFSET = 1  # kvm_host.h:41: the PIO data page is page 1 of the vCPU mmap

# the vcpu->arch.interrupt shadow mask used by get/set_interrupt_shadow
KVM_X86_SHADOW_INT_MOV_SS = 1
KVM_X86_SHADOW_INT_STI = 2

# vcpu->requests bits (kvm_host.h)
KVM_REQ_TLB_FLUSH = 0
KVM_REQ_TRIPLE_FAULT = 10
KVM_REQ_EVENT = 11
KVM_REQ_UNHALT = 17

# emulation_type flags (kvm_host.h)
EMULTYPE_NO_DECODE = 1 << 0
EMULTYPE_TRAP_UD = 1 << 1
EMULTYPE_SKIP = 1 << 2
EMULTYPE_RETRY = 1 << 3

# enum emulation_result
EMULATE_DONE, EMULATE_DO_MMIO, EMULATE_FAIL = 0, 1, 2


@dataclass
class kvm_pio_request:
    """vcpu->arch.pio: the port access in flight (count > 0 while userspace still has to answer)."""

    port: int = 0
    in_: bool = False  # `in` is a Python keyword
    count: int = 0
    size: int = 0


@dataclass
class kvm_queued_exception:
    pending: bool = False
    has_error_code: bool = False
    reinject: bool = False
    nr: int = 0
    error_code: int = 0


@dataclass
class kvm_queued_interrupt:
    pending: bool = False
    soft: bool = False
    nr: int = 0


@dataclass
class kvm_vcpu_arch:
    """struct kvm_vcpu_arch, reduced to what the I/O path uses."""

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
    apic_base: int = 0xFEE00900
    cr8: int = 0
    efer: int = 0

    def view(self) -> dict:
        return {"regs": dict(zip(REG_NAMES, self.regs)), "regs_avail": self.regs_avail,
                "regs_dirty": self.regs_dirty, "mp_state": self.mp_state,
                "pio": vars(self.pio).copy(), "exception": vars(self.exception).copy(),
                "interrupt": vars(self.interrupt).copy(),
                "complete_userspace_io": getattr(self.complete_userspace_io, "__name__", None)}
