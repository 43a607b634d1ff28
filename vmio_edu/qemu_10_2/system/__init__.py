"""system/ (QEMU v10.2.0): what QEMU 1.6.1 had in cpus.c, exec.c, memory.c, ioport.c and vl.c."""
