"""A bare VMM for the engine tests (kernel model and real KVM): one RAM slot, one vCPU, keystone code, a KVM_RUN loop.

It drives either engine through the `vmio_edu.devkvm` contract only (ioctl + mmap), so the emulated engine
(`open_emulated_kvm`) and the real /dev/kvm can run the very same programs and be compared exit by exit.
CPU state comes from `vmio_edu.guest.loader.boot_state` (16-bit real mode with all segments 0, flat 32-bit,
64-bit long mode with identity paging); code is loaded at 0x1000, the stack starts at 0x8000.
"""
from __future__ import annotations

import ctypes
import mmap
import struct
from dataclasses import dataclass
from typing import Any, Callable

import pytest
from keystone import KS_ARCH_X86, KS_MODE_16, KS_MODE_32, KS_MODE_64, Ks

from kvm_policy import no_kvm
from vmio_edu.errors import EngineUnavailable
from vmio_edu.guest.loader import boot_state
from vmio_edu.linux.include.uapi.linux import kvm as K
from vmio_edu.linux.virt.kvm.kvm_main import open_emulated_kvm

CODE = 0x1000
STACK = 0x8000
RAM_SIZE = 2 << 20
DONE = 0x501  # an OUT to this port ends a test program
HANDLER_AT = 0x1800  # where tests put interrupt and exception handlers
_KS = {16: KS_MODE_16, 32: KS_MODE_32, 64: KS_MODE_64}


def assemble(src: str, mode: int, base: int = CODE) -> bytes:
    code, _ = Ks(KS_ARCH_X86, _KS[mode]).asm(src, base)
    return bytes(code)


def addr_after(src: str, mode: int, base: int = CODE) -> int:
    """Guest address of the instruction that follows `src` when `src` is loaded at `base`."""
    return base + len(assemble(src, mode, base)) if src.strip() else base


EMULATED = ("unicorn", "unicorn-6.12")  # the Linux 3.7 model, the Linux 6.12 model


def open_engine(engine: str, sched: Any = None):
    if engine == "unicorn":
        return open_emulated_kvm(sched)
    if engine == "unicorn-6.12":
        from vmio_edu.linux_6_12.virt.kvm.kvm_main import open_emulated_kvm as open_6_12
        return open_6_12(sched)
    from vmio_edu.kvm.device import open_real_kvm
    try:
        return open_real_kvm(sched)
    except EngineUnavailable as e:
        no_kvm(f"no /dev/kvm: {e}")


@dataclass
class Exit:
    """One KVM_RUN return as userspace sees it, plus (emulated engine only) the VMCS of the last VM exit."""

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
    data: bytes                 # IO: count*size bytes of the PIO page; MMIO: len bytes of mmio.data
    phys_addr: int = 0
    mmio_len: int = 0
    is_write: int = 0
    exit_reason_hw: int | None = None   # VMCS VM_EXIT_REASON (emulated engine)
    qualification: int | None = None    # VMCS EXIT_QUALIFICATION (emulated engine)

    def key(self) -> tuple:
        """What both engines must agree on."""
        if self.reason == K.KVM_EXIT_IO:
            # An IN exit's PIO page holds whatever was there before (3.7 does not clear it; 6.x zero-fills
            # it, x86.c:8169-8170): only the data of OUT exits is compared.
            data = self.data if self.direction == K.KVM_EXIT_IO_OUT else None
            return (self.reason, self.direction, self.size, self.port, self.count, data, self.rip, self.rcx)
        if self.reason == K.KVM_EXIT_MMIO:
            return (self.reason, self.phys_addr, self.mmio_len, self.is_write, self.data, self.rip)
        return (self.reason, self.rip)


class Vm:
    """VM + RAM (an anonymous mmap in slot 0) + vCPU 0, in `mode` (16, 32 or 64)."""

    def __init__(self, mode: int = 16, engine: str = "unicorn", irqchip: bool = True, sched: Any = None,
                 ram_size: int = RAM_SIZE):
        self.mode, self.engine = mode, engine
        self.kvm = open_engine(engine, sched)
        self.vm = self.kvm.ioctl(K.KVM_CREATE_VM, 0)
        if irqchip:
            self.vm.ioctl(K.KVM_CREATE_IRQCHIP, 0)
        self.ram = mmap.mmap(-1, ram_size)
        anchor = ctypes.c_char.from_buffer(self.ram)
        self.ram_addr = ctypes.addressof(anchor)
        del anchor
        self.vm.ioctl(K.KVM_SET_USER_MEMORY_REGION, K.kvm_userspace_memory_region(
            slot=0, flags=0, guest_phys_addr=0, memory_size=ram_size, userspace_addr=self.ram_addr))
        self.vcpu = self.vm.ioctl(K.KVM_CREATE_VCPU, 0)
        self.mmap_size = self.kvm.ioctl(K.KVM_GET_VCPU_MMAP_SIZE, 0)
        self.page = self.vcpu.mmap(self.mmap_size)
        self.run = K.kvm_run.from_buffer(self.page)

    # -- setup --------------------------------------------------------------------------------------
    def load(self, src: str, at: int = CODE, **regs: int) -> bytes:
        """Assemble `src` at `at`, set the mode's boot state (entry `at`), then any registers given."""
        code = assemble(src, self.mode, at)
        self.ram[at:at + len(code)] = code
        bs = boot_state(self.ram, self.mode, at, STACK)
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

    def irq_line(self, irq: int, level: int, status: bool = True) -> int:
        ev = K.kvm_irq_level(irq, level)
        self.vm.ioctl(K.KVM_IRQ_LINE_STATUS if status else K.KVM_IRQ_LINE, ev)
        return ctypes.c_int32(ev.irq).value if status else 0

    @property
    def vmcs(self):
        return self.vcpu.cpu.vmcs if self.engine in EMULATED else None

    # -- running ------------------------------------------------------------------------------------
    def step(self) -> Exit:
        """One KVM_RUN; the exit it returned."""
        r = self.vcpu.ioctl(K.KVM_RUN, 0)
        assert r == 0, f"KVM_RUN returned {r}"
        run = self.run
        io, m = run.u.io, run.u.mmio
        regs = self.regs()
        data, extra = b"", {}
        if run.exit_reason == K.KVM_EXIT_IO:
            data = bytes(self.page[io.data_offset:io.data_offset + io.count * io.size])
        elif run.exit_reason == K.KVM_EXIT_MMIO:
            data = bytes(m.data)[:m.len] if m.is_write else b""
            extra = dict(phys_addr=m.phys_addr, mmio_len=m.len, is_write=m.is_write)
        v = self.vmcs
        if v is not None:
            extra.update(exit_reason_hw=v.VM_EXIT_REASON, qualification=v.EXIT_QUALIFICATION)
        return Exit(run.exit_reason, io.direction, io.size, io.port, io.count, io.data_offset, regs.rip,
                    regs.rax, regs.rcx, regs.rsi, regs.rdi, data, **extra)

    def answer_in(self, ex: Exit, data: bytes) -> None:
        """Put the data for an IN exit in the PIO page (the next KVM_RUN hands it to the guest)."""
        assert ex.reason == K.KVM_EXIT_IO and ex.direction == K.KVM_EXIT_IO_IN
        assert len(data) == ex.count * ex.size
        self.page[ex.data_offset:ex.data_offset + len(data)] = data

    def answer_mmio(self, data: bytes) -> None:
        ctypes.memmove(ctypes.addressof(self.run.u.mmio.data), data, len(data))

    def run_until(self, stop_port: int = DONE, answer: Callable[[Exit], bytes] | None = None,
                  limit: int = 20000) -> list[Exit]:
        """KVM_RUN until an OUT to `stop_port`; IN exits are answered with `answer(exit)` (a counting
        pattern by default). Returns every exit, the final one included."""
        exits = []
        for _ in range(limit):
            ex = self.step()
            exits.append(ex)
            if ex.reason != K.KVM_EXIT_IO:
                raise AssertionError(f"unexpected exit {K.EXIT_NAMES.get(ex.reason, ex.reason)} at rip={ex.rip:#x}")
            if ex.direction == K.KVM_EXIT_IO_OUT and ex.port == stop_port:
                return exits
            if ex.direction == K.KVM_EXIT_IO_IN:
                self.answer_in(ex, answer(ex) if answer else pattern(ex.count * ex.size, len(exits)))
        raise AssertionError(f"no OUT to {stop_port:#x} in {limit} exits")

    def close(self) -> None:
        self.run = None
        self.page.release()
        self.kvm.close()
        try:
            self.ram.close()
        except BufferError:
            pass


def pattern(n: int, seed: int = 0) -> bytes:
    return bytes((seed * 31 + i * 7 + 1) & 0xFF for i in range(n))


def words(data: bytes) -> list[int]:
    return list(struct.unpack(f"<{len(data) // 2}H", data))
