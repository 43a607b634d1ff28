"""accel/ (QEMU v10.2.0): accelerators. 1.6.1's kvm-all.c and the KVM half of cpus.c live in accel/kvm/."""
