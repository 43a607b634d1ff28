"""hw/pci-host/ (QEMU v1.6.1): piix.py = piix.c (the i440FX host bridge and the PIIX3 INTx router)."""
