"""kvm-all.c (QEMU v1.6.1): QEMU's side of KVM.

`kvm_cpu_exec` is the vCPU loop: drop the BQL, `ioctl(KVM_RUN)`, take the BQL, and act on
`run->exit_reason`. For KVM_EXIT_IO, `kvm_handle_io` replays the access `count` times through
`cpu_in*/cpu_out*`, reading or filling the PIO data page at `run + data_offset`.

ioeventfd (API, stable): `kvm_init` registers `kvm_io_listener` on address_space_io and
`kvm_memory_listener` on address_space_memory (`KVMState.io_listener` / `.memory_listener`). A
`memory_region_add_eventfd` on a port region then reaches `kvm_io_ioeventfd_add` → `kvm_set_ioeventfd_pio`
→ the KVM_IOEVENTFD vm ioctl (`kvm_mem_ioeventfd_add` → `kvm_set_ioeventfd_mmio` for MMIO); a failure
aborts QEMU, as 1.6.1 does (here: VmioError naming the errno). `kvm_init` also runs
`kvm_check_many_ioeventfds` (7 registrations on port 0, then removed) and keeps the answer for
`kvm_has_many_ioeventfds()`, which virtio-pci asks before it uses ioeventfd.
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
from .state import QemuState, qemu_state

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
    many_ioeventfds: int = 0
    io_listener: Any = None  # kvm_io_listener (a static MemoryListener in kvm-all.c)
    memory_listener: Any = None  # kvm_memory_listener (its eventfd callbacks only)


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
    s = state.kvm_state = KVMState(fd, vmfd, used, slots=[region])
    _register_listeners(state, s)
    s.many_ioeventfds = kvm_check_many_ioeventfds(s)
    return note


def _register_listeners(state: QemuState, s: KVMState) -> None:
    """kvm_init (kvm-all.c:1474-1475): the KVM memory listeners, on the machine's address spaces."""
    from .memory import MemoryListener, memory_listener_register
    s.memory_listener = MemoryListener("kvm_memory_listener", kvm_mem_ioeventfd_add, kvm_mem_ioeventfd_del,
                                       priority=10, opaque=s)
    s.io_listener = MemoryListener("kvm_io_listener", kvm_io_ioeventfd_add, kvm_io_ioeventfd_del,
                                   priority=10, opaque=s)
    if state.address_space_memory is not None:
        memory_listener_register(s.memory_listener, state.address_space_memory)
    if state.address_space_io is not None:
        memory_listener_register(s.io_listener, state.address_space_io)


# -- ioeventfd (kvm-all.c:520-612, 830-917) ------------------------------------------------------------
def _ioeventfd_ioctl(s: KVMState, iofd: K.kvm_ioeventfd) -> int:
    try:
        return kvm_vm_ioctl(s, K.KVM_IOEVENTFD, iofd)
    except OSError as e:
        return -(e.errno or 1)  # kvm_vm_ioctl returns -errno


@tracepoint("qemu-cpu", args=("fd", "addr", "val", "assign", "size", "datamatch"))
def kvm_set_ioeventfd_mmio(fd: int, addr: int, val: int, assign: bool, size: int, datamatch: bool,
                           s: KVMState | None = None) -> int:
    """KVM_IOEVENTFD for a guest-physical address (the MMIO bus). 0 or -errno. (`s`: the C's global
    kvm_state; taken from the running machine when not given.)"""
    s = s if s is not None else qemu_state().kvm_state
    flags = (K.KVM_IOEVENTFD_FLAG_DATAMATCH if datamatch else 0) | (0 if assign else K.KVM_IOEVENTFD_FLAG_DEASSIGN)
    iofd = K.kvm_ioeventfd(datamatch=val if datamatch else 0, addr=addr, len=size, fd=fd, flags=flags)
    return min(0, _ioeventfd_ioctl(s, iofd))


@tracepoint("qemu-cpu", args=("fd", "addr", "val", "assign", "size", "datamatch"))
def kvm_set_ioeventfd_pio(fd: int, addr: int, val: int, assign: bool, size: int, datamatch: bool,
                          s: KVMState | None = None) -> int:
    """KVM_IOEVENTFD for a port (KVM_IOEVENTFD_FLAG_PIO; 1.6.1 takes 16-bit addr and val). 0 or -errno."""
    s = s if s is not None else qemu_state().kvm_state
    flags = K.KVM_IOEVENTFD_FLAG_PIO | (K.KVM_IOEVENTFD_FLAG_DATAMATCH if datamatch else 0) \
        | (0 if assign else K.KVM_IOEVENTFD_FLAG_DEASSIGN)
    kick = K.kvm_ioeventfd(datamatch=(val & 0xFFFF) if datamatch else 0, addr=addr & 0xFFFF, len=size, fd=fd,
                           flags=flags)
    return min(0, _ioeventfd_ioctl(s, kick))


@tracepoint("qemu-cpu", args=())
def kvm_check_many_ioeventfds(s: KVMState | None = None) -> int:
    """Can the kernel take more than 6 devices on its I/O bus? Register 7 eventfds on port 0 (datamatch
    0..6), then remove them. 1 if all 7 went in."""
    import os
    fds: list[int] = []
    for i in range(7):
        fd = os.eventfd(0, os.EFD_CLOEXEC)
        if kvm_set_ioeventfd_pio(fd, 0, i, True, 2, True, s=s) < 0:
            os.close(fd)
            break
        fds.append(fd)
    ret = int(len(fds) == 7)
    for i in reversed(range(len(fds))):
        kvm_set_ioeventfd_pio(fds[i], 0, i, False, 2, True, s=s)
        os.close(fds[i])
    return ret


def kvm_has_many_ioeventfds() -> int:
    """What kvm_init found (virtio-pci turns ioeventfd off without it)."""
    return qemu_state().kvm_state.many_ioeventfds


def _abort(where: str, r: int) -> None:
    import errno as E
    import os
    from ..errors import VmioError
    raise VmioError(f"QEMU aborted in {where}: error {'adding' if 'add' in where else 'removing'} ioeventfd: "
                    f"{os.strerror(-r)} ({E.errorcode.get(-r, -r)})")


def _fd_of(e: Any) -> int:
    from .util.event_notifier_posix import event_notifier_get_fd
    return event_notifier_get_fd(e)


@tracepoint("qemu-cpu", args=("listener", "section", "match_data", "data", "e"))
def kvm_mem_ioeventfd_add(listener: Any, section: Any, match_data: bool, data: int, e: Any) -> None:
    r = kvm_set_ioeventfd_mmio(_fd_of(e), section.offset_within_address_space, data, True, section.size,
                               match_data, s=listener.opaque)
    if r < 0:
        _abort("kvm_mem_ioeventfd_add", r)


@tracepoint("qemu-cpu", args=("listener", "section", "match_data", "data", "e"))
def kvm_mem_ioeventfd_del(listener: Any, section: Any, match_data: bool, data: int, e: Any) -> None:
    r = kvm_set_ioeventfd_mmio(_fd_of(e), section.offset_within_address_space, data, False, section.size,
                               match_data, s=listener.opaque)
    if r < 0:
        _abort("kvm_mem_ioeventfd_del", r)


@tracepoint("qemu-cpu", args=("listener", "section", "match_data", "data", "e"))
def kvm_io_ioeventfd_add(listener: Any, section: Any, match_data: bool, data: int, e: Any) -> None:
    """kvm_io_listener's eventfd_add: a port eventfd appeared in address_space_io → KVM_IOEVENTFD."""
    r = kvm_set_ioeventfd_pio(_fd_of(e), section.offset_within_address_space, data, True, section.size,
                              match_data, s=listener.opaque)
    if r < 0:
        _abort("kvm_io_ioeventfd_add", r)


@tracepoint("qemu-cpu", args=("listener", "section", "match_data", "data", "e"))
def kvm_io_ioeventfd_del(listener: Any, section: Any, match_data: bool, data: int, e: Any) -> None:
    r = kvm_set_ioeventfd_pio(_fd_of(e), section.offset_within_address_space, data, False, section.size,
                              match_data, s=listener.opaque)
    if r < 0:
        _abort("kvm_io_ioeventfd_del", r)


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
