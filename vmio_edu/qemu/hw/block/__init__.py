"""hw/block/ (QEMU v1.6.1): virtio_blk.py = virtio-blk.c, the virtio block device."""
