"""hw/core/ (QEMU v10.2.0): qemu_irq lines."""
