"""arch/x86/kvm/vmx.c (Linux v3.7): KVM's Intel VMX backend.

`vmx_vcpu_run` enters the guest (VMLAUNCH/VMRESUME: here the emulated CPU's `run`), and after the VM exit
saves the guest registers and reads VM_EXIT_REASON. `vmx_handle_exit` dispatches through
`kvm_vmx_exit_handlers`, the table indexed by the basic exit reason. On the I/O path:

* `handle_io` (reason 30): a string instruction or an IN goes to the emulator; a plain OUT takes the fast
  path: `skip_emulated_instruction` first (RIP += VM_EXIT_INSTRUCTION_LEN), then `kvm_fast_pio_out`. That
  is why a plain OUT reaches userspace with RIP already past it, and an IN with RIP still on it.
* `handle_halt` (12): skip the HLT, then `kvm_emulate_halt`.
* `handle_ept_violation` / `handle_ept_misconfig` (48/49): MMIO, through the emulator.
* `handle_interrupt_window` (7), `handle_triple_fault` (2 → KVM_EXIT_SHUTDOWN), `handle_exception`
  (0: #UD is intercepted and re-injected), `handle_external_interrupt` (1).

The other handlers of the table exist by name and say that they are not modelled when they are reached
(the emulated CPU never produces those exits). Interrupts are injected by writing VM_ENTRY_INTR_INFO_FIELD
(`vmx_inject_irq`); the CPU delivers them at the next VM entry. The model behaves like a CPU with
"unrestricted guest" (real mode runs natively, no vm86 emulation).
"""
from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Callable

from vmio_edu.cpu import vmcs as V
from vmio_edu.linux.arch.x86.include.asm.kvm_host import (EMULATE_DONE, EMULTYPE_TRAP_UD, KVM_REQ_EVENT,
                                                          KVM_X86_SHADOW_INT_MOV_SS, KVM_X86_SHADOW_INT_STI,
                                                          VCPU_REGS_RIP, VCPU_REGS_RSP)
from vmio_edu.linux.include.uapi.linux import kvm as K
from vmio_edu.trace.tracepoint import emit, tracepoint
from . import x86
from .kvm_cache_regs import kvm_rip_read, kvm_rip_write
from .mmu import handle_mmio_page_fault_common, kvm_mmu_page_fault

_ALL_REGS = (1 << 17) - 1


@dataclass
class vcpu_vmx:
    """struct vcpu_vmx: the VMX state of one vCPU. `vmcs` is the loaded VMCS (the CPU's current one)."""

    vmcs: V.VMCS
    exit_reason: int = 0
    exit_intr_info: int = 0
    idt_vectoring_info: int = 0
    fail: int = 0

    def view(self) -> dict:
        return {"exit_reason": self.exit_reason, "exit_reason_name": V.EXIT_REASON_NAMES.get(self.exit_reason, "?"),
                "exit_intr_info": self.exit_intr_info, "vmcs": self.vmcs.view()}


def to_vmx(vcpu) -> vcpu_vmx:
    return vcpu.vmx


# -- the VMCS accessors (vmcs_read32, vmcs_readl, vmcs_write32, vmcs_writel) ------------------------------
def vmcs_read(vcpu, field: str) -> int:
    return getattr(vcpu.vmx.vmcs, field)


def vmcs_write(vcpu, field: str, value: int) -> None:
    setattr(vcpu.vmx.vmcs, field, value)


# ==========================================================================================================
# Entering and leaving the guest
# ==========================================================================================================
@tracepoint("vmx", args=("vcpu",))
def vmx_vcpu_run(vcpu) -> None:
    """VM entry and, when the guest exits, VM exit: dirty RSP/RIP go to the VMCS, the general registers
    are loaded, the CPU runs the guest; afterwards the registers are saved to vcpu->arch.regs and the exit
    reason is read (RSP and RIP stay in the VMCS until `vmx_cache_reg` fetches them)."""
    vmx = to_vmx(vcpu)
    v, a = vmx.vmcs, vcpu.arch
    if a.regs_dirty >> VCPU_REGS_RSP & 1:
        v.GUEST_RSP = a.regs[VCPU_REGS_RSP]
    if a.regs_dirty >> VCPU_REGS_RIP & 1:
        v.GUEST_RIP = a.regs[VCPU_REGS_RIP]
    gprs = vcpu.cpu.run(a.regs, a.regs_dirty)  # VMLAUNCH/VMRESUME ... VM exit
    a.regs[:16] = gprs[:16]
    a.regs_avail = _ALL_REGS & ~((1 << VCPU_REGS_RIP) | (1 << VCPU_REGS_RSP))
    a.regs_dirty = 0
    vmx.idt_vectoring_info = v.IDT_VECTORING_INFO_FIELD
    vmx.exit_reason = v.VM_EXIT_REASON
    vmx.exit_intr_info = v.VM_EXIT_INTR_INFO
    emit("kvm_exit", "vmx", reason=vmx.exit_reason, rip=v.GUEST_RIP, qualification=v.EXIT_QUALIFICATION)
    vmx_complete_interrupts(vmx, vcpu)


def after_cpu_step(vcpu) -> None:
    """The CPU executed one instruction for the emulator (MMIO): take its registers as after an exit."""
    a = vcpu.arch
    a.regs[:16] = vcpu.cpu.gprs[:16]
    a.regs_avail = _ALL_REGS & ~((1 << VCPU_REGS_RIP) | (1 << VCPU_REGS_RSP))
    a.regs_dirty = 0


@tracepoint("vmx", args=("vcpu",))
def vmx_handle_exit(vcpu) -> int:
    """Dispatch the exit through `kvm_vmx_exit_handlers`; 1 = back into the guest, 0 = to userspace."""
    vmx = to_vmx(vcpu)
    exit_reason = vmx.exit_reason
    if exit_reason & V.VMX_EXIT_REASONS_FAILED_VMENTRY:
        vcpu.run.exit_reason = K.KVM_EXIT_FAIL_ENTRY
        vcpu.run.u.fail_entry.hardware_entry_failure_reason = exit_reason
        return 0
    handler = kvm_vmx_exit_handlers.get(exit_reason)
    emit("kvm_vmx_exit_handlers", "vmx", reason=exit_reason,
         handler=getattr(handler, "__name__", None), exit_name=V.EXIT_REASON_NAMES.get(exit_reason))
    if handler is not None:
        return handler(vcpu)
    vcpu.run.exit_reason = K.KVM_EXIT_UNKNOWN
    vcpu.run.u.padding = exit_reason.to_bytes(8, "little")  # hw.hardware_exit_reason
    vcpu.exit_detail = f"VMX exit reason {exit_reason} has no handler in kvm_vmx_exit_handlers"
    return 0


def vmx_complete_interrupts(vmx: vcpu_vmx, vcpu) -> None:
    """The injected event was delivered at entry: clear KVM's queues (re-queue it if the exit interrupted
    the delivery, which the emulated CPU never does)."""
    vcpu.arch.nmi_injected = False
    x86.kvm_clear_exception_queue(vcpu)
    x86.kvm_clear_interrupt_queue(vcpu)
    info = vmx.idt_vectoring_info
    if not info & V.INTR_INFO_VALID_MASK:
        return
    vcpu.requests.add(KVM_REQ_EVENT)
    vector, itype = info & V.INTR_INFO_VECTOR_MASK, info & V.INTR_INFO_INTR_TYPE_MASK
    if itype in (V.INTR_TYPE_HARD_EXCEPTION, V.INTR_TYPE_SOFT_EXCEPTION):
        x86.kvm_queue_exception(vcpu, vector)
    elif itype in (V.INTR_TYPE_EXT_INTR, V.INTR_TYPE_SOFT_INTR):
        x86.kvm_queue_interrupt(vcpu, vector, itype == V.INTR_TYPE_SOFT_INTR)


# ==========================================================================================================
# Registers, shadow, injection
# ==========================================================================================================
def vmx_cache_reg(vcpu, reg: int) -> None:
    a = vcpu.arch
    a.regs_avail |= 1 << reg
    if reg == VCPU_REGS_RSP:
        a.regs[VCPU_REGS_RSP] = vmcs_read(vcpu, "GUEST_RSP")
    elif reg == VCPU_REGS_RIP:
        a.regs[VCPU_REGS_RIP] = vmcs_read(vcpu, "GUEST_RIP")


def vmx_get_rflags(vcpu) -> int:
    return vmcs_read(vcpu, "GUEST_RFLAGS")


def vmx_set_rflags(vcpu, rflags: int) -> None:
    vmcs_write(vcpu, "GUEST_RFLAGS", rflags | 2)


def vmx_get_interrupt_shadow(vcpu, mask: int) -> int:
    interruptibility = vmcs_read(vcpu, "GUEST_INTERRUPTIBILITY_INFO")
    ret = 0
    if interruptibility & V.GUEST_INTR_STATE_STI:
        ret |= KVM_X86_SHADOW_INT_STI
    if interruptibility & V.GUEST_INTR_STATE_MOV_SS:
        ret |= KVM_X86_SHADOW_INT_MOV_SS
    return ret & mask


def vmx_set_interrupt_shadow(vcpu, mask: int) -> None:
    interruptibility = vmcs_read(vcpu, "GUEST_INTERRUPTIBILITY_INFO")
    interruptibility &= ~(V.GUEST_INTR_STATE_STI | V.GUEST_INTR_STATE_MOV_SS)
    if mask & KVM_X86_SHADOW_INT_MOV_SS:
        interruptibility |= V.GUEST_INTR_STATE_MOV_SS
    elif mask & KVM_X86_SHADOW_INT_STI:
        interruptibility |= V.GUEST_INTR_STATE_STI
    vmcs_write(vcpu, "GUEST_INTERRUPTIBILITY_INFO", interruptibility)


@tracepoint("vmx", args=("vcpu",))
def skip_emulated_instruction(vcpu) -> None:
    """RIP += VM_EXIT_INSTRUCTION_LEN, and the STI/MOV SS shadow ends (vmx.c:1687-1697)."""
    rip = kvm_rip_read(vcpu)
    rip += vmcs_read(vcpu, "VM_EXIT_INSTRUCTION_LEN")
    kvm_rip_write(vcpu, rip)
    vmx_set_interrupt_shadow(vcpu, 0)


def vmx_interrupt_allowed(vcpu) -> bool:
    """IF=1 and no STI/MOV SS blocking (vmx.c:4165)."""
    return bool(vmcs_read(vcpu, "GUEST_RFLAGS") & x86.X86_EFLAGS_IF) and not (
        vmcs_read(vcpu, "GUEST_INTERRUPTIBILITY_INFO") & (V.GUEST_INTR_STATE_STI | V.GUEST_INTR_STATE_MOV_SS))


def enable_irq_window(vcpu) -> None:
    """Ask the CPU to exit (reason 7) as soon as the guest can take an interrupt."""
    vmcs_write(vcpu, "CPU_BASED_VM_EXEC_CONTROL",
               vmcs_read(vcpu, "CPU_BASED_VM_EXEC_CONTROL") | V.CPU_BASED_VIRTUAL_INTR_PENDING)


@tracepoint("vmx", args=("vcpu",))
def vmx_inject_irq(vcpu) -> None:
    """Write VM_ENTRY_INTR_INFO_FIELD: vector | external-interrupt type | valid. The CPU delivers the
    interrupt through the guest's IVT/IDT as part of the next VM entry."""
    irq = vcpu.arch.interrupt.nr
    emit("kvm_inj_virq", "vmx", irq=irq)
    vcpu.stat["irq_injections"] += 1
    intr = irq | V.INTR_INFO_VALID_MASK
    if vcpu.arch.interrupt.soft:
        intr |= V.INTR_TYPE_SOFT_INTR
        vmcs_write(vcpu, "VM_ENTRY_INSTRUCTION_LEN", vcpu.arch.event_exit_inst_len)
    else:
        intr |= V.INTR_TYPE_EXT_INTR
    vmcs_write(vcpu, "VM_ENTRY_INTR_INFO_FIELD", intr)


def vmx_queue_exception(vcpu, nr: int, has_error_code: bool, error_code: int, reinject: bool) -> None:
    intr_info = nr | V.INTR_INFO_VALID_MASK
    if has_error_code:
        vmcs_write(vcpu, "VM_ENTRY_EXCEPTION_ERROR_CODE", error_code)
        intr_info |= V.INTR_INFO_DELIVER_CODE_MASK
    if nr in (3, 4):  # kvm_exception_is_soft: #BP, #OF
        vmcs_write(vcpu, "VM_ENTRY_INSTRUCTION_LEN", vcpu.arch.event_exit_inst_len)
        intr_info |= V.INTR_TYPE_SOFT_EXCEPTION
    else:
        intr_info |= V.INTR_TYPE_HARD_EXCEPTION
    vmcs_write(vcpu, "VM_ENTRY_INTR_INFO_FIELD", intr_info)


def vmx_get_cs_db_l_bits(vcpu) -> tuple[int, int]:
    bits = vcpu.cpu.code_bits()
    return (1 if bits == 32 else 0), (1 if bits == 64 else 0)


# ==========================================================================================================
# Exit handlers
# ==========================================================================================================
@tracepoint("vmx", args=("vcpu",))
def handle_exception(vcpu) -> int:
    """Exit reason 0. KVM intercepts #UD: it tries to emulate the instruction (EMULTYPE_TRAP_UD, only for
    a few vendor-specific ones) and otherwise queues #UD back into the guest."""
    vmx = to_vmx(vcpu)
    intr_info = vmx.exit_intr_info
    vector = intr_info & V.INTR_INFO_VECTOR_MASK
    if vector == x86.UD_VECTOR:
        er = x86.emulate_instruction(vcpu, EMULTYPE_TRAP_UD)
        if er != EMULATE_DONE:
            x86.kvm_queue_exception(vcpu, x86.UD_VECTOR)
        return 1
    vcpu.run.exit_reason = K.KVM_EXIT_EXCEPTION
    vcpu.exit_detail = f"exception vector {vector} reached KVM (not modelled)"
    return 0


@tracepoint("vmx", args=("vcpu",))
def handle_external_interrupt(vcpu) -> int:
    """Exit reason 1: a host interrupt (here: the end of a time slice). Nothing for KVM to do."""
    vcpu.stat["irq_exits"] += 1
    return 1


@tracepoint("vmx", args=("vcpu",))
def handle_triple_fault(vcpu) -> int:
    """Exit reason 2: the guest shut down. Userspace gets KVM_EXIT_SHUTDOWN."""
    vcpu.run.exit_reason = K.KVM_EXIT_SHUTDOWN
    vcpu.exit_detail = vcpu.cpu.fault_detail or "triple fault"
    return 0


@tracepoint("vmx", args=("vcpu",))
def handle_io(vcpu) -> int:
    """Exit reason 30 (vmx.c:4386): string or IN → the emulator; plain OUT → skip, then the fast path."""
    exit_qualification = vmcs_read(vcpu, "EXIT_QUALIFICATION")
    string = (exit_qualification & 16) != 0
    in_ = (exit_qualification & 8) != 0
    vcpu.stat["io_exits"] += 1
    if string or in_:
        return 1 if x86.emulate_instruction(vcpu, 0) == EMULATE_DONE else 0
    port = exit_qualification >> 16
    size = (exit_qualification & 7) + 1
    skip_emulated_instruction(vcpu)
    return x86.kvm_fast_pio_out(vcpu, size, port)


@tracepoint("vmx", args=("vcpu",))
def handle_interrupt_window(vcpu) -> int:
    """Exit reason 7: the guest can take interrupts again; stop asking, and let vcpu_enter_guest inject."""
    vmcs_write(vcpu, "CPU_BASED_VM_EXEC_CONTROL",
               vmcs_read(vcpu, "CPU_BASED_VM_EXEC_CONTROL") & ~V.CPU_BASED_VIRTUAL_INTR_PENDING)
    vcpu.requests.add(KVM_REQ_EVENT)
    vcpu.stat["irq_window_exits"] += 1
    from .irq import kvm_cpu_has_interrupt
    from vmio_edu.linux.include.linux.kvm_host import irqchip_in_kernel
    if not irqchip_in_kernel(vcpu.kvm) and vcpu.run.request_interrupt_window and not kvm_cpu_has_interrupt(vcpu):
        vcpu.run.exit_reason = K.KVM_EXIT_IRQ_WINDOW_OPEN
        return 0
    return 1


@tracepoint("vmx", args=("vcpu",))
def handle_halt(vcpu) -> int:
    """Exit reason 12: move RIP past the HLT, then `kvm_emulate_halt`."""
    skip_emulated_instruction(vcpu)
    return x86.kvm_emulate_halt(vcpu)


@tracepoint("vmx", args=("vcpu",))
def handle_ept_violation(vcpu) -> int:
    """Exit reason 48: no EPT mapping for GUEST_PHYSICAL_ADDRESS. For a gpa outside every slot this is
    MMIO: `kvm_mmu_page_fault` marks the page and emulates the access."""
    exit_qualification = vmcs_read(vcpu, "EXIT_QUALIFICATION")
    gpa = vmcs_read(vcpu, "GUEST_PHYSICAL_ADDRESS")
    error_code = exit_qualification & (1 << 1)       # a write fault?
    error_code |= (exit_qualification >> 3) & 0x1    # ept page table present?
    return kvm_mmu_page_fault(vcpu, gpa, error_code, None, 0)


@tracepoint("vmx", args=("vcpu",))
def handle_ept_misconfig(vcpu) -> int:
    """Exit reason 49: the access hit an MMIO spte: emulate it straight away."""
    gpa = vmcs_read(vcpu, "GUEST_PHYSICAL_ADDRESS")
    ret = handle_mmio_page_fault_common(vcpu, gpa, True)
    if ret == 1:
        return 1 if x86.x86_emulate_instruction(vcpu, gpa, 0, None, 0) == EMULATE_DONE else 0
    if ret == 0:
        return 1
    vcpu.run.exit_reason = K.KVM_EXIT_UNKNOWN
    vcpu.exit_detail = f"EPT misconfiguration at gpa {gpa:#x} that is not MMIO"
    return 0


def _not_modelled(name: str, reason: int) -> Callable:
    def handler(vcpu) -> int:
        run = vcpu.run
        run.exit_reason = K.KVM_EXIT_INTERNAL_ERROR
        run.u.internal.suberror = K.KVM_INTERNAL_ERROR_EMULATION
        run.u.internal.ndata = 1
        run.u.internal.data[0] = reason
        vcpu.exit_detail = (f"exit reason {reason} ({V.EXIT_REASON_NAMES.get(reason, '?')}) reached {name}(), "
                            "which vmio-edu does not model")
        return 0
    handler.__name__ = handler.__qualname__ = name
    handler.__doc__ = f"{name}: exists in vmx.c's exit table; not modelled (the emulated CPU does not produce it)."
    return tracepoint("vmx", args=("vcpu",), name=name)(handler)


_UNMODELLED = (
    (V.EXIT_REASON_NMI_WINDOW, "handle_nmi_window"), (V.EXIT_REASON_CR_ACCESS, "handle_cr"),
    (V.EXIT_REASON_DR_ACCESS, "handle_dr"), (V.EXIT_REASON_CPUID, "handle_cpuid"),
    (V.EXIT_REASON_MSR_READ, "handle_rdmsr"), (V.EXIT_REASON_MSR_WRITE, "handle_wrmsr"),
    (V.EXIT_REASON_INVD, "handle_invd"), (V.EXIT_REASON_INVLPG, "handle_invlpg"),
    (V.EXIT_REASON_RDPMC, "handle_rdpmc"), (V.EXIT_REASON_VMCALL, "handle_vmcall"),
    (V.EXIT_REASON_VMCLEAR, "handle_vmclear"), (V.EXIT_REASON_VMLAUNCH, "handle_vmlaunch"),
    (V.EXIT_REASON_VMPTRLD, "handle_vmptrld"), (V.EXIT_REASON_VMPTRST, "handle_vmptrst"),
    (V.EXIT_REASON_VMREAD, "handle_vmread"), (V.EXIT_REASON_VMRESUME, "handle_vmresume"),
    (V.EXIT_REASON_VMWRITE, "handle_vmwrite"), (V.EXIT_REASON_VMOFF, "handle_vmoff"),
    (V.EXIT_REASON_VMON, "handle_vmon"), (V.EXIT_REASON_TPR_BELOW_THRESHOLD, "handle_tpr_below_threshold"),
    (V.EXIT_REASON_APIC_ACCESS, "handle_apic_access"), (V.EXIT_REASON_WBINVD, "handle_wbinvd"),
    (V.EXIT_REASON_XSETBV, "handle_xsetbv"), (V.EXIT_REASON_TASK_SWITCH, "handle_task_switch"),
    (V.EXIT_REASON_MCE_DURING_VMENTRY, "handle_machine_check"),
    (V.EXIT_REASON_PAUSE_INSTRUCTION, "handle_pause"),
    (V.EXIT_REASON_MWAIT_INSTRUCTION, "handle_invalid_op"),
    (V.EXIT_REASON_MONITOR_INSTRUCTION, "handle_invalid_op"),
)
_unmodelled_fns: dict[str, Callable] = {}
for _reason, _name in _UNMODELLED:
    if _name not in _unmodelled_fns:
        _unmodelled_fns[_name] = _not_modelled(_name, _reason)

# static int (*const kvm_vmx_exit_handlers[])(struct kvm_vcpu *vcpu) (vmx.c:5664-5701), in the C's order.
kvm_vmx_exit_handlers: dict[int, Callable[[Any], int]] = {
    V.EXIT_REASON_EXCEPTION_NMI: handle_exception,
    V.EXIT_REASON_EXTERNAL_INTERRUPT: handle_external_interrupt,
    V.EXIT_REASON_TRIPLE_FAULT: handle_triple_fault,
    V.EXIT_REASON_NMI_WINDOW: _unmodelled_fns["handle_nmi_window"],
    V.EXIT_REASON_IO_INSTRUCTION: handle_io,
    V.EXIT_REASON_CR_ACCESS: _unmodelled_fns["handle_cr"],
    V.EXIT_REASON_DR_ACCESS: _unmodelled_fns["handle_dr"],
    V.EXIT_REASON_CPUID: _unmodelled_fns["handle_cpuid"],
    V.EXIT_REASON_MSR_READ: _unmodelled_fns["handle_rdmsr"],
    V.EXIT_REASON_MSR_WRITE: _unmodelled_fns["handle_wrmsr"],
    V.EXIT_REASON_PENDING_INTERRUPT: handle_interrupt_window,
    V.EXIT_REASON_HLT: handle_halt,
    V.EXIT_REASON_INVD: _unmodelled_fns["handle_invd"],
    V.EXIT_REASON_INVLPG: _unmodelled_fns["handle_invlpg"],
    V.EXIT_REASON_RDPMC: _unmodelled_fns["handle_rdpmc"],
    V.EXIT_REASON_VMCALL: _unmodelled_fns["handle_vmcall"],
    V.EXIT_REASON_VMCLEAR: _unmodelled_fns["handle_vmclear"],
    V.EXIT_REASON_VMLAUNCH: _unmodelled_fns["handle_vmlaunch"],
    V.EXIT_REASON_VMPTRLD: _unmodelled_fns["handle_vmptrld"],
    V.EXIT_REASON_VMPTRST: _unmodelled_fns["handle_vmptrst"],
    V.EXIT_REASON_VMREAD: _unmodelled_fns["handle_vmread"],
    V.EXIT_REASON_VMRESUME: _unmodelled_fns["handle_vmresume"],
    V.EXIT_REASON_VMWRITE: _unmodelled_fns["handle_vmwrite"],
    V.EXIT_REASON_VMOFF: _unmodelled_fns["handle_vmoff"],
    V.EXIT_REASON_VMON: _unmodelled_fns["handle_vmon"],
    V.EXIT_REASON_TPR_BELOW_THRESHOLD: _unmodelled_fns["handle_tpr_below_threshold"],
    V.EXIT_REASON_APIC_ACCESS: _unmodelled_fns["handle_apic_access"],
    V.EXIT_REASON_WBINVD: _unmodelled_fns["handle_wbinvd"],
    V.EXIT_REASON_XSETBV: _unmodelled_fns["handle_xsetbv"],
    V.EXIT_REASON_TASK_SWITCH: _unmodelled_fns["handle_task_switch"],
    V.EXIT_REASON_MCE_DURING_VMENTRY: _unmodelled_fns["handle_machine_check"],
    V.EXIT_REASON_EPT_VIOLATION: handle_ept_violation,
    V.EXIT_REASON_EPT_MISCONFIG: handle_ept_misconfig,
    V.EXIT_REASON_PAUSE_INSTRUCTION: _unmodelled_fns["handle_pause"],
    V.EXIT_REASON_MWAIT_INSTRUCTION: _unmodelled_fns["handle_invalid_op"],
    V.EXIT_REASON_MONITOR_INSTRUCTION: _unmodelled_fns["handle_invalid_op"],
}


# struct kvm_x86_ops vmx_x86_ops: what x86.c calls through kvm_x86_ops->...
vmx_x86_ops = SimpleNamespace(
    run=vmx_vcpu_run, handle_exit=vmx_handle_exit, set_irq=vmx_inject_irq, queue_exception=vmx_queue_exception,
    interrupt_allowed=vmx_interrupt_allowed, enable_irq_window=enable_irq_window,
    get_interrupt_shadow=vmx_get_interrupt_shadow, set_interrupt_shadow=vmx_set_interrupt_shadow,
    skip_emulated_instruction=skip_emulated_instruction, cache_reg=vmx_cache_reg,
    get_rflags=vmx_get_rflags, set_rflags=vmx_set_rflags, get_cs_db_l_bits=vmx_get_cs_db_l_bits,
    after_cpu_step=after_cpu_step,
)
x86.kvm_x86_ops = vmx_x86_ops  # vmx_init(): kvm_init(&vmx_x86_ops, ...)


def vmx_create_vcpu(vcpu) -> vcpu_vmx:
    """Give the vCPU its VMX state; its VMCS is the CPU's (the one `vmcs_load` made current)."""
    vmx = vcpu_vmx(vmcs=vcpu.cpu.vmcs)
    vcpu.vmx = vmx
    return vmx
