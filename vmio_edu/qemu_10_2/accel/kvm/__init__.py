"""accel/kvm/ (QEMU v10.2.0): kvm-all.c (the KVM ioctls and the vCPU loop) and kvm-accel-ops.c (the thread)."""
