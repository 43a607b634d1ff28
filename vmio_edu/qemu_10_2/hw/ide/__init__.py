"""hw/ide/ (QEMU v10.2.0): core.c (the ATA disk), ioport.c (its ports), pci.c (BMDMA's IRQ hook), piix.c."""
