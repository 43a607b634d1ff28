"""hw/core/irq.c (QEMU v1.6.1): `qemu_irq`, a wire from a device to whoever handles the line."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ....trace.tracepoint import tracepoint


@dataclass
class IRQState:
    """One IRQ line: `handler(opaque, n, level)` runs when someone sets it."""

    handler: Callable[[Any, int, int], None]
    opaque: Any
    n: int
    level: int = 0  # not in QEMU's struct; kept so views can show the line

    def __repr__(self) -> str:
        return f"<qemu_irq {getattr(self.handler, '__name__', '?')}[{self.n}]={self.level}>"


def qemu_allocate_irqs(handler: Callable[[Any, int, int], None], opaque: Any, n: int) -> list[IRQState]:
    return [IRQState(handler, opaque, i) for i in range(n)]


@tracepoint("qemu-cpu", args=("irq", "level"))
def qemu_set_irq(irq: IRQState | None, level: int) -> None:
    """Drive the line: call its handler (a NULL irq is ignored, as in QEMU)."""
    if irq is None:
        return
    irq.level = level
    irq.handler(irq.opaque, irq.n, level)


@tracepoint("qemu-cpu", args=("irq",))
def qemu_irq_raise(irq: IRQState | None) -> None:
    qemu_set_irq(irq, 1)


def qemu_irq_lower(irq: IRQState | None) -> None:
    qemu_set_irq(irq, 0)
