"""hw/pci/ (QEMU v1.6.1): pci.py = pci.c (config space, BARs, INTx), pci_host.py = pci_host.c (config
mechanism #1 on ports 0xcf8/0xcfc)."""
