"""hw/i386/kvm/ (QEMU v10.2.0): the in-kernel PIC and IOAPIC as QEMU sees them (line forwarders)."""
