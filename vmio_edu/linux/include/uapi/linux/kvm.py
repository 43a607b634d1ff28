"""include/uapi/linux/kvm.h (Linux v3.7): the ABI between KVM and QEMU, with its real byte layout.

Both engines use these very structures: the real one passes them to ioctl(2) on /dev/kvm, the emulated one
hands them to the kernel model. `struct kvm_run` lives in the first page of the vCPU mmap; PIO data lives
in the second page (the kernel sets data_offset = KVM_PIO_PAGE_OFFSET * PAGE_SIZE = 4096; userspace
reads it from kvm_run).
"""
from __future__ import annotations

import ctypes as C

KVMIO = 0xAE
_IOC_WRITE, _IOC_READ = 1, 2


def _IOC(d: int, nr: int, size: int) -> int:
    return (d << 30) | (size << 16) | (KVMIO << 8) | nr


def _IO(nr: int) -> int:
    return _IOC(0, nr, 0)


def _IOR(nr: int, t) -> int:
    return _IOC(_IOC_READ, nr, C.sizeof(t))


def _IOW(nr: int, t) -> int:
    return _IOC(_IOC_WRITE, nr, C.sizeof(t))


def _IOWR(nr: int, t) -> int:
    return _IOC(_IOC_READ | _IOC_WRITE, nr, C.sizeof(t))


# -- exit reasons (kvm.h:148-166) --------------------------------------------------------------------
KVM_EXIT_UNKNOWN = 0
KVM_EXIT_EXCEPTION = 1
KVM_EXIT_IO = 2
KVM_EXIT_HYPERCALL = 3
KVM_EXIT_DEBUG = 4
KVM_EXIT_HLT = 5
KVM_EXIT_MMIO = 6
KVM_EXIT_IRQ_WINDOW_OPEN = 7
KVM_EXIT_SHUTDOWN = 8
KVM_EXIT_FAIL_ENTRY = 9
KVM_EXIT_INTR = 10
KVM_EXIT_SET_TPR = 11
KVM_EXIT_TPR_ACCESS = 12
KVM_EXIT_NMI = 16
KVM_EXIT_INTERNAL_ERROR = 17
EXIT_NAMES = {v: k[9:] for k, v in dict(globals()).items() if k.startswith("KVM_EXIT_")}

KVM_EXIT_IO_IN = 0
KVM_EXIT_IO_OUT = 1
KVM_INTERNAL_ERROR_EMULATION = 1

KVM_MP_STATE_RUNNABLE = 0
KVM_MP_STATE_HALTED = 3


class kvm_run_io(C.Structure):
    _fields_ = [("direction", C.c_uint8), ("size", C.c_uint8), ("port", C.c_uint16),
                ("count", C.c_uint32), ("data_offset", C.c_uint64)]


class kvm_run_mmio(C.Structure):
    _fields_ = [("phys_addr", C.c_uint64), ("data", C.c_uint8 * 8), ("len", C.c_uint32),
                ("is_write", C.c_uint8)]


class kvm_run_internal(C.Structure):
    _fields_ = [("suberror", C.c_uint32), ("ndata", C.c_uint32), ("data", C.c_uint64 * 16)]


class kvm_run_fail_entry(C.Structure):
    _fields_ = [("hardware_entry_failure_reason", C.c_uint64)]


class kvm_run_exit_union(C.Union):
    _fields_ = [("io", kvm_run_io), ("mmio", kvm_run_mmio), ("internal", kvm_run_internal),
                ("fail_entry", kvm_run_fail_entry), ("padding", C.c_char * 256)]


class kvm_run(C.Structure):
    """struct kvm_run (kvm.h:176). Offsets: exit_reason @8, the exit union @32, io.data_offset @40."""

    _fields_ = [
        ("request_interrupt_window", C.c_uint8),
        ("padding1", C.c_uint8 * 7),
        ("exit_reason", C.c_uint32),
        ("ready_for_interrupt_injection", C.c_uint8),
        ("if_flag", C.c_uint8),
        ("padding2", C.c_uint8 * 2),
        ("cr8", C.c_uint64),
        ("apic_base", C.c_uint64),
        ("u", kvm_run_exit_union),
        ("kvm_valid_regs", C.c_uint64),
        ("kvm_dirty_regs", C.c_uint64),
        ("s", C.c_char * 2048),
    ]


# Field overlay for the hex view: (name, offset, size).
KVM_RUN_FIELDS = (
    ("request_interrupt_window", 0, 1), ("exit_reason", 8, 4), ("ready_for_interrupt_injection", 12, 1),
    ("if_flag", 13, 1), ("cr8", 16, 8), ("apic_base", 24, 8),
    ("io.direction", 32, 1), ("io.size", 33, 1), ("io.port", 34, 2), ("io.count", 36, 4),
    ("io.data_offset", 40, 8),
)
assert kvm_run.exit_reason.offset == 8 and kvm_run.u.offset == 32
assert kvm_run_exit_union.io.offset == 0 and kvm_run_io.data_offset.offset == 8


class kvm_regs(C.Structure):
    _fields_ = [(n, C.c_uint64) for n in (
        "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp",
        "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip", "rflags")]


class kvm_segment(C.Structure):
    _fields_ = [("base", C.c_uint64), ("limit", C.c_uint32), ("selector", C.c_uint16),
                ("type", C.c_uint8), ("present", C.c_uint8), ("dpl", C.c_uint8), ("db", C.c_uint8),
                ("s", C.c_uint8), ("l", C.c_uint8), ("g", C.c_uint8), ("avl", C.c_uint8),
                ("unusable", C.c_uint8), ("padding", C.c_uint8)]


class kvm_dtable(C.Structure):
    _fields_ = [("base", C.c_uint64), ("limit", C.c_uint16), ("padding", C.c_uint16 * 3)]


class kvm_sregs(C.Structure):
    _fields_ = [("cs", kvm_segment), ("ds", kvm_segment), ("es", kvm_segment), ("fs", kvm_segment),
                ("gs", kvm_segment), ("ss", kvm_segment), ("tr", kvm_segment), ("ldt", kvm_segment),
                ("gdt", kvm_dtable), ("idt", kvm_dtable),
                ("cr0", C.c_uint64), ("cr2", C.c_uint64), ("cr3", C.c_uint64), ("cr4", C.c_uint64),
                ("cr8", C.c_uint64), ("efer", C.c_uint64), ("apic_base", C.c_uint64),
                ("interrupt_bitmap", C.c_uint64 * 4)]


class kvm_userspace_memory_region(C.Structure):
    _fields_ = [("slot", C.c_uint32), ("flags", C.c_uint32), ("guest_phys_addr", C.c_uint64),
                ("memory_size", C.c_uint64), ("userspace_addr", C.c_uint64)]


class kvm_irq_level(C.Structure):
    _fields_ = [("irq", C.c_uint32), ("level", C.c_uint32)]  # irq doubles as `status` on return


class kvm_mp_state(C.Structure):
    _fields_ = [("mp_state", C.c_uint32)]


class kvm_signal_mask(C.Structure):
    _fields_ = [("len", C.c_uint32)]  # followed by `len` bytes of sigset (kvm.h:731)


class kvm_cpuid_entry2(C.Structure):
    _fields_ = [("function", C.c_uint32), ("index", C.c_uint32), ("flags", C.c_uint32),
                ("eax", C.c_uint32), ("ebx", C.c_uint32), ("ecx", C.c_uint32), ("edx", C.c_uint32),
                ("padding", C.c_uint32 * 3)]


class kvm_cpuid2(C.Structure):
    _fields_ = [("nent", C.c_uint32), ("padding", C.c_uint32)]  # followed by nent kvm_cpuid_entry2


# -- ioeventfd (kvm.h:417-437): a guest write to a port or an address signals an eventfd in the kernel ----
KVM_IOEVENTFD_FLAG_DATAMATCH = 1 << 0  # only a write of `datamatch` signals (else any value: "wildcard")
KVM_IOEVENTFD_FLAG_PIO = 1 << 1  # `addr` is a port (KVM_PIO_BUS), else a guest-physical address (MMIO bus)
KVM_IOEVENTFD_FLAG_DEASSIGN = 1 << 2  # remove the registration instead of adding it
KVM_IOEVENTFD_VALID_FLAG_MASK = (1 << 3) - 1


class kvm_ioeventfd(C.Structure):
    """struct kvm_ioeventfd: 64 bytes (datamatch, addr, len 1/2/4/8, the eventfd, flags, 36 pad bytes)."""

    _fields_ = [("datamatch", C.c_uint64), ("addr", C.c_uint64), ("len", C.c_uint32), ("fd", C.c_int32),
                ("flags", C.c_uint32), ("pad", C.c_uint8 * 36)]


# -- ioctls (kvm.h) ----------------------------------------------------------------------------------
KVM_GET_API_VERSION = _IO(0x00)
KVM_CREATE_VM = _IO(0x01)
KVM_CHECK_EXTENSION = _IO(0x03)
KVM_GET_VCPU_MMAP_SIZE = _IO(0x04)
KVM_GET_SUPPORTED_CPUID = _IOWR(0x05, kvm_cpuid2)
KVM_CREATE_VCPU = _IO(0x41)
KVM_SET_USER_MEMORY_REGION = _IOW(0x46, kvm_userspace_memory_region)
KVM_SET_TSS_ADDR = _IO(0x47)
KVM_SET_IDENTITY_MAP_ADDR = _IOW(0x48, C.c_uint64)
KVM_CREATE_IRQCHIP = _IO(0x60)
KVM_IRQ_LINE = _IOW(0x61, kvm_irq_level)
KVM_IRQ_LINE_STATUS = _IOWR(0x67, kvm_irq_level)
KVM_RUN = _IO(0x80)
KVM_GET_REGS = _IOR(0x81, kvm_regs)
KVM_SET_REGS = _IOW(0x82, kvm_regs)
KVM_GET_SREGS = _IOR(0x83, kvm_sregs)
KVM_SET_SREGS = _IOW(0x84, kvm_sregs)
KVM_SET_SIGNAL_MASK = _IOW(0x8B, kvm_signal_mask)
KVM_SET_CPUID2 = _IOW(0x90, kvm_cpuid2)
KVM_GET_MP_STATE = _IOR(0x98, kvm_mp_state)
KVM_SET_MP_STATE = _IOW(0x99, kvm_mp_state)
KVM_IOEVENTFD = _IOW(0x79, kvm_ioeventfd)

KVM_CAP_SET_TSS_ADDR = 4
KVM_CAP_SET_IDENTITY_MAP_ADDR = 37
KVM_CAP_IOEVENTFD = 36

assert C.sizeof(kvm_ioeventfd) == 64 and KVM_IOEVENTFD == 0x4040AE79
assert KVM_RUN == 0xAE80 and KVM_GET_REGS == 0x8090AE81 and KVM_SET_SREGS == 0x4138AE84
