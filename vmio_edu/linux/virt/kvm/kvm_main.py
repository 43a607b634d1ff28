"""virt/kvm/kvm_main.c (Linux v3.7): /dev/kvm, the VM file and the vCPU file, as the emulated engine.

`open_emulated_kvm(sched)` returns what `open("/dev/kvm")` gives QEMU: a file whose `ioctl` takes the
request numbers and ctypes structures of `vmio_edu.linux.include.uapi.linux.kvm` (see `vmio_edu.devkvm`
for the contract shared with the real engine). KVM_CREATE_VM returns the VM file, KVM_CREATE_VCPU the vCPU
file, and the vCPU file's `mmap` maps its three pages: `struct kvm_run`, the PIO data page
(data_offset 4096) and the (unused) coalesced-MMIO ring.

The ioctl dispatchers are the real ones (`kvm_dev_ioctl`, `kvm_vm_ioctl`, `kvm_vcpu_ioctl`), and so are the
KVM I/O buses in-kernel devices hang on (`kvm_io_bus_register_dev` / `kvm_io_bus_unregister_dev`,
`kvm_io_bus_write` / `kvm_io_bus_read`), the halt sleep (`kvm_vcpu_block`, blocking the vCPU's scheduler
thread), its wake-up (`kvm_vcpu_kick`) and `kvm_resched`, where a vCPU thread the host's timer tick marked
TIF_NEED_RESCHED lets other threads run without leaving KVM_RUN. KVM_IOEVENTFD goes to
virt/kvm/eventfd.py (`kvm_ioeventfd`); KVM_CHECK_EXTENSION(KVM_CAP_IOEVENTFD) answers 1. Failures raise
OSError with the errno the kernel returns. Guest faults and runaway guests raise
`vmio_edu.errors.GuestFault` / `BudgetExceeded` from KVM_RUN (see `X86Cpu`).
"""
from __future__ import annotations

import ctypes
import errno
from typing import Any

from vmio_edu.cpu.x86 import DEFAULT_MAX_INSNS, X86Cpu
from vmio_edu.linux.arch.x86.include.asm.kvm_host import (KVM_REQ_UNHALT, NR_VCPU_REGS, VCPU_REGS_RCX,
                                                          VCPU_REGS_RIP)
from vmio_edu.linux.arch.x86.kvm.kvm_cache_regs import kvm_register_read, kvm_rip_read
from vmio_edu.linux.arch.x86.kvm import vmx as _vmx  # registers kvm_x86_ops, as vmx_init() does
from vmio_edu.linux.arch.x86.kvm import x86
from vmio_edu.linux.arch.x86.kvm.emulate import x86_emulate_ctxt
from vmio_edu.linux.include.linux.kvm_host import (irqchip_in_kernel, kvm, kvm_io_range, kvm_make_request,
                                                   kvm_memory_slot, kvm_vcpu)
from vmio_edu.linux.arch.x86.include.asm.page_types import PAGE_SIZE
from vmio_edu.linux.include.uapi.linux import kvm as K
from vmio_edu.trace.tracepoint import tracepoint

KVM_API_VERSION = 12
KVM_COALESCED_MMIO_PAGE_OFFSET = 2
VCPU_MMAP_PAGES = 3                  # kvm_run, PIO data, coalesced MMIO ring
KVM_MEMORY_SLOTS = 32
KVM_MAX_VCPUS = 254
KVM_MEM_LOG_DIRTY_PAGES = 1
EOPNOTSUPP = 95
KVM_MP_STATE_UNINITIALIZED = 1

KVM_CAP_IRQCHIP, KVM_CAP_HLT, KVM_CAP_USER_MEMORY, KVM_CAP_EXT_CPUID = 0, 1, 3, 7
KVM_CAP_NR_VCPUS, KVM_CAP_NR_MEMSLOTS, KVM_CAP_MP_STATE, KVM_CAP_IRQ_INJECT_STATUS = 9, 10, 14, 26
KVM_CAP_MAX_VCPUS = 66
NR_IOBUS_DEVS = 1000  # include/linux/kvm_host.h:124
# What KVM_CHECK_EXTENSION answers; everything else is 0 ("not supported"), as for a kernel without it.
_EXTENSIONS = {KVM_CAP_IRQCHIP: 1, KVM_CAP_HLT: 1, KVM_CAP_USER_MEMORY: 1, K.KVM_CAP_SET_TSS_ADDR: 1,
               KVM_CAP_EXT_CPUID: 1, KVM_CAP_NR_VCPUS: 1, KVM_CAP_MAX_VCPUS: 1, KVM_CAP_NR_MEMSLOTS: KVM_MEMORY_SLOTS,
               KVM_CAP_MP_STATE: 1, KVM_CAP_IRQ_INJECT_STATUS: 1, K.KVM_CAP_SET_IDENTITY_MAP_ADDR: 1,
               K.KVM_CAP_IOEVENTFD: 1}


def _err(code: int, what: str) -> OSError:
    return OSError(code, f"{what}: {errno.errorcode.get(code, code)}")


# ==========================================================================================================
# The three files
# ==========================================================================================================
class _KvmFile:
    """Common part: ioctl, mmap (only a vCPU file maps), close, context manager."""

    def __init__(self) -> None:
        self.closed = False

    def _check(self) -> None:
        if self.closed:
            raise _err(errno.EBADF, "the KVM file is closed")

    def mmap(self, length: int) -> memoryview:
        raise _err(errno.ENODEV, "this KVM file cannot be mapped (only a vCPU file can)")

    def close(self) -> None:
        self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class KvmDevFile(_KvmFile):
    """The /dev/kvm file."""

    def __init__(self, sched: Any) -> None:
        super().__init__()
        self.sched = sched
        self.vms: list[KvmVmFile] = []

    def ioctl(self, request: int, arg: Any = 0) -> Any:
        self._check()
        return kvm_dev_ioctl(self, request, arg)

    def close(self) -> None:
        for vm in self.vms:
            vm.close()
        super().close()


class KvmVmFile(_KvmFile):
    """A VM file (anon_inode:kvm-vm). `kvm` is the model's struct kvm."""

    def __init__(self, k: kvm) -> None:
        super().__init__()
        self.kvm = k
        self.vcpus: list[KvmVcpuFile] = []

    def ioctl(self, request: int, arg: Any = 0) -> Any:
        self._check()
        return kvm_vm_ioctl(self.kvm, self, request, arg)

    def close(self) -> None:
        if not self.closed:
            from .eventfd import kvm_ioeventfd_destroy_all
            kvm_ioeventfd_destroy_all(self.kvm)  # the kernel's eventfd references go with the VM
        for v in self.vcpus:
            v.close()
        super().close()


class KvmVcpuFile(_KvmFile):
    """A vCPU file (anon_inode:kvm-vcpu). `vcpu` is the model's struct kvm_vcpu, `vcpu.cpu` its processor."""

    def __init__(self, vcpu: kvm_vcpu) -> None:
        super().__init__()
        self.vcpu = vcpu

    def ioctl(self, request: int, arg: Any = 0) -> Any:
        self._check()
        return kvm_vcpu_ioctl(self.vcpu, request, arg)

    def mmap(self, length: int) -> memoryview:
        """The vCPU's pages as one writable memoryview of `length` bytes (at most 3 pages), each page
        supplied by `kvm_vcpu_fault` as the kernel does on a page fault in the mapping."""
        self._check()
        if not 0 < length <= VCPU_MMAP_PAGES * PAGE_SIZE:
            raise _err(errno.EINVAL, f"mmap length {length} outside 1..{VCPU_MMAP_PAGES * PAGE_SIZE}")
        for pgoff in range(-(-length // PAGE_SIZE)):
            kvm_vcpu_fault(self.vcpu, pgoff)
        return memoryview(self.vcpu.run_pages).cast("B")[:length]

    @property
    def cpu(self) -> X86Cpu:
        return self.vcpu.cpu

    def peek_rip_rcx(self) -> tuple[int, int] | None:
        """RIP and RCX as KVM_GET_REGS would return them, for a tool that logs every exit without paying
        for the whole ioctl each time (None: ask the ioctl). Not a kernel interface: the model's only."""
        vcpu = self.vcpu
        if vcpu.arch.emulate_regs_need_sync_to_vcpu:
            return None
        return kvm_rip_read(vcpu), kvm_register_read(vcpu, VCPU_REGS_RCX)

    @property
    def exit_detail(self) -> str:
        """Why the last KVM_RUN ended in SHUTDOWN / INTERNAL_ERROR (or HLT without a scheduler); "" else."""
        return self.vcpu.exit_detail

    @property
    def max_insns(self) -> int:
        """Instructions one KVM_RUN may execute without returning to userspace (then BudgetExceeded)."""
        return self.vcpu.cpu.max_insns

    @max_insns.setter
    def max_insns(self, n: int) -> None:
        self.vcpu.cpu.max_insns = n

    def close(self) -> None:
        if not self.closed:
            self.vcpu.cpu.close()
        super().close()


def open_emulated_kvm(sched: Any = None) -> KvmDevFile:
    """Open the emulated /dev/kvm. `sched` is the scheduler a halted vCPU sleeps in (None: unit tests;
    then a HLT that nothing can wake returns KVM_EXIT_HLT to the caller instead)."""
    return KvmDevFile(sched)


# ==========================================================================================================
# /dev/kvm ioctls
# ==========================================================================================================
@tracepoint("kvm", args=("filp", "ioctl", "arg"))
def kvm_dev_ioctl(filp: KvmDevFile, ioctl: int, arg: Any = 0) -> Any:
    """ioctl() on /dev/kvm: API version, extensions, the vCPU mmap size, KVM_CREATE_VM."""
    if ioctl == K.KVM_GET_API_VERSION:
        if arg:
            raise _err(errno.EINVAL, "KVM_GET_API_VERSION takes no argument")
        return KVM_API_VERSION
    if ioctl == K.KVM_CREATE_VM:
        if arg:
            raise _err(errno.EINVAL, f"KVM_CREATE_VM type {arg}")
        vm = KvmVmFile(kvm(sched=filp.sched))
        filp.vms.append(vm)
        return vm
    if ioctl == K.KVM_CHECK_EXTENSION:
        return _EXTENSIONS.get(int(arg), 0)
    if ioctl == K.KVM_GET_VCPU_MMAP_SIZE:
        if arg:
            raise _err(errno.EINVAL, "KVM_GET_VCPU_MMAP_SIZE takes no argument")
        return VCPU_MMAP_PAGES * PAGE_SIZE
    raise _err(errno.ENOTTY, f"/dev/kvm ioctl {ioctl:#x} is not modelled")


# ==========================================================================================================
# VM ioctls
# ==========================================================================================================
@tracepoint("kvm", args=("filp", "ioctl", "arg"))
def kvm_vm_ioctl(k: kvm, filp: KvmVmFile, ioctl: int, arg: Any = 0) -> Any:
    """ioctl() on a VM file: vCPUs, memory slots, the in-kernel irqchip, interrupt lines."""
    if ioctl == K.KVM_CREATE_VCPU:
        vcpu = kvm_vm_ioctl_create_vcpu(k, int(arg))
        f = KvmVcpuFile(vcpu)
        filp.vcpus.append(f)
        return f
    if ioctl == K.KVM_SET_USER_MEMORY_REGION:
        return kvm_vm_ioctl_set_memory_region(k, arg)
    if ioctl in (K.KVM_IRQ_LINE, K.KVM_IRQ_LINE_STATUS):
        event = K.kvm_irq_level(arg.irq, arg.level)
        r = x86.kvm_vm_ioctl_irq_line(k, event)
        if r:
            raise _err(-r, "KVM_IRQ_LINE without an in-kernel irqchip")
        if ioctl == K.KVM_IRQ_LINE_STATUS:
            arg.irq = event.irq  # copy_to_user: `status` shares the union with `irq`
        return 0
    if ioctl == K.KVM_IOEVENTFD:
        from .eventfd import kvm_ioeventfd
        if not isinstance(arg, K.kvm_ioeventfd):
            raise _err(errno.EFAULT, "KVM_IOEVENTFD takes a struct kvm_ioeventfd")
        r = kvm_ioeventfd(k, arg)
        if r < 0:
            raise _err(-r, "KVM_IOEVENTFD")
        return r
    return kvm_arch_vm_ioctl(k, ioctl, arg)


@tracepoint("kvm", args=("kvm=k", "id"))
def kvm_vm_ioctl_create_vcpu(k: kvm, id: int) -> kvm_vcpu:  # noqa: A002 - the C name
    """Create vCPU `id`: its kvm_run/PIO pages, its processor (`X86Cpu`) with every memory slot mapped,
    its VMX state, and the reset register state (RIP 0xfff0, RFLAGS 2)."""
    if not 0 <= id < KVM_MAX_VCPUS:
        raise _err(errno.EINVAL, f"vCPU id {id}")
    if any(v.vcpu_id == id for v in k.vcpus):
        raise _err(errno.EEXIST, f"vCPU {id} exists")
    vcpu = kvm_vcpu(kvm=k, vcpu_id=id)
    vcpu.run_pages = (ctypes.c_ubyte * (VCPU_MMAP_PAGES * PAGE_SIZE))()
    vcpu.run = K.kvm_run.from_buffer(vcpu.run_pages)
    vcpu.arch.pio_data = memoryview(vcpu.run_pages).cast("B")[PAGE_SIZE:2 * PAGE_SIZE]
    vcpu.cpu = X86Cpu(id, max_insns=DEFAULT_MAX_INSNS)
    for slot in k.memslots.values():
        vcpu.cpu.map_slot(slot.id, slot.base_gfn << 12, slot.npages << 12, slot.userspace_addr)
    vcpu.cpu.mmio_gfns = k.arch.mmio_gfns
    _vmx.vmx_create_vcpu(vcpu)
    vcpu.arch.emulate_ctxt = x86_emulate_ctxt(ops=x86.emulate_ops, vcpu=vcpu)
    a = vcpu.arch
    a.regs = [0] * NR_VCPU_REGS
    a.regs[VCPU_REGS_RIP] = 0xFFF0
    a.regs_avail = (1 << NR_VCPU_REGS) - 1
    # kvm_arch_vcpu_init: the BSP (or any vCPU without an in-kernel irqchip) starts runnable
    a.mp_state = K.KVM_MP_STATE_RUNNABLE if not irqchip_in_kernel(k) or id == 0 else KVM_MP_STATE_UNINITIALIZED
    k.vcpus.append(vcpu)
    return vcpu


@tracepoint("kvm", args=("kvm=k", "mem"))
def kvm_vm_ioctl_set_memory_region(k: kvm, mem: K.kvm_userspace_memory_region) -> int:
    """KVM_SET_USER_MEMORY_REGION: host memory at `userspace_addr` becomes guest-physical
    [guest_phys_addr, +memory_size) (size 0 deletes the slot). Every vCPU's processor maps it (the EPT)."""
    slot, size, gpa, hva = mem.slot, mem.memory_size, mem.guest_phys_addr, mem.userspace_addr
    if mem.flags & ~KVM_MEM_LOG_DIRTY_PAGES:
        raise _err(errno.EINVAL, f"memory region flags {mem.flags:#x}")
    if size & (PAGE_SIZE - 1) or gpa & (PAGE_SIZE - 1) or (size and hva & (PAGE_SIZE - 1)):
        raise _err(errno.EINVAL, "memory region size, guest address and host address must be page aligned")
    if slot >= KVM_MEMORY_SLOTS:
        raise _err(errno.EINVAL, f"slot {slot} (at most {KVM_MEMORY_SLOTS})")
    if size and not hva:
        raise _err(errno.EFAULT, "userspace_addr is NULL")
    for other in k.memslots.values():
        if other.id != slot and size and gpa < (other.base_gfn + other.npages) << 12 and other.base_gfn << 12 < gpa + size:
            raise _err(errno.EEXIST, f"guest range {gpa:#x}+{size:#x} overlaps slot {other.id}")
    if slot in k.memslots:
        del k.memslots[slot]
        for v in k.vcpus:
            if slot in v.cpu.slots:
                v.cpu.unmap_slot(slot)
    if size:
        k.memslots[slot] = kvm_memory_slot(slot, gpa >> 12, size >> 12, hva, mem.flags)
        for v in k.vcpus:
            v.cpu.map_slot(slot, gpa, size, hva)
    k.arch.mmio_gfns.difference_update(range(gpa >> 12, (gpa + size) >> 12))
    return 0


@tracepoint("kvm", args=("ioctl", "arg"))
def kvm_arch_vm_ioctl(k: kvm, ioctl: int, arg: Any = 0) -> int:
    """The x86 VM ioctls (arch/x86/kvm/x86.c). KVM_CREATE_IRQCHIP creates the PIC pair on the PIO bus,
    the IOAPIC and the default GSI routing; the TSS and identity-map addresses are only stored (VMX
    needs them for real mode without "unrestricted guest", which the model does not emulate)."""
    from vmio_edu.linux.arch.x86.kvm.i8259 import kvm_create_pic
    from vmio_edu.linux.virt.kvm.ioapic import kvm_ioapic
    from vmio_edu.linux.virt.kvm.irq_comm import kvm_setup_default_irq_routing
    if ioctl == K.KVM_CREATE_IRQCHIP:
        if irqchip_in_kernel(k):
            raise _err(errno.EEXIST, "the irqchip exists already")
        if k.vcpus:
            raise _err(errno.EINVAL, "KVM_CREATE_IRQCHIP after KVM_CREATE_VCPU")
        k.arch.vpic = kvm_create_pic(k)
        k.arch.vioapic = kvm_ioapic()
        kvm_setup_default_irq_routing(k)
        return 0
    if ioctl == K.KVM_SET_TSS_ADDR:
        k.arch.tss_addr = int(arg)
        return 0
    if ioctl == K.KVM_SET_IDENTITY_MAP_ADDR:
        k.arch.ept_identity_map_addr = arg.value if hasattr(arg, "value") else int(arg)
        return 0
    raise _err(errno.ENOTTY, f"VM ioctl {ioctl:#x} is not modelled")


# ==========================================================================================================
# vCPU ioctls, the mmap, halting
# ==========================================================================================================
@tracepoint("kvm", args=("ioctl", "arg"))
def kvm_vcpu_ioctl(vcpu: kvm_vcpu, ioctl: int, arg: Any = 0) -> int:
    """ioctl() on a vCPU file: KVM_RUN, registers, special registers, MP state."""
    if ioctl == K.KVM_RUN:
        if arg:
            raise _err(errno.EINVAL, "KVM_RUN takes no argument")
        sched = vcpu.kvm.sched
        vcpu.model_thread = None
        if sched is not None:
            try:
                vcpu.model_thread = sched.current()
            except RuntimeError:
                vcpu.model_thread = None  # called from outside the model: nobody to block
        r = x86.kvm_arch_vcpu_ioctl_run(vcpu, vcpu.run)
        if r < 0 and r != -errno.EINTR:
            raise _err(-r, "KVM_RUN")
        return r
    if ioctl == K.KVM_GET_REGS:
        return x86.kvm_arch_vcpu_ioctl_get_regs(vcpu, arg)
    if ioctl == K.KVM_SET_REGS:
        return x86.kvm_arch_vcpu_ioctl_set_regs(vcpu, arg)
    if ioctl == K.KVM_GET_SREGS:
        return x86.kvm_arch_vcpu_ioctl_get_sregs(vcpu, arg)
    if ioctl == K.KVM_SET_SREGS:
        return x86.kvm_arch_vcpu_ioctl_set_sregs(vcpu, arg)
    if ioctl == K.KVM_GET_MP_STATE:
        arg.mp_state = vcpu.arch.mp_state
        return 0
    if ioctl == K.KVM_SET_MP_STATE:
        vcpu.arch.mp_state = arg.mp_state
        return 0
    if ioctl in (K.KVM_SET_SIGNAL_MASK, K.KVM_SET_CPUID2):
        return 0  # accepted: the model has no signals to mask and runs Unicorn's CPUID
    raise _err(errno.ENOTTY, f"vCPU ioctl {ioctl:#x} is not modelled")


@tracepoint("kvm", args=("pgoff",))
def kvm_vcpu_fault(vcpu: kvm_vcpu, pgoff: int) -> memoryview:
    """The page behind offset `pgoff` of the vCPU mapping: 0 = struct kvm_run, KVM_PIO_PAGE_OFFSET (1) = the
    PIO data page, KVM_COALESCED_MMIO_PAGE_OFFSET (2) = the coalesced-MMIO ring."""
    if not 0 <= pgoff < VCPU_MMAP_PAGES:
        raise _err(errno.EFAULT, f"page {pgoff} of the vCPU mapping")
    return memoryview(vcpu.run_pages).cast("B")[pgoff * PAGE_SIZE:(pgoff + 1) * PAGE_SIZE]


@tracepoint("kvm", args=("vcpu",))
def kvm_vcpu_block(vcpu: kvm_vcpu) -> None:
    """Sleep until the vCPU may run: an interrupt it can take (IF=1) is pending. The vCPU's scheduler
    thread blocks ("halted") and `kvm_vcpu_kick` wakes it; it re-checks and sleeps again if the interrupt
    cannot be taken (IF=0). With no scheduler (or no model thread) it gives up at once and the caller
    returns KVM_EXIT_HLT."""
    sched = vcpu.kvm.sched
    while True:
        if x86.kvm_arch_vcpu_runnable(vcpu):
            kvm_make_request(KVM_REQ_UNHALT, vcpu)
            return
        if x86.signal_pending(vcpu):
            return
        if sched is None or vcpu.model_thread is None:
            vcpu.block_gave_up = True
            return
        vcpu.blocked = True
        try:
            sched.block("halted")
        finally:
            vcpu.blocked = False


@tracepoint("kvm", args=("vcpu",))
def kvm_vcpu_kick(vcpu: kvm_vcpu) -> None:
    """Wake a vCPU sleeping in `kvm_vcpu_block` (a vCPU in guest mode would get an IPI: in the model the
    guest only runs inside KVM_RUN on its own thread, so there is nobody to interrupt)."""
    sched = vcpu.kvm.sched
    if vcpu.blocked and sched is not None and vcpu.model_thread is not None:
        vcpu.stat["halt_wakeup"] += 1
        sched.wake(vcpu.model_thread)


# ==========================================================================================================
# The KVM I/O buses (in-kernel devices)
# ==========================================================================================================
@tracepoint("kvm", args=("kvm=k", "bus_idx", "addr", "len", "dev"))
def kvm_io_bus_register_dev(k: kvm, bus_idx: int, addr: int, len: int, dev) -> int:  # noqa: A002
    """Hang `dev` on the bus for [addr, addr+len) (kept sorted, as kvm_io_bus_insert_dev does);
    -ENOSPC once the bus holds NR_IOBUS_DEVS devices."""
    bus = k.buses[bus_idx]
    if bus.dev_count > NR_IOBUS_DEVS - 1:
        return -errno.ENOSPC
    bus.range.append(kvm_io_range(addr, len, dev))
    bus.range.sort(key=lambda r: (r.addr, r.len))
    return 0


@tracepoint("kvm", args=("kvm=k", "bus_idx", "dev"))
def kvm_io_bus_unregister_dev(k: kvm, bus_idx: int, dev) -> int:
    """Take `dev` off the bus; -ENOENT if it is not on it."""
    bus = k.buses[bus_idx]
    for i, r in enumerate(bus.range):
        if r.dev is dev:
            del bus.range[i]
            return 0
    return -errno.ENOENT


def _matching(k: kvm, bus_idx: int, addr: int, len: int):  # noqa: A002
    # kvm_io_bus_sort_cmp: the access must lie inside the device's range
    for r in k.buses[bus_idx].range:
        if r.addr <= addr and addr + len <= r.addr + r.len:
            yield r.dev


@tracepoint("kvm", args=("kvm=k", "bus_idx", "addr", "len", "val"))
def kvm_io_bus_write(k: kvm, bus_idx: int, addr: int, len: int, val) -> int:  # noqa: A002 - the C name
    """Offer a write to the devices on bus `bus_idx` (KVM_PIO_BUS: ports; KVM_MMIO_BUS: addresses).
    0 if one took it, -EOPNOTSUPP if none did (then the access goes to userspace)."""
    # the same `val` goes down to the device (C passes the pointer on: a backtrace shows one address)
    for dev in _matching(k, bus_idx, addr, len):
        if dev.write(addr, len, val):
            k.last_io_dev = dev.name
            return 0
    return -EOPNOTSUPP


@tracepoint("kvm", args=("kvm=k", "bus_idx", "addr", "len", "val"))
def kvm_io_bus_read(k: kvm, bus_idx: int, addr: int, len: int, val) -> int:  # noqa: A002 - the C name
    """Offer a read; the device's data lands in `val` (the PIO page for port reads)."""
    for dev in _matching(k, bus_idx, addr, len):
        data = dev.read(addr, len)
        if data is not None:
            if data:
                val[:len] = data[:len]
            k.last_io_dev = dev.name
            return 0
    return -EOPNOTSUPP


@tracepoint("kvm", args=("vcpu",))
def kvm_resched(vcpu: kvm_vcpu) -> None:
    """The vCPU thread was marked TIF_NEED_RESCHED (by the host timer tick, `scheduler_tick`): give the CPU
    to the threads waiting for it (cond_resched). In the model that is the scheduler handing the baton to
    the model threads that are due (the main loop, pool workers), and getting it back when they block; the
    vCPU then re-enters the guest without KVM_RUN having returned."""
    if not vcpu.need_resched:
        return
    vcpu.need_resched = False
    sched = vcpu.kvm.sched
    if sched is not None and vcpu.model_thread is not None:
        sched.cond_resched()


__all__ = ["open_emulated_kvm", "KvmDevFile", "KvmVmFile", "KvmVcpuFile", "kvm_io_bus_write", "kvm_io_bus_read",
           "kvm_io_bus_register_dev", "kvm_io_bus_unregister_dev", "kvm_resched",
           "kvm_vcpu_fault", "kvm_vcpu_block", "kvm_vcpu_ioctl", "kvm_vm_ioctl", "kvm_dev_ioctl"]
