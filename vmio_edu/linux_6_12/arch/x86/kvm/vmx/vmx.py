"""arch/x86/kvm/vmx/vmx.c (Linux v6.12): KVM's Intel VMX backend (3.7 had it all in arch/x86/kvm/vmx.c).

`vmx_vcpu_run` (vmx.c:7338) enters the guest (here the emulated CPU's `run`), saves the guest registers
after the VM exit, and before returning asks `vmx_exit_handlers_fastpath` (7258) whether the exit can be
finished right there, with interrupts still off. Then `vcpu_enter_guest` calls `vmx_handle_exit` (6630),
which wraps `__vmx_handle_exit` (6451): that one dispatches through `kvm_vmx_exit_handlers` (6110), the
table indexed by the basic exit reason.

On the I/O path:
* `handle_io` (reason 30, vmx.c:5396): a *string* instruction goes to the emulator
  (`kvm_emulate_instruction`); everything else, IN as well as OUT, goes to `kvm_fast_pio` with the port,
  size and direction from the exit qualification. Nothing moves RIP here any more: 3.7 skipped a plain OUT
  before exiting, 6.12 skips it when userspace has answered (`complete_fast_pio_out`, x86.c).
* The exit fastpath does **not** apply to I/O: `vmx_exit_handlers_fastpath` only takes WRMSR
  (`handle_fastpath_set_msr_irqoff`, for the TSC deadline and ICR MSRs), the VMX preemption timer and HLT
  (`handle_fastpath_hlt`). Of these the guest on this path only executes HLT, while it waits for IRQ 14,
  so that is the one modelled; an I/O exit returns EXIT_FASTPATH_NONE and takes the table.
* HLT (reason 12): in the fastpath, `handle_fastpath_hlt` → `kvm_emulate_halt` (the table's entry too).
* `handle_ept_violation` / `handle_ept_misconfig` (48/49): MMIO, through the emulator.
* `handle_interrupt_window` (7), `handle_triple_fault` (2 → KVM_EXIT_SHUTDOWN), `handle_exception_nmi`
  (0: #UD is intercepted and re-injected), `handle_external_interrupt` (1).

The other handlers of the table exist by name and say that they are not modelled when reached. Shared with
the 3.7 model: `struct vcpu_vmx` as far as the model has one, and the VMCS (`vmio_edu.cpu.vmcs`, which the
emulated processor writes on every exit).
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Callable

from vmio_edu.cpu import vmcs as V
from vmio_edu.linux.arch.x86.kvm.vmx import after_cpu_step, vcpu_vmx, vmx_get_cs_db_l_bits  # noqa: F401
from vmio_edu.linux.include.uapi.linux import kvm as K
from vmio_edu.linux_6_12.arch.x86.include.asm.kvm_host import (
    EXIT_FASTPATH_NONE, FASTPATH_NAMES, KVM_REQ_EVENT, KVM_X86_SHADOW_INT_MOV_SS,
    KVM_X86_SHADOW_INT_STI, VCPU_REGS_RIP, VCPU_REGS_RSP)
from vmio_edu.linux_6_12.include.linux.kvm_host import kvm_make_request
from vmio_edu.trace.tracepoint import emit, tracepoint
from .. import x86
from ..kvm_cache_regs import kvm_rip_read, kvm_rip_write
from ..mmu.mmu import kvm_mmu_page_fault

_ALL_REGS = (1 << 17) - 1
EXIT_REASON_PREEMPTION_TIMER = 52
KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON = 4
PFERR_PRESENT_MASK, PFERR_WRITE_MASK, PFERR_USER_MASK, PFERR_FETCH_MASK = 1 << 0, 1 << 1, 1 << 2, 1 << 4
PFERR_RSVD_MASK = 1 << 3


def to_vmx(vcpu) -> vcpu_vmx:
    return vcpu.vmx


def vmcs_read(vcpu, field: str) -> int:
    return getattr(vcpu.vmx.vmcs, field)


def vmcs_write(vcpu, field: str, value: int) -> None:
    setattr(vcpu.vmx.vmcs, field, value)


def vmx_get_exit_qual(vcpu) -> int:
    return vmcs_read(vcpu, "EXIT_QUALIFICATION")


# ==========================================================================================================
# Entering and leaving the guest
# ==========================================================================================================
@tracepoint("vmx", args=("vcpu", "force_immediate_exit"))
def vmx_vcpu_run(vcpu, force_immediate_exit: bool = False) -> int:
    """VM entry and, when the guest exits, VM exit (vmx.c:7338-7491): dirty RSP/RIP go to the VMCS, the CPU
    runs the guest (`vmx_vcpu_enter_exit`); afterwards the registers are saved, the exit reason read, the
    delivered event retired (`vmx_complete_interrupts`) and the exit offered to the fastpath."""
    vmx = to_vmx(vcpu)
    v, a = vmx.vmcs, vcpu.arch
    if a.regs_dirty >> VCPU_REGS_RSP & 1:
        v.GUEST_RSP = a.regs[VCPU_REGS_RSP]
    if a.regs_dirty >> VCPU_REGS_RIP & 1:
        v.GUEST_RIP = a.regs[VCPU_REGS_RIP]
    dirty = a.regs_dirty
    a.regs_dirty = 0
    gprs = vcpu.cpu.run(a.regs, dirty)  # vmx_vcpu_enter_exit: VMLAUNCH/VMRESUME ... VM exit
    a.regs[:16] = gprs[:16]
    a.regs_avail = _ALL_REGS & ~((1 << VCPU_REGS_RIP) | (1 << VCPU_REGS_RSP))
    vmx.idt_vectoring_info = v.IDT_VECTORING_INFO_FIELD
    vmx.exit_reason = v.VM_EXIT_REASON
    vmx.exit_intr_info = v.VM_EXIT_INTR_INFO
    emit("kvm_exit", "vmx", reason=vmx.exit_reason, rip=v.GUEST_RIP, qualification=v.EXIT_QUALIFICATION)
    if vmx.exit_reason & V.VMX_EXIT_REASONS_FAILED_VMENTRY:
        return EXIT_FASTPATH_NONE
    vmx_complete_interrupts(vmx, vcpu)
    return vmx_exit_handlers_fastpath(vcpu, force_immediate_exit)


@tracepoint("vmx", args=("vcpu", "force_immediate_exit"))
def vmx_exit_handlers_fastpath(vcpu, force_immediate_exit: bool = False) -> int:
    """Exits finished with interrupts off, before `vmx_handle_exit` (vmx.c:7258-7279): WRMSR, the
    preemption timer, HLT. An I/O exit is not among them (EXIT_FASTPATH_NONE)."""
    reason = to_vmx(vcpu).exit_reason & 0xFFFF
    if reason == V.EXIT_REASON_HLT:
        fp = x86.handle_fastpath_hlt(vcpu)
    else:  # EXIT_REASON_MSR_WRITE / PREEMPTION_TIMER never come from the emulated CPU
        fp = EXIT_FASTPATH_NONE
    emit("exit_fastpath", "vmx", reason=reason, fastpath=FASTPATH_NAMES[fp])
    return fp


def vmx_complete_interrupts(vmx: vcpu_vmx, vcpu) -> None:
    """The injected event was delivered at entry: retire it (re-queue it if the exit interrupted the
    delivery, which the emulated CPU never does) (vmx.c:7159)."""
    vcpu.arch.nmi_injected = False
    vcpu.arch.exception.injected = False
    x86.kvm_clear_interrupt_queue(vcpu)
    info = vmx.idt_vectoring_info
    if not info & V.INTR_INFO_VALID_MASK:
        return
    kvm_make_request(KVM_REQ_EVENT, vcpu)
    vector, itype = info & V.INTR_INFO_VECTOR_MASK, info & V.INTR_INFO_INTR_TYPE_MASK
    if itype in (V.INTR_TYPE_HARD_EXCEPTION, V.INTR_TYPE_SOFT_EXCEPTION):
        x86.kvm_queue_exception(vcpu, vector)
    elif itype in (V.INTR_TYPE_EXT_INTR, V.INTR_TYPE_SOFT_INTR):
        x86.kvm_queue_interrupt(vcpu, vector, itype == V.INTR_TYPE_SOFT_INTR)


@tracepoint("vmx", args=("vcpu", "exit_fastpath"))
def __vmx_handle_exit(vcpu, exit_fastpath: int) -> int:
    """The guest has exited: a failed entry goes to userspace, an exit the fastpath finished goes back
    into the guest, everything else through `kvm_vmx_exit_handlers` (vmx.c:6451-6628)."""
    vmx = to_vmx(vcpu)
    exit_reason = vmx.exit_reason
    if exit_reason & V.VMX_EXIT_REASONS_FAILED_VMENTRY:
        vcpu.run.exit_reason = K.KVM_EXIT_FAIL_ENTRY
        vcpu.run.u.fail_entry.hardware_entry_failure_reason = exit_reason
        return 0
    if exit_fastpath != EXIT_FASTPATH_NONE:
        return 1
    basic = exit_reason & 0xFFFF
    handler = kvm_vmx_exit_handlers.get(basic)
    emit("kvm_vmx_exit_handlers", "vmx", reason=basic, handler=getattr(handler, "__name__", None),
         exit_name=V.EXIT_REASON_NAMES.get(basic))
    if handler is not None:
        return handler(vcpu)
    # unexpected_vmexit:
    run = vcpu.run
    run.exit_reason = K.KVM_EXIT_INTERNAL_ERROR
    run.u.internal.suberror = KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON
    run.u.internal.ndata = 2
    run.u.internal.data[0] = exit_reason
    run.u.internal.data[1] = 0  # last_vmentry_cpu
    vcpu.exit_detail = f"VMX exit reason {exit_reason} has no handler in kvm_vmx_exit_handlers"
    return 0


@tracepoint("vmx", args=("vcpu", "exit_fastpath"))
def vmx_handle_exit(vcpu, exit_fastpath: int) -> int:
    """`__vmx_handle_exit`, then a bus-lock exit to userspace if the CPU detected one (never here)
    (vmx.c:6630-6645). 1 = back into the guest, 0 = to userspace."""
    return __vmx_handle_exit(vcpu, exit_fastpath)


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


def vmx_get_interrupt_shadow(vcpu) -> int:
    interruptibility = vmcs_read(vcpu, "GUEST_INTERRUPTIBILITY_INFO")
    ret = 0
    if interruptibility & V.GUEST_INTR_STATE_STI:
        ret |= KVM_X86_SHADOW_INT_STI
    if interruptibility & V.GUEST_INTR_STATE_MOV_SS:
        ret |= KVM_X86_SHADOW_INT_MOV_SS
    return ret


def vmx_set_interrupt_shadow(vcpu, mask: int) -> None:
    interruptibility_old = vmcs_read(vcpu, "GUEST_INTERRUPTIBILITY_INFO")
    interruptibility = interruptibility_old & ~(V.GUEST_INTR_STATE_STI | V.GUEST_INTR_STATE_MOV_SS)
    if mask & KVM_X86_SHADOW_INT_MOV_SS:
        interruptibility |= V.GUEST_INTR_STATE_MOV_SS
    elif mask & KVM_X86_SHADOW_INT_STI:
        interruptibility |= V.GUEST_INTR_STATE_STI
    if interruptibility != interruptibility_old:
        vmcs_write(vcpu, "GUEST_INTERRUPTIBILITY_INFO", interruptibility)


@tracepoint("vmx", args=("vcpu",))
def skip_emulated_instruction(vcpu) -> int:
    """RIP += VM_EXIT_INSTRUCTION_LEN of the last exit (truncated outside 64-bit mode) and the STI/MOV SS
    shadow ends (vmx.c:1712-1750). After a plain OUT this runs on the *next* KVM_RUN, still reading the
    length the CPU stored at the I/O exit."""
    instr_len = vmcs_read(vcpu, "VM_EXIT_INSTRUCTION_LEN")
    if instr_len:
        orig_rip = kvm_rip_read(vcpu)
        rip = orig_rip + instr_len
        if ((rip ^ orig_rip) >> 31) == 3 and not x86.is_64_bit_mode(vcpu):
            rip &= 0xFFFF_FFFF
        kvm_rip_write(vcpu, rip)
    vmx_set_interrupt_shadow(vcpu, 0)
    return 1


@tracepoint("vmx", args=("vcpu",))
def vmx_skip_emulated_instruction(vcpu) -> int:
    """kvm_x86_ops->skip_emulated_instruction (vmx.c:1811): nested MTF bookkeeping (none here), then skip."""
    return skip_emulated_instruction(vcpu)


def vmx_interrupt_blocked(vcpu) -> bool:
    """IF=0 or an STI/MOV SS shadow (vmx.c:5078)."""
    return not (vmcs_read(vcpu, "GUEST_RFLAGS") & x86.X86_EFLAGS_IF) or bool(
        vmcs_read(vcpu, "GUEST_INTERRUPTIBILITY_INFO") & (V.GUEST_INTR_STATE_STI | V.GUEST_INTR_STATE_MOV_SS))


def vmx_interrupt_allowed(vcpu, for_injection: bool) -> int:
    """1 if an interrupt can be injected now (vmx.c:5086)."""
    return 0 if vmx_interrupt_blocked(vcpu) else 1


def vmx_enable_irq_window(vcpu) -> None:
    """Ask the CPU to exit (reason 7) as soon as the guest can take an interrupt (vmx.c:4937)."""
    vmcs_write(vcpu, "CPU_BASED_VM_EXEC_CONTROL",
               vmcs_read(vcpu, "CPU_BASED_VM_EXEC_CONTROL") | V.CPU_BASED_VIRTUAL_INTR_PENDING)


@tracepoint("vmx", args=("vcpu", "reinjected"))
def vmx_inject_irq(vcpu, reinjected: bool = False) -> None:
    """Write VM_ENTRY_INTR_INFO_FIELD: vector | external-interrupt type | valid; the CPU delivers the
    interrupt through the guest's IVT/IDT as part of the next VM entry (vmx.c:4953-4978)."""
    irq = vcpu.arch.interrupt.nr
    emit("kvm_inj_virq", "vmx", irq=irq, reinjected=reinjected)
    vcpu.stat["irq_injections"] += 1
    intr = irq | V.INTR_INFO_VALID_MASK
    if vcpu.arch.interrupt.soft:
        intr |= V.INTR_TYPE_SOFT_INTR
        vmcs_write(vcpu, "VM_ENTRY_INSTRUCTION_LEN", vcpu.arch.event_exit_inst_len)
    else:
        intr |= V.INTR_TYPE_EXT_INTR
    vmcs_write(vcpu, "VM_ENTRY_INTR_INFO_FIELD", intr)


def vmx_inject_exception(vcpu) -> None:
    """The queued exception into VM_ENTRY_INTR_INFO_FIELD (vmx.c:1830)."""
    ex = vcpu.arch.exception
    intr_info = ex.vector | V.INTR_INFO_VALID_MASK
    if ex.has_error_code:
        vmcs_write(vcpu, "VM_ENTRY_EXCEPTION_ERROR_CODE", ex.error_code)
        intr_info |= V.INTR_INFO_DELIVER_CODE_MASK
    if ex.vector in (3, 4):  # kvm_exception_is_soft: #BP, #OF
        vmcs_write(vcpu, "VM_ENTRY_INSTRUCTION_LEN", vcpu.arch.event_exit_inst_len)
        intr_info |= V.INTR_TYPE_SOFT_EXCEPTION
    else:
        intr_info |= V.INTR_TYPE_HARD_EXCEPTION
    vmcs_write(vcpu, "VM_ENTRY_INTR_INFO_FIELD", intr_info)


# ==========================================================================================================
# Exit handlers
# ==========================================================================================================
@tracepoint("vmx", args=("vcpu",))
def handle_exception_nmi(vcpu) -> int:
    """Exit reason 0. KVM intercepts #UD (`handle_ud`); nothing else is intercepted in the model."""
    vector = to_vmx(vcpu).exit_intr_info & V.INTR_INFO_VECTOR_MASK
    if vector == x86.UD_VECTOR:
        return x86.handle_ud(vcpu)
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
    vcpu.mmio_needed = 0
    vcpu.exit_detail = vcpu.cpu.fault_detail or "triple fault"
    return 0


@tracepoint("vmx", args=("vcpu",))
def handle_io(vcpu) -> int:
    """Exit reason 30 (vmx.c:5396-5414): string I/O → the emulator; IN and OUT → `kvm_fast_pio`."""
    exit_qualification = vmx_get_exit_qual(vcpu)
    string = (exit_qualification & 16) != 0
    vcpu.stat["io_exits"] += 1
    if string:
        return x86.kvm_emulate_instruction(vcpu, 0)
    port = exit_qualification >> 16
    size = (exit_qualification & 7) + 1
    in_ = 1 if exit_qualification & 8 else 0  # an int in the C, as kvm_fast_pio takes it
    return x86.kvm_fast_pio(vcpu, size, port, in_)


@tracepoint("vmx", args=("vcpu",))
def handle_interrupt_window(vcpu) -> int:
    """Exit reason 7: the guest can take interrupts again; stop asking, let vcpu_enter_guest inject."""
    vmcs_write(vcpu, "CPU_BASED_VM_EXEC_CONTROL",
               vmcs_read(vcpu, "CPU_BASED_VM_EXEC_CONTROL") & ~V.CPU_BASED_VIRTUAL_INTR_PENDING)
    kvm_make_request(KVM_REQ_EVENT, vcpu)
    vcpu.stat["irq_window_exits"] += 1
    return 1


@tracepoint("vmx", args=("vcpu",))
def handle_ept_violation(vcpu) -> int:
    """Exit reason 48: no EPT mapping for GUEST_PHYSICAL_ADDRESS; for a gpa outside every slot this is
    MMIO: `kvm_mmu_page_fault` marks the page and emulates the access (vmx.c:5777-5828)."""
    exit_qualification = vmx_get_exit_qual(vcpu)
    gpa = vmcs_read(vcpu, "GUEST_PHYSICAL_ADDRESS")
    error_code = PFERR_USER_MASK if exit_qualification & 1 else 0
    error_code |= PFERR_WRITE_MASK if exit_qualification & 2 else 0
    error_code |= PFERR_FETCH_MASK if exit_qualification & 4 else 0
    error_code |= PFERR_PRESENT_MASK if exit_qualification & 0x38 else 0
    return kvm_mmu_page_fault(vcpu, gpa, error_code, None, 0)


@tracepoint("vmx", args=("vcpu",))
def handle_ept_misconfig(vcpu) -> int:
    """Exit reason 49: the access hit an MMIO spte (vmx.c:5830-5846)."""
    gpa = vmcs_read(vcpu, "GUEST_PHYSICAL_ADDRESS")
    return kvm_mmu_page_fault(vcpu, gpa, PFERR_RSVD_MASK, None, 0)


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
    handler.__doc__ = f"{name}: in vmx.c's exit table; not modelled (the emulated CPU does not produce it)."
    return tracepoint("vmx", args=("vcpu",), name=name)(handler)


# The table's other entries at 6.12 (vmx.c:6110-6166), those whose exit reasons the model's VMCS names.
_UNMODELLED = (
    (V.EXIT_REASON_NMI_WINDOW, "handle_nmi_window"), (V.EXIT_REASON_CR_ACCESS, "handle_cr"),
    (V.EXIT_REASON_DR_ACCESS, "handle_dr"), (V.EXIT_REASON_CPUID, "kvm_emulate_cpuid"),
    (V.EXIT_REASON_MSR_READ, "kvm_emulate_rdmsr"), (V.EXIT_REASON_MSR_WRITE, "kvm_emulate_wrmsr"),
    (V.EXIT_REASON_INVD, "kvm_emulate_invd"), (V.EXIT_REASON_INVLPG, "handle_invlpg"),
    (V.EXIT_REASON_RDPMC, "kvm_emulate_rdpmc"), (V.EXIT_REASON_VMCALL, "kvm_emulate_hypercall"),
    (V.EXIT_REASON_VMCLEAR, "handle_vmx_instruction"), (V.EXIT_REASON_VMLAUNCH, "handle_vmx_instruction"),
    (V.EXIT_REASON_VMPTRLD, "handle_vmx_instruction"), (V.EXIT_REASON_VMPTRST, "handle_vmx_instruction"),
    (V.EXIT_REASON_VMREAD, "handle_vmx_instruction"), (V.EXIT_REASON_VMRESUME, "handle_vmx_instruction"),
    (V.EXIT_REASON_VMWRITE, "handle_vmx_instruction"), (V.EXIT_REASON_VMOFF, "handle_vmx_instruction"),
    (V.EXIT_REASON_VMON, "handle_vmx_instruction"),
    (V.EXIT_REASON_TPR_BELOW_THRESHOLD, "handle_tpr_below_threshold"),
    (V.EXIT_REASON_APIC_ACCESS, "handle_apic_access"), (V.EXIT_REASON_WBINVD, "kvm_emulate_wbinvd"),
    (V.EXIT_REASON_XSETBV, "kvm_emulate_xsetbv"), (V.EXIT_REASON_TASK_SWITCH, "handle_task_switch"),
    (V.EXIT_REASON_MCE_DURING_VMENTRY, "handle_machine_check"),
    (V.EXIT_REASON_PAUSE_INSTRUCTION, "handle_pause"),
    (V.EXIT_REASON_MWAIT_INSTRUCTION, "kvm_emulate_mwait"),
    (V.EXIT_REASON_MONITOR_INSTRUCTION, "kvm_emulate_monitor"),
    (V.EXIT_REASON_INVPCID, "handle_invpcid"),
)
_unmodelled_fns: dict[str, Callable] = {}
for _reason, _name in _UNMODELLED:
    if _name not in _unmodelled_fns:
        _unmodelled_fns[_name] = _not_modelled(_name, _reason)

# static int (*kvm_vmx_exit_handlers[])(struct kvm_vcpu *vcpu) (vmx.c:6110-6166)
kvm_vmx_exit_handlers: dict[int, Callable[[Any], int]] = {
    V.EXIT_REASON_EXCEPTION_NMI: handle_exception_nmi,
    V.EXIT_REASON_EXTERNAL_INTERRUPT: handle_external_interrupt,
    V.EXIT_REASON_TRIPLE_FAULT: handle_triple_fault,
    V.EXIT_REASON_IO_INSTRUCTION: handle_io,
    V.EXIT_REASON_PENDING_INTERRUPT: handle_interrupt_window,  # EXIT_REASON_INTERRUPT_WINDOW in 6.12
    V.EXIT_REASON_HLT: x86.kvm_emulate_halt,
    V.EXIT_REASON_EPT_VIOLATION: handle_ept_violation,
    V.EXIT_REASON_EPT_MISCONFIG: handle_ept_misconfig,
    **{r: _unmodelled_fns[n] for r, n in _UNMODELLED},
}


# struct kvm_x86_ops vt_x86_ops (vmx/main.c): what x86.c calls through kvm_x86_call(...)
vmx_x86_ops = SimpleNamespace(
    vcpu_run=vmx_vcpu_run, handle_exit=vmx_handle_exit, inject_irq=vmx_inject_irq,
    inject_exception=vmx_inject_exception, interrupt_allowed=vmx_interrupt_allowed,
    enable_irq_window=vmx_enable_irq_window, get_interrupt_shadow=vmx_get_interrupt_shadow,
    set_interrupt_shadow=vmx_set_interrupt_shadow, skip_emulated_instruction=vmx_skip_emulated_instruction,
    cache_reg=vmx_cache_reg, get_rflags=vmx_get_rflags, set_rflags=vmx_set_rflags,
    get_cs_db_l_bits=vmx_get_cs_db_l_bits, after_cpu_step=after_cpu_step,
)
x86.kvm_x86_ops = vmx_x86_ops  # vmx_init() → kvm_x86_vendor_init(&vt_init_ops)


def vmx_create_vcpu(vcpu) -> vcpu_vmx:
    """Give the vCPU its VMX state; its VMCS is the CPU's (the one `vmcs_load` made current)."""
    vmx = vcpu_vmx(vmcs=vcpu.cpu.vmcs)
    vcpu.vmx = vmx
    return vmx
