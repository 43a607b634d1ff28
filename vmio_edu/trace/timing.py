"""Where the time goes: exclusive (self) time per layer, measured at trace point entries and exits.

Timing is measurement, not part of the model: it is attached like any other hooks and never changes what
runs. On the real engine the kernel's part arrives as the `KVM_RUN` event (its measured ns) and is shown as
the opaque layer "kvm (real)".
"""
from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

from .tracepoint import ThreadContext, TracePoint


class LayerTimer:
    """Hooks that add up each layer's self time (time inside its functions minus their callees)."""

    def __init__(self) -> None:
        self.ns: dict[str, int] = defaultdict(int)
        self._open: dict[int, list[list]] = {}  # per shadow stack: [layer, start, child_ns]

    def enter(self, tp: TracePoint, args: tuple, ctx: ThreadContext) -> None:
        self._open.setdefault(id(ctx.stack), []).append([tp.layer, time.perf_counter_ns(), 0])

    def leave(self, tp: TracePoint, result: Any, ctx: ThreadContext) -> None:
        frames = self._open.get(id(ctx.stack))
        if not frames:
            return
        layer, start, child = frames.pop()
        total = time.perf_counter_ns() - start
        self.ns[layer] += total - child
        if frames:
            frames[-1][2] += total

    def event(self, name: str, layer: str, fields: dict, ctx: ThreadContext) -> None:
        if name == "KVM_RUN" and "ns" in fields:  # the real kernel's opaque stage
            self.ns["kvm (real)"] += fields["ns"]
            frames = self._open.get(id(ctx.stack))
            if frames:
                frames[-1][2] += fields["ns"]

    def shares(self) -> dict[str, float]:
        total = sum(self.ns.values()) or 1
        return {k: v / total for k, v in sorted(self.ns.items(), key=lambda kv: -kv[1])}
