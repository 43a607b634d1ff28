"""hw/virtio/ (QEMU v1.6.1): virtio.py = virtio.c (virtqueues in guest RAM), virtio_pci.py = virtio-pci.c
(the legacy virtio-pci I/O BAR, INTx, ioeventfd)."""
