"""Saving and restoring what the real kernel holds of a VM: QEMU's savevm/loadvm for the KVM side.

On the emulated engine the kernel's state is Python objects, and `vmio_edu.trace.checkpoint` copies them.
On real KVM it lives in the kernel and only ioctls reach it. QEMU 1.6.1 reads it all with
`kvm_arch_get_registers` and writes it back with `kvm_arch_put_registers(cpu, KVM_PUT_FULL_STATE)` on
loadvm (target-i386/kvm.c:1727 and :1669), and the in-kernel devices save themselves: the PIC halves
(hw/i386/kvm/i8259.c `kvm_pic_get`/`kvm_pic_put`), the IOAPIC (hw/i386/kvm/ioapic.c), the PIT
(hw/i386/kvm/i8254.c) and the kvmclock (hw/i386/kvm/clock.c). This module does the same, in the same order:

    vcpu_state = save(vcpu)          # KVM_GET_REGS, _XSAVE (or _FPU), _XCRS, _SREGS, _MSRS, _MP_STATE,
                                     # _LAPIC, _VCPU_EVENTS, _DEBUGREGS
    restore(vcpu, vcpu_state)        # the KVM_SET_ twins, in kvm_arch_put_registers' order
    vm_state = save_vm(vm); restore_vm(vm, vm_state)   # KVM_GET/SET_IRQCHIP x3, _PIT2, _CLOCK

Only what the kernel says it has is used (KVM_CHECK_EXTENSION: XSAVE, XCRS, VCPU_EVENTS, DEBUGREGS, PIT2,
ADJUST_CLOCK), as QEMU does. EFER is not an MSR here: KVM keeps it in kvm_sregs.efer. The MSRs are
QEMU 1.6.1's list (kvm_put_msrs, target-i386/kvm.c:1047) restricted to those KVM_GET_MSR_INDEX_LIST
names: SYSENTER_CS/ESP/EIP, PAT, STAR, HSAVE_PA, TSC_ADJUST, TSC_DEADLINE, MISC_ENABLE, CSTAR,
KERNEL_GS_BASE, FMASK, LSTAR, then the TSC (written back on a full restore, like loadvm: the guest's
TSC goes back with it, which is what a replay wants) and the paravirtual clock MSRs.

One thing no ioctl shows: an I/O exit is only *finished* (an IN's data copied into RAX or memory, a
string instruction's next step started) when userspace enters KVM_RUN again. QEMU's docs (the kernel's
api.rst, "KVM_EXIT_IO") say to finish it first, with KVM_RUN and immediate_exit set, before saving.
`vmio_edu.kvm.device.KvmVcpu.finish_pending_io` does that; a state is only saved or restored after it.

Links: https://github.com/rzr/qemu/blob/62ecc3a0e3c77a4944c92a02dd7fae2ab1f2290d/target-i386/kvm.c#L1669
https://github.com/rzr/qemu/blob/62ecc3a0e3c77a4944c92a02dd7fae2ab1f2290d/hw/i386/kvm/i8259.c#L32
"""
from __future__ import annotations

import ctypes
from dataclasses import dataclass, field
from typing import Any

from ..linux.include.uapi.linux import kvm as K
from . import uapi as U

# QEMU 1.6.1 kvm_put_msrs' MSRs, in its order (target-i386/cpu.h, linux-headers/asm-x86/kvm_para.h).
MSR_IA32_SYSENTER_CS, MSR_IA32_SYSENTER_ESP, MSR_IA32_SYSENTER_EIP = 0x174, 0x175, 0x176
MSR_PAT, MSR_STAR, MSR_VM_HSAVE_PA = 0x277, 0xC0000081, 0xC0010117
MSR_TSC_ADJUST, MSR_IA32_TSCDEADLINE, MSR_IA32_MISC_ENABLE = 0x3B, 0x6E0, 0x1A0
MSR_CSTAR, MSR_KERNELGSBASE, MSR_FMASK, MSR_LSTAR = 0xC0000083, 0xC0000102, 0xC0000084, 0xC0000082
MSR_IA32_TSC = 0x10
MSR_KVM_SYSTEM_TIME, MSR_KVM_WALL_CLOCK = 0x12, 0x11
MSR_KVM_ASYNC_PF_EN, MSR_KVM_STEAL_TIME, MSR_KVM_PV_EOI_EN = 0x4B564D02, 0x4B564D03, 0x4B564D04
QEMU_MSRS = (MSR_IA32_SYSENTER_CS, MSR_IA32_SYSENTER_ESP, MSR_IA32_SYSENTER_EIP, MSR_PAT, MSR_STAR,
             MSR_VM_HSAVE_PA, MSR_TSC_ADJUST, MSR_IA32_TSCDEADLINE, MSR_IA32_MISC_ENABLE, MSR_CSTAR,
             MSR_KERNELGSBASE, MSR_FMASK, MSR_LSTAR, MSR_IA32_TSC, MSR_KVM_SYSTEM_TIME, MSR_KVM_WALL_CLOCK,
             MSR_KVM_ASYNC_PF_EN, MSR_KVM_PV_EOI_EN, MSR_KVM_STEAL_TIME)


@dataclass(frozen=True)
class Features:
    """What this kernel has, from KVM_CHECK_EXTENSION (and which MSRs it saves, KVM_GET_MSR_INDEX_LIST)."""

    xsave: bool
    xcrs: bool
    vcpu_events: bool
    debugregs: bool
    pit2: bool
    adjust_clock: bool
    sync_regs: int  # the KVM_SYNC_X86_* bits it syncs through kvm_run->s (0: none)
    immediate_exit: bool
    msrs: tuple[int, ...]


def features(kvm: Any) -> Features:
    """Ask the /dev/kvm file `kvm` (a KvmSystem) once; the answer is kept on it."""
    f = getattr(kvm, "_features", None)
    if f is not None:
        return f

    def cap(c: int) -> int:
        try:
            return kvm.ioctl(K.KVM_CHECK_EXTENSION, c)
        except OSError:
            return 0

    lst = U.kvm_msr_list(512)
    try:
        kvm.ioctl(U.KVM_GET_MSR_INDEX_LIST, lst)
        known = set(lst.indices[:lst.nmsrs])
    except OSError:
        known = set()
    f = Features(xsave=cap(U.KVM_CAP_XSAVE) > 0, xcrs=cap(U.KVM_CAP_XCRS) > 0,
                 vcpu_events=cap(U.KVM_CAP_VCPU_EVENTS) > 0, debugregs=cap(U.KVM_CAP_DEBUGREGS) > 0,
                 pit2=cap(U.KVM_CAP_PIT_STATE2) > 0, adjust_clock=cap(U.KVM_CAP_ADJUST_CLOCK) > 0,
                 sync_regs=max(cap(U.KVM_CAP_SYNC_REGS), 0), immediate_exit=cap(U.KVM_CAP_IMMEDIATE_EXIT) > 0,
                 msrs=tuple(m for m in QEMU_MSRS if m in known))
    kvm._features = f
    return f


# ==========================================================================================================
# The vCPU
# ==========================================================================================================
@dataclass(eq=False)
class VcpuState:
    """One vCPU as the kernel holds it: each part is the raw bytes of its uapi structure (None where the
    kernel has no such ioctl); `msrs` maps MSR index to value."""

    regs: bytes
    sregs: bytes
    fpu: bytes | None  # struct kvm_fpu, where there is no XSAVE
    xsave: bytes | None
    xcrs: bytes | None
    msrs: dict[int, int]
    mp_state: int
    lapic: bytes | None
    events: bytes | None
    debugregs: bytes | None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, VcpuState) and vars(self) == vars(other)

    def differences(self, other: "VcpuState") -> list[str]:
        """The parts that differ (for test messages)."""
        return [k for k in vars(self) if getattr(self, k) != getattr(other, k)]


def _get(f: Any, request: int, struct: type) -> bytes:
    s = struct()
    f.ioctl(request, s)
    return bytes(s)


def _set(f: Any, request: int, struct: type, data: bytes) -> None:
    s = struct.from_buffer_copy(data)
    f.ioctl(request, s)


def _has_lapic(vcpu: Any) -> bool:
    return bool(getattr(vcpu.vm, "has_irqchip", True))


def save(vcpu: Any) -> VcpuState:
    """The vCPU's state (QEMU's kvm_arch_get_registers). Call it with the vCPU out of KVM_RUN and its last
    I/O finished (`finish_pending_io`)."""
    ft = features(vcpu.vm.kvm)
    regs = _get(vcpu, K.KVM_GET_REGS, K.kvm_regs)
    xsave = _get(vcpu, U.KVM_GET_XSAVE, U.kvm_xsave) if ft.xsave else None
    fpu = None if ft.xsave else _get(vcpu, U.KVM_GET_FPU, U.kvm_fpu)
    xcrs = _get(vcpu, U.KVM_GET_XCRS, U.kvm_xcrs) if ft.xcrs else None
    sregs = _get(vcpu, K.KVM_GET_SREGS, K.kvm_sregs)
    msrs = {}
    if ft.msrs:
        req = U.kvm_msrs(len(ft.msrs))
        for e, idx in zip(req.entries, ft.msrs):
            e.index = idx
        n = vcpu.ioctl(U.KVM_GET_MSRS, req)
        msrs = {req.entries[i].index: req.entries[i].data for i in range(n)}
    mp = K.kvm_mp_state()
    vcpu.ioctl(K.KVM_GET_MP_STATE, mp)
    lapic = _get(vcpu, U.KVM_GET_LAPIC, U.kvm_lapic_state) if _has_lapic(vcpu) else None
    events = _get(vcpu, U.KVM_GET_VCPU_EVENTS, U.kvm_vcpu_events) if ft.vcpu_events else None
    dbg = _get(vcpu, U.KVM_GET_DEBUGREGS, U.kvm_debugregs) if ft.debugregs else None
    return VcpuState(regs, sregs, fpu, xsave, xcrs, msrs, mp.mp_state, lapic, events, dbg)


def restore(vcpu: Any, st: VcpuState) -> None:
    """Put a saved state back (QEMU's kvm_arch_put_registers at KVM_PUT_FULL_STATE, same order). The vCPU
    must be out of KVM_RUN with no I/O pending (`finish_pending_io`): what the kernel would finish on the
    next entry belongs to the state being thrown away."""
    _set(vcpu, K.KVM_SET_REGS, K.kvm_regs, st.regs)
    if st.xsave is not None:
        _set(vcpu, U.KVM_SET_XSAVE, U.kvm_xsave, st.xsave)
    elif st.fpu is not None:
        _set(vcpu, U.KVM_SET_FPU, U.kvm_fpu, st.fpu)
    if st.xcrs is not None:
        _set(vcpu, U.KVM_SET_XCRS, U.kvm_xcrs, st.xcrs)
    _set(vcpu, K.KVM_SET_SREGS, K.kvm_sregs, st.sregs)
    if st.msrs:
        req = U.kvm_msrs(len(st.msrs))
        for e, (idx, val) in zip(req.entries, st.msrs.items()):
            e.index, e.data = idx, val
        n = vcpu.ioctl(U.KVM_SET_MSRS, req)
        if n != len(st.msrs):
            bad = list(st.msrs)[n]
            raise OSError(f"KVM_SET_MSRS set {n} of {len(st.msrs)} MSRs: the kernel refused MSR {bad:#x}")
    vcpu.ioctl(K.KVM_SET_MP_STATE, K.kvm_mp_state(st.mp_state))
    if st.lapic is not None:
        _set(vcpu, U.KVM_SET_LAPIC, U.kvm_lapic_state, st.lapic)
    if st.events is not None:
        ev = U.kvm_vcpu_events.from_buffer_copy(st.events)
        # As kvm_put_vcpu_events at full state: NMI pending and the SIPI vector are valid too. The flags
        # the kernel set when it gave the events (shadow, SMM) say which other parts are.
        ev.flags |= U.KVM_VCPUEVENT_VALID_NMI_PENDING | U.KVM_VCPUEVENT_VALID_SIPI_VECTOR
        vcpu.ioctl(U.KVM_SET_VCPU_EVENTS, ev)
    if st.debugregs is not None:
        d = U.kvm_debugregs.from_buffer_copy(st.debugregs)
        d.flags = 0  # "must be zero" on set
        vcpu.ioctl(U.KVM_SET_DEBUGREGS, d)


# ==========================================================================================================
# The VM: in-kernel PIC halves and IOAPIC, PIT, clock
# ==========================================================================================================
@dataclass(eq=False)
class VmState:
    irqchip: dict[int, bytes] = field(default_factory=dict)  # chip_id -> struct kvm_irqchip
    pit: bytes | None = None
    clock: int | None = None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, VmState) and vars(self) == vars(other)


_CHIPS = (U.KVM_IRQCHIP_PIC_MASTER, U.KVM_IRQCHIP_PIC_SLAVE, U.KVM_IRQCHIP_IOAPIC)


def save_vm(vm: Any) -> VmState:
    """The in-kernel devices of `vm` (a KvmVm): each PIC half and the IOAPIC if KVM_CREATE_IRQCHIP made them,
    the PIT if KVM_CREATE_PIT2 made one, and the kvmclock (kvm_pic_get, kvm_ioapic_get, kvm_pit_get,
    kvmclock_vm_state_change)."""
    st = VmState()
    if getattr(vm, "has_irqchip", False):
        for chip in _CHIPS:
            c = U.kvm_irqchip(chip_id=chip)
            vm.ioctl(U.KVM_GET_IRQCHIP, c)
            st.irqchip[chip] = bytes(c)
    ft = features(vm.kvm)
    if ft.pit2 and getattr(vm, "has_pit", False):
        st.pit = _get(vm, U.KVM_GET_PIT2, U.kvm_pit_state2)
    if ft.adjust_clock:
        c = U.kvm_clock_data()
        vm.ioctl(U.KVM_GET_CLOCK, c)
        st.clock = c.clock
    return st


def restore_vm(vm: Any, st: VmState) -> None:
    for chip, data in st.irqchip.items():
        _set(vm, U.KVM_SET_IRQCHIP, U.kvm_irqchip, data)
    if st.pit is not None:
        _set(vm, U.KVM_SET_PIT2, U.kvm_pit_state2, st.pit)
    if st.clock is not None:
        vm.ioctl(U.KVM_SET_CLOCK, U.kvm_clock_data(clock=st.clock))


def regs_of(st: VcpuState) -> K.kvm_regs:
    """The saved general registers as a struct (for readers)."""
    return K.kvm_regs.from_buffer_copy(st.regs)


assert ctypes.sizeof(K.kvm_regs) == 144
