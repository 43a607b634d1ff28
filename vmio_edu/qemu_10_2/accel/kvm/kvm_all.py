"""accel/kvm/kvm-all.c (QEMU v10.2.0): QEMU's side of KVM.

`kvm_cpu_exec` is still the vCPU loop around `ioctl(KVM_RUN)`, but its locking changed since 1.6.1
(kvm-all.c then): it drops the BQL *once* on entry and takes it back only on return, so KVM_EXIT_IO and
KVM_EXIT_MMIO are handled "outside BQL" (the comments at accel/kvm/kvm-all.c:3238 and :3247). The BQL is
taken per device access further down, by `prepare_mmio_access` (system/physmem.c).

`kvm_handle_io` no longer goes through `cpu_outw`/`cpu_inw`: each of the `count` elements is one
`address_space_rw(&address_space_io, port, attrs, ptr, size, is_write)`.

The data structures (KVMState, CPUState with its mmap'd `struct kvm_run`) and the engines behind the vCPU
file descriptor are the same as for 1.6.1 (vmio_edu.qemu.kvm_all, vmio_edu.devkvm): the ioctl ABI did not
change in a way this path sees.
"""
from __future__ import annotations

import ctypes
from typing import Any

from ....trace.tracepoint import emit, tracepoint
from ....errors import GuestFault
from ....linux.include.uapi.linux import kvm as K
from ....qemu.kvm_all import CPUState, KVMState, kvm_init, kvm_init_vcpu  # noqa: F401 - data, set-up
from ....qemu.state import qemu_state
from ...system.cpus import bql_lock, bql_unlock
from ...system.physmem import MEMTXATTRS_UNSPECIFIED, address_space_rw

EXCP_INTERRUPT = 0x10000  # include/exec/cpu-common.h
EXCP_HLT = 0x10001
_FILE = "../accel/kvm/kvm-all.c"  # what bql_lock()'s __FILE__ expands to in a meson build
_FILE_I386 = "../target/i386/kvm/kvm.c"


@tracepoint("qemu-cpu", args=("s", "type"))
def kvm_vm_ioctl(s: KVMState, type: int, arg: Any = 0) -> int:  # noqa: A002 - the C name
    """ioctl() on the VM file descriptor."""
    return s.vmfd.ioctl(type, arg)


@tracepoint("qemu-cpu", args=("cpu", "type"))
def kvm_vcpu_ioctl(cpu: CPUState, type: int, arg: Any = 0) -> int:  # noqa: A002
    """ioctl() on the vCPU file descriptor. With type KVM_RUN this is where the guest runs."""
    return cpu.kvm_fd.ioctl(type, arg)


@tracepoint("qemu-cpu", args=("s", "irq", "level"))
def kvm_set_irq(s: KVMState, irq: int, level: int) -> int:
    """Set an in-kernel irqchip input: KVM_IRQ_LINE_STATUS on the VM fd; returns the delivery status."""
    event = K.kvm_irq_level(irq=irq, level=level)
    kvm_vm_ioctl(s, s.irq_set_ioctl, event)
    return 1 if s.irq_set_ioctl == K.KVM_IRQ_LINE else event.irq  # event.status aliases irq


@tracepoint("qemu-cpu", args=("port", "attrs", "data=data_offset", "direction", "size", "count"))
def kvm_handle_io(port: int, attrs: int, data_offset: int, direction: int, size: int, count: int) -> None:
    """Replay the exit's `count` accesses of `size` bytes, element i at `run + data_offset + i*size`, each
    one through the I/O address space. (The C takes `void *data`; the model addresses the PIO page by its
    offset in the vCPU mmap, and the vCPU is the calling thread's, as `current_cpu` is in QEMU.)"""
    mem = _current_cpu().kvm_run_mem
    ptr = data_offset
    space = qemu_state().address_space_io
    for _ in range(count):
        address_space_rw(space, port, attrs, mem[ptr:ptr + size], size, direction == K.KVM_EXIT_IO_OUT)
        ptr += size


def _current_cpu() -> CPUState:
    return qemu_state().extra["current_cpu"]


@tracepoint("qemu-cpu", args=("cpu", "run"))
def kvm_handle_internal_error(cpu: CPUState, run: K.kvm_run) -> int:
    """KVM could not emulate something: QEMU 10.2 prints the suberror and returns -1 (the VM stops with
    RUN_STATE_INTERNAL_ERROR); the model raises, so the learner sees why."""
    sub = run.u.internal.suberror
    what = "emulation failure" if sub == K.KVM_INTERNAL_ERROR_EMULATION else f"suberror {sub}"
    detail = getattr(cpu.kvm_fd, "exit_detail", "") or ""
    raise GuestFault(f"KVM internal error ({what}){': ' + detail if detail else ''}")


def _before_kvm_run() -> None:
    """vmio-edu's scheduling point: the vCPU is about to enter the guest, holding no lock. In QEMU the
    other threads run concurrently all along; the deterministic scheduler lets the due ones run here."""
    qemu_state().sched.tick()


@tracepoint("qemu-cpu", args=("cpu",))
def kvm_cpu_exec(cpu: CPUState) -> int:
    """Run the vCPU until an exit QEMU can't handle inline. Returns EXCP_* (or raises on a guest fault).

    kvm_arch_process_async_events / kvm_arch_pre_run / kvm_arch_post_run (target/i386/kvm/kvm.c) take no
    lock and do nothing on this path (the irqchip is in the kernel, no NMI/SMI/INIT pending): not modelled.
    """
    run = cpu.kvm_run
    bql_unlock()
    ret = 0
    while ret == 0:
        _before_kvm_run()
        run_ret = kvm_vcpu_ioctl(cpu, K.KVM_RUN, 0)
        if run_ret < 0:  # -EINTR / -EAGAIN: a signal kicked us out (the real engine's spin kick)
            ret = EXCP_INTERRUPT
            break
        reason = run.exit_reason
        emit("kvm_run_exit", "qemu-cpu", cpu=cpu, reason=reason)
        if reason == K.KVM_EXIT_IO:
            io = run.u.io  # called outside the BQL
            kvm_handle_io(io.port, MEMTXATTRS_UNSPECIFIED, io.data_offset, io.direction, io.size, io.count)
        elif reason == K.KVM_EXIT_MMIO:
            m = run.u.mmio  # called outside the BQL
            buf = bytearray(bytes(m.data)[:m.len])
            address_space_rw(qemu_state().address_space_memory, m.phys_addr, MEMTXATTRS_UNSPECIFIED, buf, m.len,
                             bool(m.is_write))
            if not m.is_write:
                ctypes.memmove(ctypes.addressof(m.data), bytes(buf), m.len)
        elif reason == K.KVM_EXIT_IRQ_WINDOW_OPEN:
            ret = EXCP_INTERRUPT
        elif reason == K.KVM_EXIT_SHUTDOWN:
            # 10.2 calls qemu_system_reset_request(SHUTDOWN_CAUSE_GUEST_RESET); a learner wants to know why.
            detail = getattr(cpu.kvm_fd, "exit_detail", "") or ""
            raise GuestFault("triple fault (KVM_EXIT_SHUTDOWN): the guest hit an exception it could not "
                             "handle; real QEMU would reset the machine" + (f". {detail}" if detail else ""))
        elif reason == K.KVM_EXIT_INTERNAL_ERROR:
            ret = kvm_handle_internal_error(cpu, run)
        elif reason == K.KVM_EXIT_HLT:
            # kvm_arch_handle_exit → kvm_handle_halt under the BQL (only without the in-kernel irqchip)
            bql_lock(_FILE_I386, 6105)
            ret = EXCP_HLT
            bql_unlock()
        else:
            raise GuestFault(f"KVM: unhandled exit {K.EXIT_NAMES.get(reason, reason)}")
        emit("kvm_exit_handled", "qemu-cpu", cpu=cpu, reason=reason)
    bql_lock(_FILE, 3335)
    return ret

