"""virt/kvm/eventfd.c (Linux v3.7), the ioeventfd half: a guest write to a port (or an MMIO address) that
KVM turns into an eventfd signal inside the kernel, so the exit never reaches userspace.

API (stable; what the VM file's ioctl calls, and what tests and views read):
    kvm_ioeventfd(kvm, args)      # KVM_IOEVENTFD with a `struct kvm_ioeventfd`; 0 or a negative errno
    kvm.ioeventfds                # the registered `_ioeventfd`s, in registration order (list_add_tail)
    _ioeventfd.signals            # model-only: how many writes this registration turned into signals

Userspace calls it as `vmfd.ioctl(KVM_IOEVENTFD, kvm_ioeventfd(...))` (vmio_edu.linux.include.uapi.linux.kvm);
the VM file raises OSError(errno) on failure, like the real ioctl. What 3.7 checks, in its order:
`len` must be 1, 2, 4 or 8 (EINVAL), `addr + len` must not wrap (EINVAL), no flag outside DATAMATCH |
PIO | DEASSIGN (EINVAL), `fd` must be an open eventfd (EBADF / EINVAL), and no registration may already
cover the same address and length with the same datamatch, or with a wildcard on either side (EEXIST).
Deassign finds the registration by eventfd, address, length, wildcard-ness and datamatch (ENOENT if none).

A registration is a `kvm_io_device` on the KVM PIO bus (KVM_IOEVENTFD_FLAG_PIO) or MMIO bus. x86.c's
`kernel_pio` offers every port write to that bus before it would fill `kvm_run->io`; `ioeventfd_write`
takes the write only if address and length match exactly (and the value, unless wildcard), and then
`eventfd_signal`s the eventfd: the vCPU goes straight back into the guest.
"""
from __future__ import annotations

import errno
from dataclasses import dataclass

from ...include.linux.kvm_host import KVM_MMIO_BUS, KVM_PIO_BUS, kvm, kvm_io_device
from ...include.uapi.linux import kvm as K
from ...fs.eventfd import eventfd_ctx, eventfd_ctx_fdget, eventfd_ctx_put, eventfd_signal
from ....trace.tracepoint import tracepoint


@dataclass(eq=False)
class _ioeventfd:
    """struct _ioeventfd: one registration. `dev` is what hangs on the bus (its write is ioeventfd_write)."""

    addr: int
    length: int
    eventfd: eventfd_ctx
    datamatch: int = 0
    wildcard: bool = False
    bus_idx: int = KVM_PIO_BUS
    dev: kvm_io_device | None = None
    signals: int = 0  # model-only: writes turned into eventfd signals

    def view(self) -> dict:
        return {"addr": self.addr, "length": self.length, "bus": "pio" if self.bus_idx == KVM_PIO_BUS else "mmio",
                "datamatch": None if self.wildcard else self.datamatch, "fd": self.eventfd.user_fd,
                "signals": self.signals}


@tracepoint("kvm", args=("p", "addr", "len", "val"))
def ioeventfd_in_range(p: _ioeventfd, addr: int, len: int, val: bytes) -> bool:  # noqa: A002 - the C name
    """A hit needs the exact address and length; then a wildcard always hits, otherwise the written value
    (little-endian, `len` bytes) must equal the datamatch."""
    if not (addr == p.addr and len == p.length):
        return False
    if p.wildcard:
        return True
    if len not in (1, 2, 4, 8):
        return False
    return int.from_bytes(bytes(val[:len]), "little") == p.datamatch


@tracepoint("kvm", args=("this", "addr", "len", "val"))
def ioeventfd_write(this: _ioeventfd, addr: int, len: int, val: bytes) -> int:  # noqa: A002
    """The device's write: not ours (-EOPNOTSUPP, the bus tries the next device or userspace), or signal
    the eventfd and report the write handled (0)."""
    p = this
    if not ioeventfd_in_range(p, addr, len, val):
        return -errno.EOPNOTSUPP
    eventfd_signal(p.eventfd, 1)
    p.signals += 1
    return 0


def _io_device(p: _ioeventfd) -> kvm_io_device:
    """kvm_iodevice_init(&p->dev, &ioeventfd_ops): only .write (reads are not taken: -EOPNOTSUPP)."""
    return kvm_io_device("ioeventfd", lambda a, n: None,
                         lambda a, n, data: ioeventfd_write(p, a, n, data) == 0)


def ioeventfd_release(p: _ioeventfd, k: kvm) -> None:
    eventfd_ctx_put(p.eventfd)
    if p in k.ioeventfds:
        k.ioeventfds.remove(p)


@tracepoint("kvm", args=("kvm=k", "p"))
def ioeventfd_check_collision(k: kvm, p: _ioeventfd) -> bool:
    """Is there a registration with the same address and length whose values overlap this one's?"""
    for q in k.ioeventfds:
        if q.addr == p.addr and q.length == p.length and (q.wildcard or p.wildcard or q.datamatch == p.datamatch):
            return True
    return False


@tracepoint("kvm", args=("kvm=k", "args"))
def kvm_assign_ioeventfd(k: kvm, args: K.kvm_ioeventfd) -> int:
    """Check the request, take a reference to the eventfd and hang a `_ioeventfd` on the bus."""
    from .kvm_main import kvm_io_bus_register_dev
    pio = args.flags & K.KVM_IOEVENTFD_FLAG_PIO
    bus_idx = KVM_PIO_BUS if pio else KVM_MMIO_BUS
    if args.len not in (1, 2, 4, 8):  # must be natural-word sized
        return -errno.EINVAL
    if args.addr + args.len > (1 << 64) - 1:  # the range must not wrap around
        return -errno.EINVAL
    if args.flags & ~K.KVM_IOEVENTFD_VALID_FLAG_MASK:
        return -errno.EINVAL
    eventfd = eventfd_ctx_fdget(args.fd)
    if isinstance(eventfd, int):  # IS_ERR
        return eventfd
    p = _ioeventfd(addr=args.addr, length=args.len, eventfd=eventfd, bus_idx=bus_idx)
    if args.flags & K.KVM_IOEVENTFD_FLAG_DATAMATCH:
        p.datamatch = args.datamatch
    else:
        p.wildcard = True
    if ioeventfd_check_collision(k, p):
        eventfd_ctx_put(eventfd)
        return -errno.EEXIST
    p.dev = _io_device(p)
    ret = kvm_io_bus_register_dev(k, bus_idx, p.addr, p.length, p.dev)
    if ret < 0:
        eventfd_ctx_put(eventfd)
        return ret
    k.ioeventfds.append(p)
    return 0


@tracepoint("kvm", args=("kvm=k", "args"))
def kvm_deassign_ioeventfd(k: kvm, args: K.kvm_ioeventfd) -> int:
    """Find the registration with this eventfd, address, length and datamatch, and take it off the bus."""
    from .kvm_main import kvm_io_bus_unregister_dev
    pio = args.flags & K.KVM_IOEVENTFD_FLAG_PIO
    bus_idx = KVM_PIO_BUS if pio else KVM_MMIO_BUS
    eventfd = eventfd_ctx_fdget(args.fd)
    if isinstance(eventfd, int):
        return eventfd
    ret = -errno.ENOENT
    wildcard = not args.flags & K.KVM_IOEVENTFD_FLAG_DATAMATCH
    for p in list(k.ioeventfds):
        if not p.eventfd.same(eventfd) or p.addr != args.addr or p.length != args.len or p.wildcard != wildcard:
            continue
        if not p.wildcard and p.datamatch != args.datamatch:
            continue
        kvm_io_bus_unregister_dev(k, bus_idx, p.dev)
        ioeventfd_release(p, k)
        ret = 0
        break
    eventfd_ctx_put(eventfd)
    return ret


@tracepoint("kvm", args=("kvm=k", "args"))
def kvm_ioeventfd(k: kvm, args: K.kvm_ioeventfd) -> int:
    """The KVM_IOEVENTFD vm ioctl: assign, or deassign with KVM_IOEVENTFD_FLAG_DEASSIGN."""
    if args.flags & K.KVM_IOEVENTFD_FLAG_DEASSIGN:
        return kvm_deassign_ioeventfd(k, args)
    return kvm_assign_ioeventfd(k, args)


def kvm_ioeventfd_destroy_all(k: kvm) -> None:
    """kvm_destroy_vm → kvm_io_bus_destroy → ioeventfd_destructor: drop every registration's reference."""
    for p in list(k.ioeventfds):
        ioeventfd_release(p, k)


__all__ = ["kvm_ioeventfd", "kvm_assign_ioeventfd", "kvm_deassign_ioeventfd", "ioeventfd_write",
           "ioeventfd_in_range", "ioeventfd_check_collision", "_ioeventfd", "kvm_ioeventfd_destroy_all"]
