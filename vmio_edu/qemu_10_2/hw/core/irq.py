"""hw/core/irq.c + include/hw/irq.h (QEMU v10.2.0): `qemu_irq`, a wire from a device to its handler.

Unchanged since 1.6.1: the IRQState type and these functions are shared with vmio_edu.qemu.hw.core.irq.
"""
from __future__ import annotations

from ....qemu.hw.core import irq as _irq161
from ....qemu.hw.core.irq import IRQState, qemu_allocate_irqs  # noqa: F401 - the type and its allocator
from ....trace.stacks import unchanged

# The same text at both tags: https://github.com/qemu/qemu/blob/v1.6.1/hw/core/irq.c#L33 and
# https://github.com/qemu/qemu/blob/v10.2.0/hw/core/irq.c#L29
qemu_set_irq = unchanged(_irq161.qemu_set_irq, globals(), layer="qemu-cpu", args=("irq", "level"))
# static inline, the same text: https://github.com/qemu/qemu/blob/v1.6.1/include/hw/irq.h#L12 and
# https://github.com/qemu/qemu/blob/v10.2.0/include/hw/irq.h#L21
qemu_irq_raise = unchanged(_irq161.qemu_irq_raise, globals(), layer="qemu-cpu", args=("irq",))


def qemu_irq_lower(irq: IRQState | None) -> None:
    """static inline (include/hw/irq.h:26), as in 1.6.1: qemu_set_irq(irq, 0)."""
    qemu_set_irq(irq, 0)


def qemu_allocate_irq(handler, opaque, n: int) -> IRQState:
    return IRQState(handler, opaque, n)
