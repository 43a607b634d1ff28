"""virt/kvm (Linux v3.7): kvm_main.py is /dev/kvm itself (the ioctls, the vCPU mmap, the I/O buses);
irq_comm.py routes interrupt lines to the irqchips; ioapic.py is the (barely modelled) IOAPIC."""
