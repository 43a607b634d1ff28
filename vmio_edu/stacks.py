"""The two stacks a Machine can run: QEMU 1.6.1 on Linux 3.7, and QEMU 10.2 on Linux 6.12.

Each `Stack` names the entry points of its trees, as "module:function" strings imported on first use, so
that a machine reads only its own stack's code. The model trees: `vmio_edu/qemu/` + `vmio_edu/linux/`
(1.6.1 / 3.7) and `vmio_edu/qemu_10_2/` + `vmio_edu/linux_6_12/` (10.2 / 6.12).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

from .errors import VmioError


@dataclass(frozen=True)
class Stack:
    """One QEMU version on one host kernel version, and where their model starts."""

    name: str  # what Machine(stack=...) takes
    qemu: str  # the QEMU release modelled, e.g. "QEMU v1.6.1"
    linux: str  # the host kernel modelled, e.g. "Linux v3.7"
    board: str  # pc_init1(state, ram, engine, bs, **devices) -> (cpu, disk controller, engine note)
    vcpu_thread: str  # the vCPU thread's function, given the CPUState
    main_loop: str  # the main-loop thread's function
    block_open: str  # open the raw image: (path, readonly=...) -> the top block node
    block_close: str  # close what block_open returned
    cleanup: str  # tear down the main loop: (QemuState) -> None
    kernel: str  # open the emulated /dev/kvm (the kernel model on Unicorn): (sched) -> KvmFile

    def entry(self, what: str) -> Callable[..., Any]:
        """The function named by field `what`, imported now."""
        target = getattr(self, what)
        module, _, fn = target.partition(":")
        try:
            return getattr(importlib.import_module(module), fn)
        except (ImportError, AttributeError) as e:
            raise VmioError(f"the {self.name} stack ({self.qemu} / {self.linux}) has no {what} yet: "
                            f"{target} is missing ({e})") from e


STACKS: dict[str, Stack] = {
    "1.6.1": Stack(
        "1.6.1", "QEMU v1.6.1", "Linux v3.7",
        board="vmio_edu.qemu.hw.i386.pc_piix:pc_init1",
        vcpu_thread="vmio_edu.qemu.cpus:qemu_kvm_cpu_thread_fn",
        main_loop="vmio_edu.qemu.vl:main_loop",
        block_open="vmio_edu.qemu.block:bdrv_open",
        block_close="vmio_edu.qemu.block:bdrv_close",
        cleanup="vmio_edu.qemu.main_loop:qemu_cleanup_main_loop",
        kernel="vmio_edu.linux.virt.kvm.kvm_main:open_emulated_kvm"),
    "10.2": Stack(
        "10.2", "QEMU v10.2.0", "Linux v6.12",
        board="vmio_edu.qemu_10_2.hw.i386.pc_piix:pc_init1",
        vcpu_thread="vmio_edu.qemu_10_2.accel.kvm.kvm_accel_ops:kvm_vcpu_thread",
        main_loop="vmio_edu.qemu_10_2.system.main:qemu_default_main",
        block_open="vmio_edu.qemu_10_2.block.block_backend:blk_new_open",
        block_close="vmio_edu.qemu_10_2.block.block_backend:blk_unref",
        cleanup="vmio_edu.qemu_10_2.util.main_loop:qemu_cleanup_main_loop",
        kernel="vmio_edu.linux_6_12.virt.kvm.kvm_main:open_emulated_kvm"),
}
ALIASES = {"1.6": "1.6.1", "old": "1.6.1", "10": "10.2", "10.2.0": "10.2", "modern": "10.2"}


def get_stack(name: str | Stack) -> Stack:
    """The Stack called `name` ("1.6.1" or "10.2"), with a clear error for anything else."""
    if isinstance(name, Stack):
        return name
    key = ALIASES.get(str(name), str(name))
    if key not in STACKS:
        raise VmioError(f"unknown stack {name!r}: choose '1.6.1' (QEMU 1.6.1 on Linux 3.7) or '10.2' "
                        "(QEMU 10.2 on Linux 6.12)")
    return STACKS[key]
