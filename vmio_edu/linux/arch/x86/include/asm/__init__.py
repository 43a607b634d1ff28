"""arch/x86/include/asm (Linux v3.7): kvm_host.py holds struct kvm_vcpu_arch and its parts."""
