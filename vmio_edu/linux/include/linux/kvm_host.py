"""include/linux/kvm_host.h (Linux v3.7): `struct kvm` (one VM) and `struct kvm_vcpu` (one vCPU).

Plain data. Each vCPU also carries the model's own parts, named as such: `cpu` (the emulated processor
the vCPU runs on, the "hardware"), `vmx` (struct vcpu_vmx, vmx.py), the scheduler thread running its
KVM_RUN, and `exit_detail`, a sentence for the learner when an exit needs explaining.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from ...arch.x86.include.asm.kvm_host import kvm_vcpu_arch

KVM_MMIO_BUS, KVM_PIO_BUS = 0, 1
KVM_USERSPACE_IRQ_SOURCE_ID = 0
KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE, KVM_IRQCHIP_IOAPIC = 0, 1, 2

# vcpu->mode
OUTSIDE_GUEST_MODE, IN_GUEST_MODE, EXITING_GUEST_MODE = 0, 1, 2


@dataclass
class kvm_io_device:
    """An in-kernel device on a KVM bus: read(addr, len) -> bytes | None, write(addr, len, data) -> bool
    (None / False = "not mine", -EOPNOTSUPP in C)."""

    name: str
    read: Callable[[int, int], bytes | None]
    write: Callable[[int, int, bytes], bool]


@dataclass
class kvm_io_range:
    addr: int
    len: int
    dev: kvm_io_device


@dataclass
class kvm_io_bus:
    """struct kvm_io_bus: registered ranges, kept sorted by address as kvm_io_bus_insert_dev does."""

    range: list[kvm_io_range] = field(default_factory=list)

    @property
    def dev_count(self) -> int:
        return len(self.range)


@dataclass
class kvm_memory_slot:
    id: int
    base_gfn: int
    npages: int
    userspace_addr: int
    flags: int = 0


@dataclass
class kvm_arch:
    """struct kvm_arch, the parts used here."""

    vpic: Any = None          # struct kvm_pic (i8259.py) once KVM_CREATE_IRQCHIP ran
    vioapic: Any = None       # struct kvm_ioapic (ioapic.py)
    tss_addr: int = 0
    ept_identity_map_addr: int = 0
    mmio_gfns: set = field(default_factory=set)  # guest pages the MMU has marked as MMIO (mmio sptes)


@dataclass
class kvm:
    """struct kvm: one virtual machine."""

    sched: Any = None
    memslots: dict[int, kvm_memory_slot] = field(default_factory=dict)
    vcpus: list = field(default_factory=list)
    buses: dict[int, kvm_io_bus] = field(default_factory=lambda: {KVM_MMIO_BUS: kvm_io_bus(),
                                                                   KVM_PIO_BUS: kvm_io_bus()})
    arch: kvm_arch = field(default_factory=kvm_arch)
    irq_routing: dict[int, list] = field(default_factory=dict)  # gsi -> routing entries (irq_comm.py)
    ioeventfds: list = field(default_factory=list)  # struct _ioeventfd registrations (virt/kvm/eventfd.py)
    # -- the model's own parts --
    last_io_dev: str | None = None  # name of the in-kernel device that took the last bus access


@dataclass
class kvm_vcpu:
    """struct kvm_vcpu."""

    kvm: kvm
    vcpu_id: int
    run: Any = None                      # struct kvm_run over page 0 of the mmap
    run_pages: Any = None                # the 3 pages behind the mmap (ctypes array)
    requests: set = field(default_factory=set)
    mode: int = OUTSIDE_GUEST_MODE
    arch: kvm_vcpu_arch = field(default_factory=kvm_vcpu_arch)
    mmio_needed: int = 0
    mmio_read_completed: int = 0
    mmio_is_write: int = 0
    mmio_cur_fragment: int = 0
    mmio_nr_fragments: int = 0
    mmio_fragments: list = field(default_factory=list)
    stat: dict = field(default_factory=lambda: {"exits": 0, "io_exits": 0, "mmio_exits": 0, "halt_exits": 0,
                                                "halt_wakeup": 0, "irq_injections": 0, "irq_window_exits": 0,
                                                "irq_exits": 0, "signal_exits": 0, "insn_emulation": 0,
                                                "insn_emulation_fail": 0})
    # -- the model's own parts --
    cpu: Any = None                      # vmio_edu.cpu.x86.X86Cpu: the processor this vCPU runs on
    vmx: Any = None                      # struct vcpu_vmx (vmx.py)
    model_thread: Any = None             # the scheduler thread inside KVM_RUN (woken by kvm_vcpu_kick)
    blocked: bool = False                # sleeping in kvm_vcpu_block
    sigpending: bool = False             # a signal queued for the vCPU thread (QEMU's SIG_IPI kick)
    block_gave_up: bool = False          # kvm_vcpu_block had no scheduler to sleep in
    exit_detail: str = ""                # why the last SHUTDOWN / INTERNAL_ERROR / HLT exit happened
    need_resched: bool = False           # TIF_NEED_RESCHED of the vCPU thread (set by the host's timer tick)

    def view(self) -> dict:
        return {"vcpu_id": self.vcpu_id, "requests": sorted(self.requests), "mode": self.mode,
                "arch": self.arch.view(), "mmio_needed": self.mmio_needed, "stat": dict(self.stat),
                "blocked": self.blocked, "exit_detail": self.exit_detail}


def kvm_make_request(req: int, vcpu: kvm_vcpu) -> None:
    vcpu.requests.add(req)


def kvm_check_request(req: int, vcpu: kvm_vcpu) -> bool:
    if req in vcpu.requests:
        vcpu.requests.discard(req)
        return True
    return False


def irqchip_in_kernel(k: kvm) -> bool:
    return k.arch.vpic is not None
