"""The system calls the real engine needs, through ctypes: ioctl, mmap, munmap.

ctypes releases the GIL around each call, so a vCPU sitting in KVM_RUN never stops the other Python
threads (the watchdog, the controller).
"""
from __future__ import annotations

import ctypes
import errno
import os

_libc = ctypes.CDLL(None, use_errno=True)

_ioctl = _libc.ioctl
_ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
_ioctl.restype = ctypes.c_int

_mmap = _libc.mmap
_mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_mmap.restype = ctypes.c_void_p

_munmap = _libc.munmap
_munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_munmap.restype = ctypes.c_int

PROT_READ, PROT_WRITE = 1, 2
MAP_SHARED, MAP_PRIVATE, MAP_FIXED, MAP_ANONYMOUS = 0x01, 0x02, 0x10, 0x20
MAP_FAILED = ctypes.c_void_p(-1).value


def _raise(what: str) -> None:
    err = ctypes.get_errno()
    raise OSError(err, f"{what}: {os.strerror(err)}")


def ioctl(fd: int, request: int, arg: "int | ctypes._CData | None" = 0) -> int:
    """ioctl(fd, request, arg): an int is passed as the value, a ctypes object by address.

    Returns the kernel's non-negative result; raises OSError(errno) on failure.
    """
    if arg is None:
        ptr = None
    elif isinstance(arg, int):
        ptr = arg
    else:
        ptr = ctypes.addressof(arg)
    while True:
        r = _ioctl(fd, request, ptr)
        if r >= 0:
            return r
        if ctypes.get_errno() != errno.EINTR:
            _raise(f"ioctl {request:#x}")
        # A signal (a watchdog kick, a profiler) landed first: the call did nothing, so make it again, as
        # QEMU's kvm_init does for KVM_CREATE_VM. KVM_RUN goes through ioctl_errno, where EINTR means "kicked".


def ioctl_errno(fd: int, request: int, arg: int = 0) -> tuple[int, int]:
    """The same call, returning (result, errno) instead of raising: KVM_RUN's EINTR is not an error."""
    r = _ioctl(fd, request, arg)
    return (r, ctypes.get_errno()) if r < 0 else (r, 0)


def mmap_shared(fd: int, length: int) -> int:
    """mmap(NULL, length, RW, MAP_SHARED, fd, 0): the vCPU's kvm_run pages. Returns the address."""
    addr = _mmap(None, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
    if addr in (None, MAP_FAILED):
        _raise("mmap")
    return addr


def replace_with_zero_pages(addr: int, length: int) -> None:
    """Map fresh anonymous pages over [addr, addr+length): drops the file's mapping at once, and any view
    still pointing there reads zeros instead of crashing the process."""
    r = _mmap(addr, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0)
    if r in (None, MAP_FAILED):
        _raise("mmap(MAP_FIXED)")


def munmap(addr: int, length: int) -> None:
    if _munmap(addr, length) < 0:
        _raise("munmap")
