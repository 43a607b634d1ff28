"""hw/i386/ (QEMU v10.2.0): the PC board (pc_piix.c), the GSI routing (x86-common.c), KVM's PIC/IOAPIC."""
