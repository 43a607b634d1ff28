"""fs/eventfd.c (Linux v3.7): the kernel's side of an eventfd, as KVM's ioeventfd uses it.

API (used by virt/kvm/eventfd.py; stable):
    ctx = eventfd_ctx_fdget(fd)   # an `eventfd_ctx`, or a negative errno (-EBADF, -EINVAL) like ERR_PTR
    eventfd_signal(ctx, 1)        # add 1 to the counter and wake the pollers; returns what was added
    eventfd_ctx_put(ctx)          # drop the reference
    same_file(fd_a, fd_b)         # do two descriptors name the same open eventfd (the same ctx)?

The eventfd is always a REAL one (`os.eventfd`): userspace reads it with a real read(2). The kernel's
reference to it (`eventfd_ctx_fdget` takes one, so the eventfd outlives a close() by QEMU) is a real
duplicate of the descriptor, and `eventfd_signal` is a real 8-byte write to it. What is modelled is only
the wake-up of a model thread asleep in poll on that eventfd: the scheduler blocks such threads instead
of letting them sleep in the host kernel (vmio_edu/qemu/util/event_notifier_posix.py keeps their wait
queues), so `eventfd_signal` wakes them there, as the real one's `wake_up_locked_poll` does.
"""
from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import platform
from dataclasses import dataclass

from ...trace.tracepoint import tracepoint

ULLONG_MAX = (1 << 64) - 1
_KCMP_FILE = 0
_SYS_KCMP = 312  # x86-64


@dataclass(eq=False)
class eventfd_ctx:
    """struct eventfd_ctx, as a reference the kernel holds: `fd` is the kernel's own (duplicated)
    descriptor of the user's eventfd, `user_fd` the number userspace passed (for views and messages).
    Two contexts are the same context when they name the same open eventfd (`same_file`)."""

    fd: int
    user_fd: int

    def same(self, other: "eventfd_ctx") -> bool:
        return self is other or same_file(self.fd, other.fd)

    def view(self) -> dict:
        return {"fd": self.user_fd, "count": eventfd_count(self.fd)}


def _is_eventfd(fd: int) -> bool:
    try:
        return os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:[eventfd]"
    except OSError:
        return False


def _fdinfo(fd: int, key: str) -> str | None:
    try:
        with open(f"/proc/self/fdinfo/{fd}") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k == key:
                    return v.strip()
    except OSError:
        return None
    return None


def eventfd_count(fd: int) -> int | None:
    """The counter as the kernel shows it in /proc/self/fdinfo (None where it does not)."""
    v = _fdinfo(fd, "eventfd-count")
    return int(v, 16) if v is not None else None


_libc = ctypes.CDLL(None, use_errno=True)


def same_file(fd_a: int, fd_b: int) -> bool:
    """Do both descriptors refer to the same open file? kcmp(KCMP_FILE), else the eventfd-id of fdinfo,
    else only the same number (every eventfd shares one anonymous inode, so fstat cannot tell)."""
    if fd_a == fd_b:
        return True
    if platform.machine() == "x86_64":  # kcmp's syscall number is per architecture
        pid = os.getpid()
        r = _libc.syscall(_SYS_KCMP, pid, pid, _KCMP_FILE, fd_a, fd_b)
        if r >= 0:
            return r == 0
    ida, idb = _fdinfo(fd_a, "eventfd-id"), _fdinfo(fd_b, "eventfd-id")
    return ida is not None and ida == idb


@tracepoint("host", args=("fd",))
def eventfd_ctx_fdget(fd: int) -> "eventfd_ctx | int":
    """Take a reference to the eventfd behind `fd`: -EBADF if `fd` is not open, -EINVAL if it is not an
    eventfd (eventfd_fget's answers)."""
    try:
        os.fstat(fd)
    except (OSError, OverflowError):
        return -errno.EBADF
    if not _is_eventfd(fd):
        return -errno.EINVAL
    return eventfd_ctx(os.dup(fd), fd)


@tracepoint("host", args=("ctx",))
def eventfd_ctx_put(ctx: eventfd_ctx) -> None:
    """Drop the kernel's reference (its duplicate descriptor)."""
    if ctx.fd >= 0:
        os.close(ctx.fd)
        ctx.fd = -1


@tracepoint("host", args=("ctx", "n"))
def eventfd_signal(ctx: eventfd_ctx, n: int) -> int:
    """Add `n` to the counter (a real write; where the counter is full the kernel saturates it, the model
    stops one below, the most write(2) allows) and wake every model thread asleep in poll on this eventfd.
    Returns the amount added."""
    from ...qemu.util.event_notifier_posix import wake_up_poll_file
    if not fcntl.fcntl(ctx.fd, fcntl.F_GETFL) & os.O_NONBLOCK:
        count = eventfd_count(ctx.fd) or 0  # a blocking eventfd would sleep at the top: never here
        n = min(n, ULLONG_MAX - 1 - count)
    if n > 0:
        try:
            os.eventfd_write(ctx.fd, n)
        except BlockingIOError:
            n = 0  # the counter is at its maximum: the fd is readable already
    wake_up_poll_file(ctx.fd)
    return n
