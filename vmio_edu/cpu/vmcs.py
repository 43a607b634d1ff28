"""The VMCS: the hardware structure through which a VMX CPU and KVM talk (Intel SDM Vol. 3C, ch. 24).

On a VM exit the CPU writes *why* it left the guest (VM_EXIT_REASON, EXIT_QUALIFICATION,
VM_EXIT_INSTRUCTION_LEN, ...) and the guest state (GUEST_RIP, GUEST_RSP, GUEST_RFLAGS, ...) into the VMCS;
KVM reads them with `vmcs_read32`/`vmcs_readl`. Before the next VM entry KVM writes what it wants the CPU
to do: a new GUEST_RIP (`skip_emulated_instruction`), an event to inject (VM_ENTRY_INTR_INFO_FIELD), or an
interrupt-window request (CPU_BASED_VIRTUAL_INTR_PENDING in CPU_BASED_VM_EXEC_CONTROL).

Field names and bit values are those of Linux 3.7 `arch/x86/include/asm/vmx.h`. The emulated CPU
(`vmio_edu.cpu.x86`) plays the hardware side; `vmio_edu.linux.arch.x86.kvm.vmx` plays KVM's side. The
object is plain data, so a view can show it as it is.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

# -- basic exit reasons (vmx.h:30-69) -------------------------------------------------------------------
EXIT_REASON_EXCEPTION_NMI = 0
EXIT_REASON_EXTERNAL_INTERRUPT = 1
EXIT_REASON_TRIPLE_FAULT = 2
EXIT_REASON_PENDING_INTERRUPT = 7
EXIT_REASON_NMI_WINDOW = 8
EXIT_REASON_TASK_SWITCH = 9
EXIT_REASON_CPUID = 10
EXIT_REASON_HLT = 12
EXIT_REASON_INVD = 13
EXIT_REASON_INVLPG = 14
EXIT_REASON_RDPMC = 15
EXIT_REASON_RDTSC = 16
EXIT_REASON_VMCALL = 18
EXIT_REASON_VMCLEAR = 19
EXIT_REASON_VMLAUNCH = 20
EXIT_REASON_VMPTRLD = 21
EXIT_REASON_VMPTRST = 22
EXIT_REASON_VMREAD = 23
EXIT_REASON_VMRESUME = 24
EXIT_REASON_VMWRITE = 25
EXIT_REASON_VMOFF = 26
EXIT_REASON_VMON = 27
EXIT_REASON_CR_ACCESS = 28
EXIT_REASON_DR_ACCESS = 29
EXIT_REASON_IO_INSTRUCTION = 30
EXIT_REASON_MSR_READ = 31
EXIT_REASON_MSR_WRITE = 32
EXIT_REASON_INVALID_STATE = 33
EXIT_REASON_MWAIT_INSTRUCTION = 36
EXIT_REASON_MONITOR_INSTRUCTION = 39
EXIT_REASON_PAUSE_INSTRUCTION = 40
EXIT_REASON_MCE_DURING_VMENTRY = 41
EXIT_REASON_TPR_BELOW_THRESHOLD = 43
EXIT_REASON_APIC_ACCESS = 44
EXIT_REASON_EPT_VIOLATION = 48
EXIT_REASON_EPT_MISCONFIG = 49
EXIT_REASON_WBINVD = 54
EXIT_REASON_XSETBV = 55
EXIT_REASON_INVPCID = 58
VMX_EXIT_REASONS_FAILED_VMENTRY = 0x80000000

EXIT_REASON_NAMES = {v: k for k, v in dict(globals()).items()
                     if k.startswith("EXIT_REASON_") and isinstance(v, int)}

# -- interruption-information fields (vmx.h:329-345) ----------------------------------------------------
INTR_INFO_VECTOR_MASK = 0xFF
INTR_INFO_INTR_TYPE_MASK = 0x700
INTR_INFO_DELIVER_CODE_MASK = 0x800
INTR_INFO_VALID_MASK = 0x80000000
INTR_TYPE_EXT_INTR = 0 << 8
INTR_TYPE_NMI_INTR = 2 << 8
INTR_TYPE_HARD_EXCEPTION = 3 << 8
INTR_TYPE_SOFT_INTR = 4 << 8
INTR_TYPE_SOFT_EXCEPTION = 6 << 8

# -- guest interruptibility and activity state (vmx.h:348-357) ------------------------------------------
GUEST_INTR_STATE_STI = 0x1
GUEST_INTR_STATE_MOV_SS = 0x2
GUEST_ACTIVITY_ACTIVE = 0
GUEST_ACTIVITY_HLT = 1
GUEST_ACTIVITY_SHUTDOWN = 2

# -- primary processor-based execution controls (vmx.h:115) ---------------------------------------------
CPU_BASED_VIRTUAL_INTR_PENDING = 0x4
CPU_BASED_HLT_EXITING = 0x80
CPU_BASED_UNCOND_IO_EXITING = 0x01000000

# EPT-violation exit qualification bits (SDM table 27-7): what the access was.
EPT_VIOLATION_READ = 1 << 0
EPT_VIOLATION_WRITE = 1 << 1
EPT_VIOLATION_FETCH = 1 << 2
EPT_VIOLATION_GLA_VALID = 1 << 7
EPT_VIOLATION_GLA_TRANSLATED = 1 << 8


@dataclass
class VMCS:
    """One VMCS, reduced to the fields the I/O path uses. Attribute names are the real `enum vmcs_field`
    names. GUEST_* hold the guest state saved at the last VM exit (and loaded at the next VM entry)."""

    # control fields (written by KVM)
    CPU_BASED_VM_EXEC_CONTROL: int = CPU_BASED_HLT_EXITING | CPU_BASED_UNCOND_IO_EXITING
    VM_ENTRY_INTR_INFO_FIELD: int = 0
    VM_ENTRY_EXCEPTION_ERROR_CODE: int = 0
    VM_ENTRY_INSTRUCTION_LEN: int = 0
    # read-only exit information (written by the CPU)
    VM_EXIT_REASON: int = 0
    EXIT_QUALIFICATION: int = 0
    VM_EXIT_INTR_INFO: int = 0
    VM_EXIT_INTR_ERROR_CODE: int = 0
    IDT_VECTORING_INFO_FIELD: int = 0
    VM_EXIT_INSTRUCTION_LEN: int = 0
    GUEST_LINEAR_ADDRESS: int = 0
    GUEST_PHYSICAL_ADDRESS: int = 0
    # guest-state area
    GUEST_RIP: int = 0
    GUEST_RSP: int = 0
    GUEST_RFLAGS: int = 0x2
    GUEST_CR0: int = 0
    GUEST_CR3: int = 0
    GUEST_CR4: int = 0
    GUEST_CS_SELECTOR: int = 0
    GUEST_CS_BASE: int = 0
    GUEST_INTERRUPTIBILITY_INFO: int = 0
    GUEST_ACTIVITY_STATE: int = GUEST_ACTIVITY_ACTIVE

    @property
    def EXIT_REASON(self) -> int:  # noqa: N802 - the short name people use for VM_EXIT_REASON
        return self.VM_EXIT_REASON

    def view(self) -> dict:
        """All fields, for a widget or the CLI (exit reason also by name)."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["VM_EXIT_REASON_NAME"] = EXIT_REASON_NAMES.get(self.VM_EXIT_REASON & 0xFFFF, "?")
        return d


def io_exit_qualification(size: int, is_in: bool, string: bool, rep: bool, imm: bool, port: int) -> int:
    """EXIT_QUALIFICATION for EXIT_REASON_IO_INSTRUCTION (SDM table 27-5; read by Linux 3.7 handle_io, vmx.c:4386).

    bits 2:0 size-1, bit 3 direction (1 = IN), bit 4 string, bit 5 REP, bit 6 operand encoding
    (1 = immediate port), bits 31:16 port."""
    return ((size - 1) | (8 if is_in else 0) | (16 if string else 0) | (32 if rep else 0)
            | (64 if imm else 0) | (port & 0xFFFF) << 16)
