"""The emulated processor under the Linux 3.7 KVM model: Unicorn runs the guest, VMX-style exits come out.

* `x86.X86Cpu`  one virtual processor: VM entry (event injection, interrupt window), guest execution, VM
                exit with the VMCS filled (I/O, HLT, EPT violation/misconfig for MMIO, #UD, triple fault,
                time slice); exceptions and `int n` are delivered through the guest's IVT/IDT.
* `vmcs`        the VMCS fields and constants (Linux 3.7 `arch/x86/include/asm/vmx.h` names).
* `decode`      the per-instruction byte check and the Capstone decode of I/O instructions.
* `events`      interrupt/exception delivery (real mode, 32-bit and 64-bit gates).
* `mmu`         linear → guest-physical page walks.
* `ucapi`       fast direct calls into libunicorn, and its double-fault-bookkeeping workaround.
"""
from .vmcs import VMCS
from .x86 import X86Cpu

__all__ = ["VMCS", "X86Cpu"]
