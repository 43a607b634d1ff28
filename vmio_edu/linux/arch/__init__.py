"""arch/ (Linux v3.7): the architecture-specific half of KVM; only x86 is modelled."""
