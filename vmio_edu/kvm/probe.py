"""Run a tiny guest on one kernel and keep what userspace saw at each exit: how kernel facts are measured.

A probe is a few lines of 16-bit code loaded at 0x1000 (real mode, segments 0). It runs on one of
`KERNELS` through the /dev/kvm seam only (`vmio_edu.devkvm`'s contract: ioctl + mmap), with no QEMU model
in between, so what comes back is the kernel's doing:

* "linux-3.7":  the Linux 3.7 model on Unicorn (vmio_edu/linux/);
* "linux-6.12": the Linux 6.12 model on Unicorn (vmio_edu/linux_6_12/);
* "host":       this machine's real /dev/kvm (on this project's machines kvm_pvm, an AMD host on 6.18).

Each KVM_RUN return becomes a `ProbeExit`: the kvm_run I/O fields, RIP, RCX and RFLAGS after the exit, and
the bytes in the PIO data page *before* userspace answers an IN. The probe answers every IN with a counting
pattern and stops at an OUT to port 0x501 (`DONE`). `vmio_edu.kvm.differences` reduces these to values.
"""
from __future__ import annotations

import mmap
from dataclasses import dataclass

from ..errors import VmioError
from ..linux.include.uapi.linux import kvm as K

KERNELS = ("linux-3.7", "linux-6.12", "host")
CODE = 0x1000
STACK = 0x8000
RAM_SIZE = 1 << 20
DONE = 0x501  # an OUT to this port ends a probe


@dataclass(frozen=True)
class ProbeExit:
    """One return of KVM_RUN, as userspace sees it."""

    reason: int
    direction: int  # K.KVM_EXIT_IO_IN / _OUT
    size: int
    port: int
    count: int
    rip: int
    rcx: int
    rflags: int
    pio: bytes  # count*size bytes of the PIO data page at the exit (before an IN is answered)

    @property
    def is_out(self) -> bool:
        return self.reason == K.KVM_EXIT_IO and self.direction == K.KVM_EXIT_IO_OUT


@dataclass(frozen=True)
class Probe:
    """A guest that shows one behaviour: `src` (16-bit assembly, immediates in hex), and bytes to put in RAM."""

    src: str
    ram: tuple[tuple[int, bytes], ...] = ()


def _open(kernel: str):
    if kernel == "linux-3.7":
        from ..linux.virt.kvm.kvm_main import open_emulated_kvm
        return open_emulated_kvm(None)
    if kernel == "linux-6.12":
        from ..linux_6_12.virt.kvm.kvm_main import open_emulated_kvm as open_6_12
        return open_6_12(None)
    if kernel == "host":
        from .device import open_real_kvm
        return open_real_kvm(None)  # EngineUnavailable names why not
    raise VmioError(f"unknown kernel {kernel!r}: choose one of {', '.join(KERNELS)}")


def run_probe(probe: Probe, kernel: str, limit: int = 5000) -> list[ProbeExit]:
    """Run `probe` on `kernel` until its OUT to DONE (included); every exit, in order."""
    from ..guest import assemble
    from ..guest.loader import boot_state
    from ..qemu.kvm_all import ram_address  # the host address KVM_SET_USER_MEMORY_REGION takes

    code = assemble(probe.src, mode=16, base=CODE)
    kvm = _open(kernel)
    ram = mmap.mmap(-1, RAM_SIZE)
    page = run = io = None
    try:
        vm = kvm.ioctl(K.KVM_CREATE_VM, 0)
        vm.ioctl(K.KVM_CREATE_IRQCHIP, 0)
        vm.ioctl(K.KVM_SET_USER_MEMORY_REGION, K.kvm_userspace_memory_region(
            slot=0, flags=0, guest_phys_addr=0, memory_size=RAM_SIZE, userspace_addr=ram_address(ram)))
        vcpu = vm.ioctl(K.KVM_CREATE_VCPU, 0)
        page = vcpu.mmap(kvm.ioctl(K.KVM_GET_VCPU_MMAP_SIZE, 0))
        run = K.kvm_run.from_buffer(page)
        for at, data in probe.ram:
            ram[at:at + len(data)] = data
        ram[CODE:CODE + len(code)] = code
        bs = boot_state(ram, 16, CODE, STACK)
        vcpu.ioctl(K.KVM_SET_SREGS, bs.sregs)
        vcpu.ioctl(K.KVM_SET_REGS, bs.regs)
        out: list[ProbeExit] = []
        for i in range(limit):
            rc = vcpu.ioctl(K.KVM_RUN, 0)
            if rc != 0:
                raise VmioError(f"KVM_RUN returned {rc} on {kernel}")
            regs = K.kvm_regs()
            vcpu.ioctl(K.KVM_GET_REGS, regs)
            io = run.u.io
            reason = run.exit_reason
            n = io.count * io.size if reason == K.KVM_EXIT_IO else 0
            ex = ProbeExit(reason, io.direction, io.size, io.port, io.count, regs.rip, regs.rcx, regs.rflags,
                           bytes(page[io.data_offset:io.data_offset + n]))
            out.append(ex)
            if reason != K.KVM_EXIT_IO:
                raise VmioError(f"probe on {kernel}: exit {K.EXIT_NAMES.get(reason, reason)} at rip={regs.rip:#x}")
            if ex.is_out and io.port == DONE:
                return out
            if io.direction == K.KVM_EXIT_IO_IN:
                page[io.data_offset:io.data_offset + n] = bytes((i + j) & 0xFF for j in range(n))
        raise VmioError(f"probe on {kernel}: no OUT to {DONE:#x} in {limit} exits")
    finally:
        run = io = None  # ctypes views into the mapping: gone before it is released
        if page is not None:
            try:
                page.release()
            except (AttributeError, BufferError):
                pass
        kvm.close()
        try:
            ram.close()
        except BufferError:  # a ctypes view may still hold it; the mapping goes with the last reference
            pass
