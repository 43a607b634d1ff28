"""Where the time goes: self time per layer.

The clock is read at every trace point entry and exit and at every handover of the scheduler's baton;
the time since the previous reading goes to the layer of the frame that was running. Time a thread spends
blocked (or a coroutine suspended) is therefore never counted. On the real engine the kernel's part
arrives as the `KVM_RUN` event with its measured ns and is shown as the opaque layer "kvm (real)".
Timing is measurement, not model: it is attached like any other hooks and changes nothing that runs.
"""
from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

from .tracepoint import ThreadContext, TracePoint

OUTSIDE = "(thread loop)"  # time on a model thread outside any trace point


class LayerTimer:
    """Hooks adding up each layer's self time. `attach(sched)` to see handovers too."""

    def __init__(self) -> None:
        self.ns: dict[str, int] = defaultdict(int)
        self._last = time.perf_counter_ns()
        self._layer: str | None = None

    def attach(self, sched: Any) -> "LayerTimer":
        sched.attach(hooks=self)
        sched.switch_listeners.append(self._switch)
        return self

    def _tick(self, next_layer: str | None, minus: int = 0) -> None:
        now = time.perf_counter_ns()
        if self._layer is not None:
            self.ns[self._layer] += max(0, now - self._last - minus)
        self._last, self._layer = now, next_layer

    def enter(self, tp: TracePoint, args: tuple, ctx: ThreadContext) -> None:
        self._tick(tp.layer)

    def leave(self, tp: TracePoint, result: Any, ctx: ThreadContext) -> None:
        below = ctx.stack[-2].tp.layer if len(ctx.stack) > 1 else OUTSIDE
        self._tick(below)

    def event(self, name: str, layer: str, fields: dict, ctx: ThreadContext) -> None:
        if name == "KVM_RUN" and "ns" in fields:
            self.ns["kvm (real)"] += fields["ns"]
            self._tick(self._layer, minus=fields["ns"])

    def _switch(self, thread: Any) -> None:
        nxt = None if thread is None else (thread.ctx.stack[-1].tp.layer if thread.ctx.stack else OUTSIDE)
        self._tick(nxt)

    def shares(self) -> dict[str, float]:
        total = sum(self.ns.values()) or 1
        return {k: v / total for k, v in sorted(self.ns.items(), key=lambda kv: -kv[1])}
