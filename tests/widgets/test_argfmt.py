"""Arguments as the panel and the CLI print them: hex where the sources write hex, constants by name."""
import re

from vmio_edu.linux.include.uapi.linux import kvm as K
from vmio_edu.trace.argfmt import format_args, format_value, ioctl_name


def test_ports_and_values_in_hex_counts_in_decimal():
    assert format_args({"port": 0x1F0, "size": 2, "count": 256}) == "port=0x1f0, size=2, count=256"
    assert format_value("val", 35863) == "0x8c17"
    assert format_value("sector_num", 20) == "20"
    assert format_value("is_write", True) == "true"


def test_constants_by_name():
    assert ioctl_name(K.KVM_RUN) == "KVM_RUN"
    assert format_value("type", K.KVM_RUN) == "KVM_RUN"            # QEMU's kvm_vcpu_ioctl(cpu, type)
    assert format_value("ioctl", K.KVM_IRQ_LINE_STATUS) == "KVM_IRQ_LINE_STATUS"
    assert format_value("direction", K.KVM_EXIT_IO_OUT) == "KVM_EXIT_IO_OUT"
    assert format_value("exit_reason", K.KVM_EXIT_IO) == "KVM_EXIT_IO"
    assert format_value("type", 2, "paio_submit") == "QEMU_AIO_WRITE"
    assert format_value("ioctl", 0x1234) == "0x1234"  # not a KVM ioctl: the number, in hex


def test_cli_backtrace_uses_it(capsys):
    from vmio_edu.cli import main

    assert main(["trace", "--op", "write", "--lba", "1", "--sectors", "1", "--break", "kvm_handle_io"]) == 0
    out = capsys.readouterr().out
    # the first: nIEN on the device control port. Every real parameter of kvm_handle_io (kvm-all.c:1499) in
    # order, the port and the PIO page pointer in hex, the direction by its <linux/kvm.h> name
    assert re.search(r"#0  kvm_handle_io \(port=0x3f6, data=0x[0-9a-f]+, direction=KVM_EXIT_IO_OUT, size=1, "
                     r"count=1\) at kvm-all\.c:\d+\n", out), out
    assert re.search(r"#1  kvm_cpu_exec \(cpu=0x[0-9a-f]+\) at kvm-all\.c:\d+", out), out


def test_a_frame_prints_as_the_cli_prints_it():
    # str(frame) in a notebook says what `vmio-edu trace --break` says: one formatting for every view
    from vmio_edu.trace.backtrace import BtFrame

    f = BtFrame(0, "kvm_vcpu_ioctl", {"cpu": "0x5555573c7200", "type": K.KVM_RUN, "arg": "<optimized out>"},
                "kvm-all.c", 1646, "qemu-cpu", "vcpu0")
    assert str(f) == "#0  kvm_vcpu_ioctl (cpu=0x5555573c7200, type=KVM_RUN, arg=<optimized out>) at kvm-all.c:1646"
