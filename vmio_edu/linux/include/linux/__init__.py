"""include/linux (Linux v3.7): kvm_host.py holds struct kvm and struct kvm_vcpu."""
