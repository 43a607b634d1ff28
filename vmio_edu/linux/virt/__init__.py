"""virt/ (Linux v3.7): the architecture-independent half of KVM."""
