"""Arguments as the panel and the CLI print them: hex where the sources write hex, constants by name."""
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
    assert "kvm_handle_io (port=0x3f6, direction=KVM_EXIT_IO_OUT" in out  # the first: nIEN on the device control port
