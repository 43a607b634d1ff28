"""The real-KVM tests use the same bare VMM as the kernel-model tests (tests/vmm_harness.py), on /dev/kvm.

Differences are only defaults: IN exits are answered with zeros, and `open_kvm_or_skip` skips a test
with the reason where /dev/kvm can't be opened.
"""
from __future__ import annotations

from typing import Any, Callable

from vmm_harness import CODE, RAM_SIZE, STACK, Exit, Vm, assemble, open_engine  # noqa: F401


def open_kvm_or_skip(sched: Any = None):
    return open_engine("kvm", sched)


class Guest(Vm):
    """VM + 2 MiB of RAM in slot 0 + vCPU 0 on the real /dev/kvm, in `mode` (16, 32 or 64)."""

    def __init__(self, mode: int = 16, irqchip: bool = True, sched: Any = None):
        super().__init__(mode, engine="kvm", irqchip=irqchip, sched=sched)

    def run_until(self, stop_port: int, answer: Callable[[Exit], bytes] | None = None,
                  limit: int = 20000) -> list[Exit]:
        return super().run_until(stop_port, answer or (lambda ex: bytes(ex.count * ex.size)), limit)
