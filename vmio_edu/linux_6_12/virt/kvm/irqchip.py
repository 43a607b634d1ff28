"""virt/kvm/irqchip.c (Linux v6.12): `kvm_set_irq`, the generic GSI → irqchip-pin fan-out (irq_comm.c in 3.7)."""
from __future__ import annotations

from vmio_edu.trace.tracepoint import tracepoint


@tracepoint("kvm", args=("kvm", "irq_source_id", "irq", "level", "line_status"))
def kvm_set_irq(kvm, irq_source_id: int, irq: int, level: int, line_status: bool = True) -> int:
    """Drive every pin GSI `irq` is routed to, the last routing entry first. Returns <0 ignored (masked
    everywhere), 0 coalesced, >0 the number of deliveries (irqchip.c:70-97)."""
    ret = -1
    entries = kvm.irq_routing.get(irq, [])  # kvm_irq_map_gsi
    for e in reversed(entries):  # while (i--)
        r = e[2](e, kvm, irq_source_id, level, line_status)
        if r < 0:
            continue
        ret = r + (0 if ret < 0 else ret)
    return ret
