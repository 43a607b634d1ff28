"""The rest of the KVM ABI the real engine needs to save and restore a VM: structures and ioctl numbers.

`vmio_edu.linux.include.uapi.linux.kvm` models include/uapi/linux/kvm.h of Linux 3.7 (what the emulated
kernel speaks). The real engine talks to the running kernel (6.x here) and needs more of it: the x86
structures of arch/x86/include/uapi/asm/kvm.h (FPU, MSRs, LAPIC, PIC/IOAPIC, PIT, vCPU events, debug
registers, XSAVE, XCRs, `struct kvm_sync_regs`) and their ioctls from include/uapi/linux/kvm.h. Names are
the header's. Every size here is checked against this machine's <linux/kvm.h> by
tests/kvm/test_kvm_state.py (a C program prints sizeof() and the ioctl numbers).

Headers (the layouts have not changed since they were added; only the tail of kvm_vcpu_events grew):
https://github.com/torvalds/linux/blob/v6.12/arch/x86/include/uapi/asm/kvm.h
https://github.com/torvalds/linux/blob/v6.12/include/uapi/linux/kvm.h
"""
from __future__ import annotations

import ctypes as C

from ..linux.include.uapi.linux.kvm import _IO, _IOR, _IOW, _IOWR, kvm_regs, kvm_run, kvm_sregs

u8, u16, u32, u64, s64 = C.c_uint8, C.c_uint16, C.c_uint32, C.c_uint64, C.c_int64

# -- KVM_CHECK_EXTENSION capabilities (include/uapi/linux/kvm.h) -----------------------------------------
KVM_CAP_IRQCHIP = 0
KVM_CAP_MP_STATE = 14
KVM_CAP_PIT2 = 33
KVM_CAP_PIT_STATE2 = 35
KVM_CAP_ADJUST_CLOCK = 39
KVM_CAP_VCPU_EVENTS = 41
KVM_CAP_DEBUGREGS = 50
KVM_CAP_XSAVE = 55
KVM_CAP_XCRS = 56
KVM_CAP_SYNC_REGS = 74
KVM_CAP_IMMEDIATE_EXIT = 136

# kvm_run->kvm_valid_regs / kvm_dirty_regs bits (arch/x86/include/uapi/asm/kvm.h)
KVM_SYNC_X86_REGS = 1 << 0
KVM_SYNC_X86_SREGS = 1 << 1
KVM_SYNC_X86_EVENTS = 1 << 2

# struct kvm_irqchip.chip_id
KVM_IRQCHIP_PIC_MASTER = 0
KVM_IRQCHIP_PIC_SLAVE = 1
KVM_IRQCHIP_IOAPIC = 2

# struct kvm_vcpu_events.flags
KVM_VCPUEVENT_VALID_NMI_PENDING = 0x1
KVM_VCPUEVENT_VALID_SIPI_VECTOR = 0x2
KVM_VCPUEVENT_VALID_SHADOW = 0x4
KVM_VCPUEVENT_VALID_SMM = 0x8


class kvm_fpu(C.Structure):
    _fields_ = [("fpr", u8 * 16 * 8), ("fcw", u16), ("fsw", u16), ("ftwx", u8), ("pad1", u8),
                ("last_opcode", u16), ("last_ip", u64), ("last_dp", u64), ("xmm", u8 * 16 * 16),
                ("mxcsr", u32), ("pad2", u32)]


class kvm_msr_entry(C.Structure):
    _fields_ = [("index", u32), ("reserved", u32), ("data", u64)]


def kvm_msrs(n: int) -> C.Structure:
    """struct kvm_msrs with room for `n` entries (the header declares `entries[]`)."""
    class kvm_msrs_n(C.Structure):
        _fields_ = [("nmsrs", u32), ("pad", u32), ("entries", kvm_msr_entry * n)]
    return kvm_msrs_n(n)


class kvm_msrs_header(C.Structure):
    """The fixed part of struct kvm_msrs: the size the ioctl number encodes."""
    _fields_ = [("nmsrs", u32), ("pad", u32)]


class kvm_msr_list_header(C.Structure):
    _fields_ = [("nmsrs", u32)]


def kvm_msr_list(n: int) -> C.Structure:
    class kvm_msr_list_n(C.Structure):
        _fields_ = [("nmsrs", u32), ("indices", u32 * n)]
    return kvm_msr_list_n(n)


class kvm_lapic_state(C.Structure):
    _fields_ = [("regs", C.c_char * 1024)]


class kvm_pic_state(C.Structure):
    _fields_ = [(n, u8) for n in (
        "last_irr", "irr", "imr", "isr", "priority_add", "irq_base", "read_reg_select", "poll",
        "special_mask", "init_state", "auto_eoi", "rotate_on_auto_eoi", "special_fully_nested_mode",
        "init4", "elcr", "elcr_mask")]


class kvm_ioapic_state(C.Structure):
    _fields_ = [("base_address", u64), ("ioregsel", u32), ("id", u32), ("irr", u32), ("pad", u32),
                ("redirtbl", u64 * 24)]


class _kvm_irqchip_chip(C.Union):
    _fields_ = [("dummy", C.c_char * 512), ("pic", kvm_pic_state), ("ioapic", kvm_ioapic_state)]


class kvm_irqchip(C.Structure):
    _fields_ = [("chip_id", u32), ("pad", u32), ("chip", _kvm_irqchip_chip)]


class kvm_pit_channel_state(C.Structure):
    _fields_ = [("count", u32), ("latched_count", u16), ("count_latched", u8), ("status_latched", u8),
                ("status", u8), ("read_state", u8), ("write_state", u8), ("write_latch", u8),
                ("rw_mode", u8), ("mode", u8), ("bcd", u8), ("gate", u8), ("count_load_time", s64)]


class kvm_pit_state2(C.Structure):
    _fields_ = [("channels", kvm_pit_channel_state * 3), ("flags", u32), ("reserved", u32 * 9)]


class _ev_exception(C.Structure):
    _fields_ = [("injected", u8), ("nr", u8), ("has_error_code", u8), ("pending", u8), ("error_code", u32)]


class _ev_interrupt(C.Structure):
    _fields_ = [("injected", u8), ("nr", u8), ("soft", u8), ("shadow", u8)]


class _ev_nmi(C.Structure):
    _fields_ = [("injected", u8), ("pending", u8), ("masked", u8), ("pad", u8)]


class _ev_smi(C.Structure):
    _fields_ = [("smm", u8), ("pending", u8), ("smm_inside_nmi", u8), ("latched_init", u8)]


class kvm_vcpu_events(C.Structure):
    _fields_ = [("exception", _ev_exception), ("interrupt", _ev_interrupt), ("nmi", _ev_nmi),
                ("sipi_vector", u32), ("flags", u32), ("smi", _ev_smi), ("reserved", u8 * 27),
                ("exception_has_payload", u8), ("exception_payload", u64)]


class kvm_debugregs(C.Structure):
    _fields_ = [("db", u64 * 4), ("dr6", u64), ("dr7", u64), ("flags", u64), ("reserved", u64 * 9)]


class kvm_xsave(C.Structure):
    _fields_ = [("region", u32 * 1024)]


class kvm_xcr(C.Structure):
    _fields_ = [("xcr", u32), ("reserved", u32), ("value", u64)]


class kvm_xcrs(C.Structure):
    _fields_ = [("nr_xcrs", u32), ("flags", u32), ("xcrs", kvm_xcr * 16), ("padding", u64 * 16)]


class kvm_clock_data(C.Structure):
    _fields_ = [("clock", u64), ("flags", u32), ("pad0", u32), ("realtime", u64), ("host_tsc", u64),
                ("pad", u32 * 4)]


class kvm_pit_config(C.Structure):
    _fields_ = [("flags", u32), ("pad", u32 * 15)]


class kvm_sync_regs(C.Structure):
    """What kvm_run->s holds on x86 (KVM_CAP_SYNC_REGS): the kernel writes the parts named in
    kvm_valid_regs there on every return from KVM_RUN, and reads the parts named in kvm_dirty_regs."""
    _fields_ = [("regs", kvm_regs), ("sregs", kvm_sregs), ("events", kvm_vcpu_events)]


# Where kvm_run's fields the 3.7 model does not name sit (offsets in struct kvm_run).
KVM_RUN_IMMEDIATE_EXIT = 1  # __u8 immediate_exit, after request_interrupt_window (was padding in 3.7)
KVM_RUN_VALID_REGS = kvm_run.kvm_valid_regs.offset  # 288
KVM_RUN_DIRTY_REGS = kvm_run.kvm_dirty_regs.offset  # 296
KVM_RUN_S = kvm_run.s.offset  # 304: union { struct kvm_sync_regs regs; char padding[2048]; } s

# -- ioctls ------------------------------------------------------------------------------------------------
KVM_GET_MSR_INDEX_LIST = _IOWR(0x02, kvm_msr_list_header)
KVM_GET_IRQCHIP = _IOWR(0x62, kvm_irqchip)
KVM_SET_IRQCHIP = _IOR(0x63, kvm_irqchip)  # (sic: the header declares it _IOR)
KVM_CREATE_PIT2 = _IOW(0x77, kvm_pit_config)
KVM_SET_CLOCK = _IOW(0x7B, kvm_clock_data)
KVM_GET_CLOCK = _IOR(0x7C, kvm_clock_data)
KVM_GET_MSRS = _IOWR(0x88, kvm_msrs_header)
KVM_SET_MSRS = _IOW(0x89, kvm_msrs_header)
KVM_GET_FPU = _IOR(0x8C, kvm_fpu)
KVM_SET_FPU = _IOW(0x8D, kvm_fpu)
KVM_GET_LAPIC = _IOR(0x8E, kvm_lapic_state)
KVM_SET_LAPIC = _IOW(0x8F, kvm_lapic_state)
KVM_GET_PIT2 = _IOR(0x9F, kvm_pit_state2)  # on the VM fd
KVM_SET_PIT2 = _IOW(0xA0, kvm_pit_state2)
KVM_GET_VCPU_EVENTS = _IOR(0x9F, kvm_vcpu_events)  # on the vCPU fd (same nr, other size)
KVM_SET_VCPU_EVENTS = _IOW(0xA0, kvm_vcpu_events)
KVM_GET_DEBUGREGS = _IOR(0xA1, kvm_debugregs)
KVM_SET_DEBUGREGS = _IOW(0xA2, kvm_debugregs)
KVM_GET_XSAVE = _IOR(0xA4, kvm_xsave)
KVM_SET_XSAVE = _IOW(0xA5, kvm_xsave)
KVM_GET_XCRS = _IOR(0xA6, kvm_xcrs)
KVM_SET_XCRS = _IOW(0xA7, kvm_xcrs)

# Sizes of arch/x86/include/uapi/asm/kvm.h on x86-64 (asserted at import; the test compares them with
# the C compiler's view of the installed header too).
SIZES = {"kvm_regs": 144, "kvm_sregs": 312, "kvm_fpu": 416, "kvm_msr_entry": 16, "kvm_msrs": 8,
         "kvm_lapic_state": 1024, "kvm_pic_state": 16, "kvm_ioapic_state": 216, "kvm_irqchip": 520,
         "kvm_pit_channel_state": 24, "kvm_pit_state2": 112, "kvm_vcpu_events": 64, "kvm_debugregs": 128,
         "kvm_xsave": 4096, "kvm_xcrs": 392, "kvm_clock_data": 48, "kvm_pit_config": 64, "kvm_sync_regs": 520, "kvm_run": 2352}
_PY = {"kvm_regs": kvm_regs, "kvm_sregs": kvm_sregs, "kvm_fpu": kvm_fpu, "kvm_msr_entry": kvm_msr_entry,
       "kvm_msrs": kvm_msrs_header, "kvm_lapic_state": kvm_lapic_state, "kvm_pic_state": kvm_pic_state,
       "kvm_ioapic_state": kvm_ioapic_state, "kvm_irqchip": kvm_irqchip,
       "kvm_pit_channel_state": kvm_pit_channel_state, "kvm_pit_state2": kvm_pit_state2,
       "kvm_vcpu_events": kvm_vcpu_events, "kvm_debugregs": kvm_debugregs, "kvm_xsave": kvm_xsave,
       "kvm_xcrs": kvm_xcrs, "kvm_clock_data": kvm_clock_data, "kvm_pit_config": kvm_pit_config, "kvm_sync_regs": kvm_sync_regs,
       "kvm_run": kvm_run}
for _n, _t in _PY.items():
    assert C.sizeof(_t) == SIZES[_n], (_n, C.sizeof(_t))
assert KVM_RUN_S == 304 and KVM_RUN_VALID_REGS == 288
