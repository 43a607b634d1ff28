"""arch/x86/kvm (Linux v3.7): KVM for x86. vmx.py is the Intel VMX backend (vmx.c), x86.py the common x86 code
(x86.c), emulate.py the instruction emulator (emulate.c), i8259.py the in-kernel PIC, irq.py the glue between
the interrupt controllers and the vCPU."""
