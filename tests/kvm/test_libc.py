"""vmio_edu.kvm.libc: the ioctl wrapper the real engine uses for everything but KVM_RUN."""
import ctypes
import errno
import os
import termios

import pytest

from vmio_edu.kvm import libc


def test_an_ioctl_interrupted_by_a_signal_is_made_again(monkeypatch):
    """EINTR means the call did nothing (a watchdog kick or a profiler's signal landed first): it is made
    again, as QEMU's kvm_init loops on KVM_CREATE_VM, and the caller sees the real result."""
    real = libc._ioctl
    calls = []

    def interrupted_twice(fd, request, arg):
        calls.append(request)
        if len(calls) <= 2:
            ctypes.set_errno(errno.EINTR)
            return -1
        return real(fd, request, arg)

    monkeypatch.setattr(libc, "_ioctl", interrupted_twice)
    r, w = os.pipe()
    try:
        os.write(w, b"abc")
        n = ctypes.c_int(0)
        assert libc.ioctl(r, termios.FIONREAD, n) == 0
        assert n.value == 3 and len(calls) == 3
    finally:
        os.close(r), os.close(w)


def test_other_ioctl_errors_still_raise(monkeypatch):
    r, w = os.pipe()
    try:
        with pytest.raises(OSError) as e:
            libc.ioctl(r, 0xAE01, 0)  # KVM_CREATE_VM on a pipe: not a KVM fd
        assert e.value.errno in (errno.ENOTTY, errno.EINVAL)
    finally:
        os.close(r), os.close(w)
