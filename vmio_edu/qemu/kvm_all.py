"""kvm-all.c (QEMU v1.6.1): QEMU's side of KVM.

`kvm_cpu_exec` is the vCPU loop: drop the BQL, `ioctl(KVM_RUN)`, take the BQL, and act on
`run->exit_reason`. For KVM_EXIT_IO, `kvm_handle_io` replays the access `count` times through
`cpu_in*/cpu_out*`, reading or filling the PIO data page at `run + data_offset`.
"""
from __future__ import annotations

import ctypes
import mmap
from dataclasses import dataclass, field
from typing import Any

from ..devkvm import open_dev_kvm
from ..errors import EngineUnavailable, GuestFault
from ..linux.include.uapi.linux import kvm as K
from ..trace.tracepoint import emit, tracepoint
from .ioport import cpu_inb, cpu_inl, cpu_inw, cpu_outb, cpu_outl, cpu_outw
from .state import QemuState

EXCP_INTERRUPT = 0x10000  # cpu-defs.h: "async interruption"
EXCP_HLT = 0x10001


@dataclass
class KVMState:
    """kvm-all.c's KVMState: the /dev/kvm and VM file descriptors."""

    fd: Any
    vmfd: Any
    engine: str
    irq_set_ioctl: int = K.KVM_IRQ_LINE_STATUS
    slots: list = field(default_factory=list)


@dataclass
class CPUState:
    """The part of QEMU's CPUState that KVM uses: the vCPU fd and its mmap'd `struct kvm_run`."""

    cpu_index: int
    kvm_fd: Any
    kvm_run_mem: memoryview
    kvm_run: K.kvm_run = None
    exit_request: bool = False
    stopped_reason: str | None = None

    def __post_init__(self) -> None:
        if self.kvm_run is None:
            self.kvm_run = K.kvm_run.from_buffer(self.kvm_run_mem)


def ram_address(ram: mmap.mmap) -> int:
    """The host address of QEMU's RAM block (what KVM_SET_USER_MEMORY_REGION is given)."""
    return ctypes.addressof(ctypes.c_char.from_buffer(ram))


def kvm_init(state: QemuState, engine: str, ram: mmap.mmap) -> str:
    """Open /dev/kvm, create the VM, give it RAM as slot 0 and create the in-kernel irqchip."""
    fd, used, note = open_dev_kvm(engine, state.sched, state.stack)
    version = fd.ioctl(K.KVM_GET_API_VERSION)
    if version != 12:
        raise EngineUnavailable(f"KVM API version {version}, expected 12")
    vmfd = fd.ioctl(K.KVM_CREATE_VM, 0)
    region = K.kvm_userspace_memory_region(slot=0, flags=0, guest_phys_addr=0, memory_size=len(ram),
                                           userspace_addr=ram_address(ram))
    vmfd.ioctl(K.KVM_SET_USER_MEMORY_REGION, region)
    vmfd.ioctl(K.KVM_CREATE_IRQCHIP, 0)
    state.kvm_state = KVMState(fd, vmfd, used, slots=[region])
    return note


def kvm_init_vcpu(state: QemuState, index: int = 0) -> CPUState:
    """KVM_CREATE_VCPU and mmap its `struct kvm_run` (page 0) and PIO page (page 1)."""
    s = state.kvm_state
    vcpufd = s.vmfd.ioctl(K.KVM_CREATE_VCPU, index)
    size = s.fd.ioctl(K.KVM_GET_VCPU_MMAP_SIZE, 0)
    return CPUState(index, vcpufd, vcpufd.mmap(size))


@tracepoint("qemu-cpu", args=("s", "type"))
def kvm_vm_ioctl(s: KVMState, type: int, arg: Any = 0) -> int:
    """ioctl() on the VM file descriptor."""
    return s.vmfd.ioctl(type, arg)


@tracepoint("qemu-cpu", args=("cpu", "type"))
def kvm_vcpu_ioctl(cpu: CPUState, type: int, arg: Any = 0) -> int:
    """ioctl() on the vCPU file descriptor. With type KVM_RUN this is where the guest runs."""
    return cpu.kvm_fd.ioctl(type, arg)


@tracepoint("qemu-cpu", args=("s", "irq", "level"))
def kvm_set_irq(s: KVMState, irq: int, level: int) -> int:
    """Set an in-kernel irqchip input: KVM_IRQ_LINE_STATUS on the VM fd."""
    event = K.kvm_irq_level(irq=irq, level=level)
    kvm_vm_ioctl(s, s.irq_set_ioctl, event)
    return 1 if s.irq_set_ioctl == K.KVM_IRQ_LINE else event.irq  # event.status aliases irq


def _pio(cpu: CPUState, offset: int, size: int) -> memoryview:
    return cpu.kvm_run_mem[offset:offset + size]


@tracepoint("qemu-cpu", args=("port", "data=data_offset", "direction", "size", "count"))
def kvm_handle_io(cpu: CPUState, port: int, data_offset: int, direction: int, size: int, count: int) -> None:
    """Do `count` accesses of `size` bytes on `port`, element i at `run + data_offset + i*size`.

    (The C takes `void *data`; here the PIO page is addressed by its offset in the vCPU mmap.)
    """
    ptr = data_offset
    for _ in range(count):
        if direction == K.KVM_EXIT_IO_IN:
            val = (cpu_inb, cpu_inw, None, cpu_inl)[size - 1](port)
            _pio(cpu, ptr, size)[:] = val.to_bytes(size, "little")
        else:
            val = int.from_bytes(_pio(cpu, ptr, size), "little")
            (cpu_outb, cpu_outw, None, cpu_outl)[size - 1](port, val)
        ptr += size


@tracepoint("qemu-cpu", args=("cpu", "run", "reason"))
def kvm_handle_internal_error(cpu: CPUState, run: K.kvm_run, reason: str = "") -> int:
    """KVM could not emulate something: QEMU prints the suberror and stops the VM."""
    sub = run.u.internal.suberror
    what = "emulation failure" if sub == K.KVM_INTERNAL_ERROR_EMULATION else f"suberror {sub}"
    reason = reason or _engine_detail(cpu)
    raise GuestFault(f"KVM internal error ({what}){': ' + reason if reason else ''}")


def _engine_detail(cpu: CPUState) -> str:
    """The emulated kernel explains its last SHUTDOWN/INTERNAL_ERROR (the real one can't)."""
    return getattr(cpu.kvm_fd, "exit_detail", "") or ""


@tracepoint("qemu-cpu", args=("cpu",))
def kvm_cpu_exec(cpu: CPUState) -> int:
    """Run the vCPU until an exit QEMU can't handle inline. Returns EXCP_* (or raises on a guest fault)."""
    from .cpus import qemu_mutex_lock_iothread, qemu_mutex_unlock_iothread

    run = cpu.kvm_run
    ret = 0
    while ret == 0:
        qemu_mutex_unlock_iothread()
        run_ret = kvm_vcpu_ioctl(cpu, K.KVM_RUN)
        qemu_mutex_lock_iothread()
        if run_ret < 0:
            return EXCP_INTERRUPT
        reason = run.exit_reason
        emit("kvm_run_exit", "qemu-cpu", cpu=cpu, reason=reason)
        if reason == K.KVM_EXIT_IO:
            io = run.u.io
            kvm_handle_io(cpu, io.port, io.data_offset, io.direction, io.size, io.count)
            ret = 0
        elif reason == K.KVM_EXIT_MMIO:
            from .exec import cpu_physical_memory_rw
            m = run.u.mmio
            buf = bytearray(bytes(m.data)[:m.len])
            cpu_physical_memory_rw(m.phys_addr, buf, m.len, bool(m.is_write))
            if not m.is_write:
                ctypes.memmove(ctypes.addressof(m.data), bytes(buf), m.len)
            ret = 0
        elif reason == K.KVM_EXIT_IRQ_WINDOW_OPEN:
            ret = EXCP_INTERRUPT
        elif reason == K.KVM_EXIT_HLT:
            ret = EXCP_HLT  # only without the in-kernel irqchip (target-i386/kvm.c kvm_handle_halt)
        elif reason == K.KVM_EXIT_SHUTDOWN:
            # QEMU 1.6.1 calls qemu_system_reset_request() here; a learner wants to know why instead.
            detail = _engine_detail(cpu)
            raise GuestFault("triple fault (KVM_EXIT_SHUTDOWN): the guest hit an exception it could not "
                             "handle; real QEMU would reset the machine" + (f". {detail}" if detail else ""))
        elif reason == K.KVM_EXIT_INTERNAL_ERROR:
            ret = kvm_handle_internal_error(cpu, run)
        else:
            raise GuestFault(f"KVM: unhandled exit {K.EXIT_NAMES.get(reason, reason)}")
        emit("kvm_exit_handled", "qemu-cpu", cpu=cpu, reason=reason)
    return ret
