"""util/ (QEMU v1.6.1): the small OS layers QEMU builds on: event notifiers, threads and semaphores,
I/O vectors."""
