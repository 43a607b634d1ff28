"""hw/ide/ (QEMU v1.6.1): the IDE controller. internal.py = internal.h, core.py = core.c (the ATA disk in
PIO mode), pci.py = pci.c (bus-master DMA state and its IRQ hook), piix.py = piix.c (the PIIX3 ports)."""
