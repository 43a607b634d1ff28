"""What is global in a QEMU process, kept per machine so several machines can share one Python kernel.

Real QEMU keeps these in C globals (`qemu_aio_context`, `address_space_io`, `kvm_state`, the BQL
`qemu_global_mutex`). Inside a model thread, `qemu_state()` returns the running machine's copy.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..trace.tracepoint import current_context


@dataclass
class QemuState:
    sched: Any  # vmio_edu.trace.sched.Scheduler
    aio_context: Any = None  # main-loop.c qemu_aio_context
    address_space_io: Any = None  # exec.c
    address_space_memory: Any = None  # exec.c
    kvm_state: Any = None  # kvm-all.c kvm_state
    bql_owner: str | None = None  # cpus.c qemu_global_mutex: which thread holds it
    shutdown_requested: bool = False  # vl.c main_loop_should_exit
    extra: dict = field(default_factory=dict)
    stack: Any = None  # vmio_edu.stacks.Stack: which versions this machine models (None: 1.6.1)


def qemu_state() -> QemuState:
    """The QEMU globals of the machine whose model thread is running."""
    ctx = current_context()
    if ctx is None or ctx.machine is None:
        raise RuntimeError("qemu_state() called outside a model thread")
    return ctx.machine
