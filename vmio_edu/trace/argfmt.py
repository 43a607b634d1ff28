"""Arguments as gdb would print them, for the CLI and the panel alike.

gdb prints an `int` in decimal, but the values on this path read better the way the sources and the
prose write them: ports, addresses and register values in hex (`port=0x1f0`, `val=0x8c17`), ioctl
numbers and enum values by their names (`type=KVM_RUN`, `direction=KVM_EXIT_IO_OUT`), counts and sector
numbers in decimal (`nb_sectors=1`). One table here decides, so every view says the same thing.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Mapping

# Argument names whose integers are addresses, ports, register or bus values: hex, as in the C sources.
HEX_NAMES = frozenset({
    "addr", "addr1", "port", "val", "data", "mask", "gpa", "cr2", "iobase", "iobase2", "flags", "error_code",
    "emulation_type", "status", "rip", "rsp", "rax", "rcx", "rdx", "rsi", "rdi", "qualification",
    "exit_qualification", "gva", "pgoff", "aio_offset", "pos",
})
# Argument names whose integers are ioctl request numbers (QEMU's `type`, Linux's `ioctl`).
IOCTL_NAMES = frozenset({"ioctl", "type", "request", "cmd_ioctl"})


@lru_cache(maxsize=1)
def _kvm_names() -> dict[str, dict[int, str]]:
    """Reverse tables of <linux/kvm.h>: ioctl numbers, exit reasons, I/O directions."""
    from ..linux.include.uapi.linux import kvm as K

    ioctls: dict[int, str] = {}
    exits: dict[int, str] = {}
    io: dict[int, str] = {}
    for name, v in vars(K).items():
        if not name.startswith("KVM_") or not isinstance(v, int) or isinstance(v, bool):
            continue
        if name.startswith("KVM_EXIT_IO_"):
            io.setdefault(v, name)
        elif name.startswith("KVM_EXIT_"):
            exits.setdefault(v, name)
        elif (v >> 8) & 0xFF == 0xAE:  # _IO(KVMIO=0xAE, nr): an ioctl request number
            ioctls.setdefault(v, name)
    return {"ioctl": ioctls, "exit": exits, "io": io}


@lru_cache(maxsize=1)
def _aio_types() -> dict[int, str]:
    try:
        from ..qemu.block.raw_posix import AIO_TYPE_NAMES
    except ImportError:  # pragma: no cover - part of the package
        return {}
    return dict(AIO_TYPE_NAMES)


def ioctl_name(v: int) -> str | None:
    """`KVM_RUN` for 0xae80; None for a number <linux/kvm.h> does not define."""
    return _kvm_names()["ioctl"].get(v)


def exit_reason_name(v: int) -> str | None:
    """`KVM_EXIT_IO` for 2 (struct kvm_run's exit_reason)."""
    return _kvm_names()["exit"].get(v)


# Arguments of one function that take named constants (the virtio-blk status byte).
FUNCTION_CONSTANTS: dict[tuple[str, str], dict[int, str]] = {
    ("virtio_blk_req_complete", "status"): {0: "VIRTIO_BLK_S_OK", 1: "VIRTIO_BLK_S_IOERR", 2: "VIRTIO_BLK_S_UNSUPP"},
}


def format_value(name: str, v: Any, function: str | None = None) -> str:
    """One argument's value as the panel and the CLI print it (see the module docstring)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "0x0"
    if isinstance(v, int):
        named = FUNCTION_CONSTANTS.get((function, name), {}).get(v) if function else None
        if named:
            return named
        if name in IOCTL_NAMES:
            if function in ("paio_submit", "raw_aio_submit"):
                return _aio_types().get(v, hex(v))
            named = ioctl_name(v)
            if named:
                return named
            return hex(v) if v > 9 else str(v)
        if name == "direction":
            return _kvm_names()["io"].get(v, str(v))
        if name in ("exit_reason", "run_exit_reason"):
            return exit_reason_name(v) or str(v)
        if name in HEX_NAMES or name.endswith(("_addr", "_port")):
            return hex(v) if v >= 0 else f"-{-v:#x}"
        return str(v)
    if callable(v) and hasattr(v, "__name__"):
        return v.__name__
    if isinstance(v, (bytes, bytearray, memoryview)):
        b = bytes(v)
        return f'"{b[:8].hex()}"' + ("..." if len(b) > 8 else "")
    return str(v)


def format_args(args: Mapping[str, Any], function: str | None = None) -> str:
    """`port=0x1f0, direction=KVM_EXIT_IO_OUT, size=2, count=1`: a frame's argument list, gdb style."""
    return ", ".join(f"{k}={format_value(k, v, function)}" for k, v in args.items())


def format_frame(f: Any) -> str:
    """One backtrace line, gdb style, with the arguments formatted as above (`f` is a BtFrame)."""
    where = f" at {f.file}:{f.line}" if getattr(f, "file", "") else ""
    return f"#{f.level:<2} {f.function} ({format_args(f.args or {}, f.function)}){where}"
