"""A bare VMM for the real-KVM tests: one RAM slot, one vCPU, keystone code, a KVM_RUN loop.

It talks to the engine only through the `devkvm` contract (ioctl + mmap), so what it sees is what QEMU's
model will see. CPU state for 16/32/64-bit guests comes from `vmio_edu.guest.loader.boot_state`.
"""
from __future__ import annotations

import ctypes
import mmap
from dataclasses import dataclass
from typing import Any, Callable

import pytest
from keystone import KS_ARCH_X86, KS_MODE_16, KS_MODE_32, KS_MODE_64, Ks

from vmio_edu.errors import EngineUnavailable
from vmio_edu.guest.loader import boot_state
from vmio_edu.kvm.device import open_real_kvm
from vmio_edu.linux.include.uapi.linux import kvm as K

CODE = 0x1000
STACK = 0x8000
RAM_SIZE = 2 << 20
_KS = {16: KS_MODE_16, 32: KS_MODE_32, 64: KS_MODE_64}


def open_kvm_or_skip(sched: Any = None):
    try:
        return open_real_kvm(sched)
    except EngineUnavailable as e:
        pytest.skip(f"no /dev/kvm: {e}")


def assemble(src: str, mode: int, base: int = CODE) -> bytes:
    code, _ = Ks(KS_ARCH_X86, _KS[mode]).asm(src, base)
    return bytes(code)


@dataclass
class Exit:
    """One KVM_RUN return as userspace sees it: kvm_run fields, a few registers, the PIO bytes."""

    reason: int
    direction: int
    size: int
    port: int
    count: int
    data_offset: int
    rip: int
    rax: int
    rcx: int
    rsi: int
    rdi: int
    data: bytes  # count*size bytes at data_offset (for OUT: what the guest sent)


class Guest:
    """VM + 2 MiB of RAM (an anonymous mmap) in slot 0 + vCPU 0, in `mode` (16, 32 or 64)."""

    def __init__(self, mode: int = 16, irqchip: bool = True, sched: Any = None):
        self.mode = mode
        self.kvm = open_kvm_or_skip(sched)
        self.vm = self.kvm.ioctl(K.KVM_CREATE_VM, 0)
        if irqchip:
            self.vm.ioctl(K.KVM_CREATE_IRQCHIP, 0)
        self.ram = mmap.mmap(-1, RAM_SIZE)
        anchor = ctypes.c_char.from_buffer(self.ram)
        addr = ctypes.addressof(anchor)
        del anchor  # keep no export, so the mmap can be closed later
        self.vm.ioctl(K.KVM_SET_USER_MEMORY_REGION, K.kvm_userspace_memory_region(
            slot=0, flags=0, guest_phys_addr=0, memory_size=RAM_SIZE, userspace_addr=addr))
        self.vcpu = self.vm.ioctl(K.KVM_CREATE_VCPU, 0)
        self.mmap_size = self.kvm.ioctl(K.KVM_GET_VCPU_MMAP_SIZE, 0)
        self.page = self.vcpu.mmap(self.mmap_size)
        self.run = K.kvm_run.from_buffer(self.page)

    # -- setup ------------------------------------------------------------------------------------
    def load(self, src: str, **regs: int) -> bytes:
        """Assemble `src` at CODE, set the boot state for the mode, then any registers given."""
        code = assemble(src, self.mode)
        self.ram[CODE:CODE + len(code)] = code
        bs = boot_state(self.ram, self.mode, CODE, STACK)
        self.vcpu.ioctl(K.KVM_SET_SREGS, bs.sregs)
        for k, v in regs.items():
            setattr(bs.regs, k, v)
        self.vcpu.ioctl(K.KVM_SET_REGS, bs.regs)
        return code

    def regs(self) -> K.kvm_regs:
        r = K.kvm_regs()
        self.vcpu.ioctl(K.KVM_GET_REGS, r)
        return r

    def sregs(self) -> K.kvm_sregs:
        s = K.kvm_sregs()
        self.vcpu.ioctl(K.KVM_GET_SREGS, s)
        return s

    def irq_line(self, irq: int, level: int) -> None:
        self.vm.ioctl(K.KVM_IRQ_LINE, K.kvm_irq_level(irq, level))

    # -- running ----------------------------------------------------------------------------------
    def step(self) -> Exit:
        """One KVM_RUN; the exit it returned."""
        assert self.vcpu.ioctl(K.KVM_RUN, 0) == 0
        io = self.run.u.io
        r = self.regs()
        data = b""
        if self.run.exit_reason == K.KVM_EXIT_IO:
            data = bytes(self.page[io.data_offset:io.data_offset + io.count * io.size])
        return Exit(self.run.exit_reason, io.direction, io.size, io.port, io.count, io.data_offset,
                    r.rip, r.rax, r.rcx, r.rsi, r.rdi, data)

    def answer_in(self, ex: Exit, data: bytes) -> None:
        """Put the data for an IN exit in the PIO page (the next KVM_RUN hands it to the guest)."""
        assert ex.reason == K.KVM_EXIT_IO and ex.direction == K.KVM_EXIT_IO_IN
        assert len(data) == ex.count * ex.size
        self.page[ex.data_offset:ex.data_offset + len(data)] = data

    def run_until(self, stop_port: int, answer: Callable[[Exit], bytes] | None = None,
                  limit: int = 20000) -> list[Exit]:
        """KVM_RUN until an OUT to `stop_port`; IN exits are answered with `answer(exit)` (zeros by
        default). Returns every exit, the final one included."""
        exits = []
        for _ in range(limit):
            ex = self.step()
            exits.append(ex)
            if ex.reason != K.KVM_EXIT_IO:
                raise AssertionError(f"unexpected exit {K.EXIT_NAMES.get(ex.reason, ex.reason)} at "
                                     f"rip={ex.rip:#x}")
            if ex.direction == K.KVM_EXIT_IO_OUT and ex.port == stop_port:
                return exits
            if ex.direction == K.KVM_EXIT_IO_IN:
                self.answer_in(ex, answer(ex) if answer else bytes(ex.count * ex.size))
        raise AssertionError(f"no OUT to {stop_port:#x} in {limit} exits")

    def close(self) -> None:
        self.run = None
        self.page.release()
        self.kvm.close()
        self.ram.close()
