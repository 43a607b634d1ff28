"""hw/ (QEMU v10.2.0): the devices on the path: the PIIX IDE controller, the IRQ lines, the PC board."""
