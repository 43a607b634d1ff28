"""accel/kvm/kvm-accel-ops.c (QEMU v10.2.0): the vCPU thread (1.6.1's qemu_kvm_cpu_thread_fn in cpus.c).

`kvm_start_vcpu_thread` creates "CPU 0/KVM", which starts in `qemu_thread_start` → `kvm_vcpu_thread_fn`:
take the BQL, set the vCPU up, then loop: process queued CPU events, and `kvm_cpu_exec` while the CPU can
run. (The model creates the vCPU fd on the controller thread, before the threads start, because the
machine loads the guest's registers through it; 10.2 calls kvm_init_vcpu on this thread.)
"""
from __future__ import annotations

from ....qemu.state import qemu_state
from ....trace.tracepoint import tracepoint
from ...system.cpus import bql_lock, bql_unlock
from .kvm_all import CPUState, kvm_cpu_exec


@tracepoint("qemu-cpu", args=("arg=cpu",))
def kvm_vcpu_thread_fn(cpu: CPUState) -> None:
    """The vCPU thread: BQL, then kvm_cpu_exec until the machine shuts down (it drops the BQL inside)."""
    s = qemu_state()
    bql_lock("../accel/kvm/kvm-accel-ops.c", 37)
    s.extra["current_cpu"] = cpu
    while not s.shutdown_requested:
        kvm_cpu_exec(cpu)  # (cpu_can_run: never stopped here; EXCP_DEBUG: no guest debugging)
    bql_unlock()


def kvm_vcpu_thread(cpu: CPUState) -> None:
    """What the thread kvm_start_vcpu_thread creates runs: qemu_thread_start → kvm_vcpu_thread_fn (the
    machine spawns its vCPU thread on this, so gdb's bottom frame qemu_thread_start is there too)."""
    from ...util.qemu_thread_posix import QemuThreadArgs, qemu_thread_start
    qemu_thread_start(QemuThreadArgs(kvm_vcpu_thread_fn, cpu, f"CPU {cpu.cpu_index}/KVM"))


def kvm_start_vcpu_thread(cpu: CPUState):
    """qemu_thread_create(cpu->thread, "CPU 0/KVM", kvm_vcpu_thread_fn, cpu, QEMU_THREAD_JOINABLE)."""
    from ...util.qemu_thread_posix import QEMU_THREAD_JOINABLE, QemuThread, qemu_thread_create
    t = QemuThread()
    qemu_thread_create(t, f"CPU {cpu.cpu_index}/KVM", kvm_vcpu_thread_fn, cpu, QEMU_THREAD_JOINABLE, vcpu=True,
                       model_name=f"vcpu{cpu.cpu_index}")
    return t.model
