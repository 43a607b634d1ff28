"""virt/kvm/kvm_main.c (Linux v6.12): /dev/kvm, the VM file and the vCPU file, for the emulated engine.

`open_emulated_kvm(sched)` returns what `open("/dev/kvm")` gives QEMU (the contract is in
`vmio_edu.devkvm`, the same for both kernels and the real device). The file objects, their mmap and the
model's helpers for tools (`peek_rip_rcx`, `exit_detail`, `max_insns`) are the 3.7 model's
(`vmio_edu.linux.virt.kvm.kvm_main`); what runs behind each ioctl is 6.12's:

* `kvm_vcpu_ioctl` (kvm_main.c:4428): KVM_RUN sets `wants_to_run` from `kvm_run->immediate_exit` and calls
  `kvm_arch_vcpu_ioctl_run` (x86.c) with the vCPU only;
* `kvm_io_bus_write` / `kvm_io_bus_read` (5862 / 5933) take the vCPU (3.7 took the VM);
* halting is `kvm_vcpu_halt` (3794) → `kvm_vcpu_block` (3716), which sleeps until `kvm_vcpu_check_block`
  (3691) sees the vCPU runnable or a signal; `kvm_vcpu_kick` (3883) wakes it through `kvm_vcpu_wake_up`.
"""
from __future__ import annotations

import ctypes
import errno
from typing import Any

from vmio_edu.cpu.x86 import DEFAULT_MAX_INSNS, X86Cpu
from vmio_edu.linux.include.uapi.linux import kvm as K
from vmio_edu.linux.virt.kvm import kvm_main as _m37
from vmio_edu.linux.virt.kvm.kvm_main import (_EXTENSIONS as _EXTENSIONS_3_7, EOPNOTSUPP, KVM_API_VERSION, KVM_MAX_VCPUS,  # noqa: F401
                                              KVM_MEM_LOG_DIRTY_PAGES, KVM_MEMORY_SLOTS,
                                              KVM_MP_STATE_UNINITIALIZED, VCPU_MMAP_PAGES, _err, _matching)
from vmio_edu.linux_6_12.arch.x86.include.asm.kvm_host import KVM_REQ_UNBLOCK, NR_VCPU_REGS, VCPU_REGS_RCX, VCPU_REGS_RIP
from vmio_edu.linux_6_12.arch.x86.kvm.kvm_cache_regs import kvm_register_read, kvm_rip_read
from vmio_edu.linux_6_12.arch.x86.kvm import x86
from vmio_edu.linux_6_12.arch.x86.kvm.emulate import x86_emulate_ctxt
from vmio_edu.linux_6_12.arch.x86.kvm.vmx import vmx as _vmx  # registers kvm_x86_ops, as vmx_init() does
from vmio_edu.linux_6_12.include.linux.kvm_host import (irqchip_in_kernel, kvm,
                                                       kvm_check_request, kvm_io_range, kvm_memory_slot,
                                                       kvm_vcpu)
from vmio_edu.trace.tracepoint import tracepoint

PAGE_SIZE = 4096
# What KVM_CHECK_EXTENSION answers: the 3.7 model's list, without KVM_CAP_IOEVENTFD: 6.12's ioeventfds
# (virt/kvm/eventfd.c) are not modelled yet, so KVM_IOEVENTFD is refused (ENOTTY) and not advertised.
_EXTENSIONS = {cap: v for cap, v in _EXTENSIONS_3_7.items() if cap != getattr(K, "KVM_CAP_IOEVENTFD", None)}


# ==========================================================================================================
# The three files: 3.7's file objects, dispatching to 6.12's ioctl handlers
# ==========================================================================================================
class KvmDevFile(_m37.KvmDevFile):
    """The /dev/kvm file."""

    def ioctl(self, request: int, arg: Any = 0) -> Any:
        self._check()
        return kvm_dev_ioctl(self, request, arg)


class KvmVmFile(_m37.KvmVmFile):
    """A VM file (anon_inode:kvm-vm). `kvm` is the model's struct kvm."""

    def ioctl(self, request: int, arg: Any = 0) -> Any:
        self._check()
        return kvm_vm_ioctl(self.kvm, self, request, arg)


class KvmVcpuFile(_m37.KvmVcpuFile):
    """A vCPU file (anon_inode:kvm-vcpu). `vcpu` is the model's struct kvm_vcpu, `vcpu.cpu` its processor."""

    def ioctl(self, request: int, arg: Any = 0) -> Any:
        self._check()
        return kvm_vcpu_ioctl(self.vcpu, request, arg)

    def peek_rip_rcx(self) -> tuple[int, int] | None:
        """RIP and RCX as KVM_GET_REGS would return them (None: ask the ioctl). The model's only."""
        vcpu = self.vcpu
        if vcpu.arch.emulate_regs_need_sync_to_vcpu:
            return None
        return kvm_rip_read(vcpu), kvm_register_read(vcpu, VCPU_REGS_RCX)

    def mmap(self, length: int) -> memoryview:
        self._check()
        if not 0 < length <= VCPU_MMAP_PAGES * PAGE_SIZE:
            raise _err(errno.EINVAL, f"mmap length {length} outside 1..{VCPU_MMAP_PAGES * PAGE_SIZE}")
        for pgoff in range(-(-length // PAGE_SIZE)):
            kvm_vcpu_fault(self.vcpu, pgoff)
        return memoryview(self.vcpu.run_pages).cast("B")[:length]


def open_emulated_kvm(sched: Any = None) -> KvmDevFile:
    """Open the emulated /dev/kvm of Linux 6.12. `sched` is the scheduler a halted vCPU sleeps in (None:
    unit tests; then a HLT that nothing can wake returns KVM_EXIT_HLT to the caller instead)."""
    return KvmDevFile(sched)


# ==========================================================================================================
# /dev/kvm ioctls
# ==========================================================================================================
@tracepoint("kvm", args=("filp", "ioctl", "arg"))
def kvm_dev_ioctl(filp: KvmDevFile, ioctl: int, arg: Any = 0) -> Any:
    """ioctl() on /dev/kvm: API version, extensions, the vCPU mmap size, KVM_CREATE_VM (kvm_main.c:5518)."""
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
    """ioctl() on a VM file: vCPUs, memory slots, the in-kernel irqchip, interrupt lines (kvm_main.c:5143)."""
    if ioctl == K.KVM_CREATE_VCPU:
        vcpu = kvm_vm_ioctl_create_vcpu(k, int(arg))
        f = KvmVcpuFile(vcpu)
        filp.vcpus.append(f)
        return f
    if ioctl == K.KVM_SET_USER_MEMORY_REGION:
        return kvm_vm_ioctl_set_memory_region(k, arg)
    if ioctl in (K.KVM_IRQ_LINE, K.KVM_IRQ_LINE_STATUS):
        event = K.kvm_irq_level(arg.irq, arg.level)
        r = x86.kvm_vm_ioctl_irq_line(k, event, ioctl == K.KVM_IRQ_LINE_STATUS)
        if r:
            raise _err(-r, "KVM_IRQ_LINE without an in-kernel irqchip")
        if ioctl == K.KVM_IRQ_LINE_STATUS:
            arg.irq = event.irq  # copy_to_user: `status` shares the union with `irq`
        return 0
    return x86.kvm_arch_vm_ioctl(k, ioctl, arg)


@tracepoint("kvm", args=("kvm=k", "id"))
def kvm_vm_ioctl_create_vcpu(k: kvm, id: int) -> kvm_vcpu:  # noqa: A002 - the C name
    """Create vCPU `id` (kvm_main.c:4200): its kvm_run/PIO pages, its processor with every memory slot
    mapped, its VMX state, and the reset register state (RIP 0xfff0, RFLAGS 2)."""
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
    # kvm_arch_vcpu_create: the BSP (or any vCPU without an in-kernel irqchip) starts runnable
    a.mp_state = K.KVM_MP_STATE_RUNNABLE if not irqchip_in_kernel(k) or id == 0 else KVM_MP_STATE_UNINITIALIZED
    k.vcpus.append(vcpu)
    return vcpu


@tracepoint("kvm", args=("kvm=k", "mem"))
def kvm_vm_ioctl_set_memory_region(k: kvm, mem: K.kvm_userspace_memory_region) -> int:
    """KVM_SET_USER_MEMORY_REGION (kvm_main.c:2119): host memory at `userspace_addr` becomes guest-physical
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


# ==========================================================================================================
# vCPU ioctls, the mmap, halting
# ==========================================================================================================
# filp (the struct file) is not the model's vcpu/kvm object: gdb's <optimized out>, as on 3.7
@tracepoint("kvm", args=("ioctl", "arg"))
def kvm_vcpu_ioctl(vcpu: kvm_vcpu, ioctl: int, arg: Any = 0) -> int:
    """ioctl() on a vCPU file (kvm_main.c:4428): KVM_RUN, registers, special registers, MP state."""
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
        # 6.12's struct kvm_run names byte 1 `immediate_exit__unsafe` (3.7: padding1[0]; same layout)
        vcpu.wants_to_run = not vcpu.run.padding1[0]
        try:
            r = x86.kvm_arch_vcpu_ioctl_run(vcpu)
        finally:
            vcpu.wants_to_run = False
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


@tracepoint("kvm", args=("vmf=pgoff",))
def kvm_vcpu_fault(vcpu: kvm_vcpu, pgoff: int) -> memoryview:
    """The page behind offset `pgoff` of the vCPU mapping (kvm_main.c:4095): 0 = struct kvm_run,
    KVM_PIO_PAGE_OFFSET (1) = the PIO data page, 2 = the coalesced-MMIO ring."""
    if not 0 <= pgoff < VCPU_MMAP_PAGES:
        raise _err(errno.EFAULT, f"page {pgoff} of the vCPU mapping")
    return memoryview(vcpu.run_pages).cast("B")[pgoff * PAGE_SIZE:(pgoff + 1) * PAGE_SIZE]


def kvm_vcpu_check_block(vcpu: kvm_vcpu) -> int:
    """-EINTR (stop sleeping) if the vCPU is runnable, a signal is pending or KVM_REQ_UNBLOCK was made;
    0 to sleep on (kvm_main.c:3691)."""
    if x86.kvm_arch_vcpu_runnable(vcpu) or x86.signal_pending(vcpu) or kvm_check_request(KVM_REQ_UNBLOCK, vcpu):
        return -errno.EINTR
    return 0


@tracepoint("kvm", args=("vcpu",))
def kvm_vcpu_block(vcpu: kvm_vcpu) -> bool:
    """Sleep until `kvm_vcpu_check_block` says stop (kvm_main.c:3716). The vCPU's scheduler thread blocks
    ("halted") and `kvm_vcpu_kick` wakes it. With no scheduler (or no model thread) it gives up at once
    and the caller returns KVM_EXIT_HLT. Returns whether it waited."""
    sched = vcpu.kvm.sched
    waited = False
    while kvm_vcpu_check_block(vcpu) >= 0:
        if sched is None or vcpu.model_thread is None:
            vcpu.block_gave_up = True
            break
        waited = True
        vcpu.blocked = True
        try:
            sched.block("halted")
        finally:
            vcpu.blocked = False
    return waited


@tracepoint("kvm", args=("vcpu",))
def kvm_vcpu_halt(vcpu: kvm_vcpu) -> None:
    """Halt-polling (none in the model: halt_poll_ns has no meaning without host time), then
    `kvm_vcpu_block` (kvm_main.c:3794)."""
    kvm_vcpu_block(vcpu)


@tracepoint("kvm", args=("vcpu",))
def kvm_vcpu_kick(vcpu: kvm_vcpu) -> None:
    """Wake a vCPU sleeping in `kvm_vcpu_block` (`kvm_vcpu_wake_up`); a vCPU in guest mode would get an
    IPI, but in the model the guest only runs inside KVM_RUN on its own thread (kvm_main.c:3883)."""
    sched = vcpu.kvm.sched
    if vcpu.blocked and sched is not None and vcpu.model_thread is not None:
        vcpu.stat["halt_wakeup"] += 1
        sched.wake(vcpu.model_thread)


# ==========================================================================================================
# The KVM I/O buses (in-kernel devices)
# ==========================================================================================================
def kvm_io_bus_register_dev(k: kvm, bus_idx: int, addr: int, len: int, dev) -> int:  # noqa: A002
    bus = k.buses[bus_idx]
    bus.range.append(kvm_io_range(addr, len, dev))
    bus.range.sort(key=lambda r: (r.addr, r.len))
    return 0


@tracepoint("kvm", args=("vcpu", "bus_idx", "addr", "len", "val"))
def kvm_io_bus_write(vcpu: kvm_vcpu, bus_idx: int, addr: int, len: int, val) -> int:  # noqa: A002
    """Offer a write to the devices on bus `bus_idx` (KVM_PIO_BUS: ports; KVM_MMIO_BUS: addresses): 0 if
    one took it, -EOPNOTSUPP if none did (then the access goes to userspace) (kvm_main.c:5862)."""
    data = bytes(val[:len])
    for dev in _matching(vcpu.kvm, bus_idx, addr, len):
        if dev.write(addr, len, val):  # the same pointer goes on to the device (one address in a backtrace)
            vcpu.kvm.last_io_dev = dev.name  # (model: which in-kernel device took it, for kernel_exits)
            vcpu.kvm.last_io = ("out", len, addr, data)
            return 0
    return -EOPNOTSUPP


@tracepoint("kvm", args=("vcpu", "bus_idx", "addr", "len", "val"))
def kvm_io_bus_read(vcpu: kvm_vcpu, bus_idx: int, addr: int, len: int, val) -> int:  # noqa: A002
    """Offer a read; the device's data lands in `val` (kvm_main.c:5933)."""
    for dev in _matching(vcpu.kvm, bus_idx, addr, len):
        data = dev.read(addr, len)
        if data is not None:
            if data:
                val[:len] = data[:len]
            vcpu.kvm.last_io_dev = dev.name
            vcpu.kvm.last_io = ("in", len, addr, bytes(val[:len]))
            return 0
    return -EOPNOTSUPP


__all__ = ["open_emulated_kvm", "KvmDevFile", "KvmVmFile", "KvmVcpuFile", "kvm_io_bus_write", "kvm_io_bus_read",
           "kvm_vcpu_fault", "kvm_vcpu_block", "kvm_vcpu_halt", "kvm_vcpu_ioctl", "kvm_vm_ioctl", "kvm_dev_ioctl"]
