"""Export a recorded run in the Chrome / Perfetto trace-event JSON format (open it at ui.perfetto.dev or
chrome://tracing).

    from vmio_edu.trace.export import to_perfetto, write_perfetto
    doc = to_perfetto(m.trace.events, exits=m.exits)     # a dict: {"traceEvents": [...], ...}
    write_perfetto("run.json", m.trace.events, exits=m.exits)
    # or: vmio-edu trace --export run.json

What goes where:
  * one process (pid 1), one track per model thread (vcpu0, main, worker-1, ...; `thread_name` metadata),
    and one track per QEMU coroutine: a coroutine has a stack of its own and may finish on another thread
    than the one that entered it, so its frames are a track of their own, named after its entry function;
  * every modelled function is a slice: a "B" event at its entry and an "E" at its exit on the same track,
    properly nested; the entry carries the traced arguments, the exit the return value (`result`); the
    category is the layer (guest, vmx, kvm, qemu-cpu, ...). Frames still open when the recording ends (the
    main loop never returns) are closed at the last timestamp;
  * every VM exit that reached QEMU (`kvm_run_exit`) is an instant event ("ph": "i") on the vCPU track,
    named `KVM_EXIT_<reason>`, with reason, direction, port, size, count (and with `exits=` given, the
    data and RIP of the matching `machine.exits` record); the final HLT of a run that halted is one more;
  * other point events (kvm_exit, ide_pio_data, ...) are thread-scoped instants with their fields.

Timestamps are the trace index: event i of the recording is at ts = i (shown as microseconds). The model
has no clock of its own (threads take turns deterministically), so the index is the one time line that is
the same on every run; the slices' widths count trace events, not seconds.
"""
from __future__ import annotations

import json
import os
from typing import Any, Sequence

from ..errors import VmioError
from ..linux.include.uapi.linux import kvm as K
from .tracepoint import REGISTRY

ENTER, LEAVE, POINT = 0, 1, 2
PID = 1


def _arg(v: Any) -> Any:
    return v if isinstance(v, (int, str, float, bool)) or v is None else repr(v)


class _Tracks:
    """Model threads and coroutine stacks, each a track (tid) with a stack of open slices.

    An event's depth is the length of the stack it happened on (with the frame, at an entry). An event
    that does not fit the stack its thread is on now came from another stack: an entry at depth 1 starts
    a coroutine (qemu_coroutine_enter swapped stacks), and any other event finds the open stack it fits,
    the thread's own first (a coroutine yielded or returned) and else a coroutine's (re-entered)."""

    def __init__(self, out: list[dict]) -> None:
        self.out = out
        self.tids: dict[str, int] = {}
        self.stacks: dict[int, list[int]] = {}  # tid -> open trace point ids
        self.coroutines: list[int] = []
        self.current: dict[str, int] = {}  # thread name -> the coroutine track it runs now

    def tid(self, name: str) -> int:
        if name not in self.tids:
            t = len(self.tids) + 1
            self.tids[name] = t
            self.stacks[t] = []
            self.out.append({"ph": "M", "name": "thread_name", "pid": PID, "tid": t, "args": {"name": name}})
            self.out.append({"ph": "M", "name": "thread_sort_index", "pid": PID, "tid": t,
                             "args": {"sort_index": t}})
        return self.tids[name]

    def track(self, thread: str, kind: int, depth: int, tp_id: int) -> int | None:
        own = self.tid(thread)
        cur = self.current.get(thread, own)
        need = depth - 1 if kind == ENTER else depth

        def fits(t: int) -> bool:
            st = self.stacks[t]
            return len(st) == need and (kind == ENTER or (bool(st) and st[-1] == tp_id))

        if fits(cur):
            return cur
        if kind == ENTER and depth == 1:
            c = self.tid(f"coroutine {len(self.coroutines) + 1} ({REGISTRY[tp_id].name})")
            self.coroutines.append(c)
            self.current[thread] = c
            return c
        for t in [own] + self.coroutines:
            if fits(t):
                if t == own:
                    self.current.pop(thread, None)
                else:
                    self.current[thread] = t
                return t
        return cur if kind == ENTER else None


def to_perfetto(events: Sequence, exits: Sequence | None = None, *, title: str = "vmio-edu run") -> dict:
    """The trace-event JSON document (a dict) of a recorded run. See the module doc."""
    out: list[dict] = [{"ph": "M", "name": "process_name", "pid": PID, "args": {"name": title}}]
    tr = _Tracks(out)
    exit_no = 0
    pending_exit: dict | None = None
    n = len(events)
    for i in range(n):
        kind, what, thread, depth, payload = events[i][:5]
        if kind == POINT:
            fields = dict(payload) if payload else {}
            t = tr.current.get(thread) or tr.tid(thread)
            if what == "kvm_run_exit":
                pending_exit = _exit_event(i, tr.tid(thread), fields, exit_no, exits)
                out.append(pending_exit)
                exit_no += 1
            elif what == "guest_pio" and pending_exit is not None:
                a = pending_exit["args"]
                a.setdefault("direction", "in" if fields.get("is_in") else "out")
                for k in ("port", "size", "count"):
                    a.setdefault(k, fields.get(k))
                pending_exit = None
            else:
                out.append({"ph": "i", "s": "t", "name": what, "cat": "event", "pid": PID, "tid": t, "ts": i,
                            "args": {k: _arg(v) for k, v in fields.items()}})
            continue
        tp = REGISTRY[what]
        t = tr.track(thread, kind, depth, what)
        if kind == ENTER:
            tr.stacks[t].append(what)
            args = {name: _arg(v) for name, v in zip(tp.argnames, payload or ())}
            args["layer"] = tp.layer
            args["thread"] = thread
            out.append({"ph": "B", "name": tp.name, "cat": tp.layer, "pid": PID, "tid": t, "ts": i,
                        "args": args})
        elif t is not None:  # (else: an exit whose entry the recording did not see)
            tr.stacks[t].pop()
            out.append({"ph": "E", "pid": PID, "tid": t, "ts": i,
                        "args": {"result": _arg(payload), "thread": thread}})
            if not tr.stacks[t] and tr.current.get(thread) == t:
                tr.current.pop(thread)  # the coroutine returned: back on the thread's own stack
    end = max(n - 1, 0)
    for t, st in tr.stacks.items():
        while st:
            st.pop()
            out.append({"ph": "E", "pid": PID, "tid": t, "ts": end})
    if exits is not None and len(exits) > exit_no and exits[-1].reason == "HLT":
        vcpu = next((name for name in tr.tids if name.startswith("vcpu")), "vcpu0")
        out.append(_exit_event(end, tr.tid(vcpu), {}, len(exits) - 1, exits))
    return {"traceEvents": out, "displayTimeUnit": "ns",
            "otherData": {"timestamps": "trace index (event i at ts=i)", "events": n}}


def _exit_event(i: int, tid: int, fields: dict, n: int, exits: Sequence | None) -> dict:
    reason = fields.get("reason")
    name = K.EXIT_NAMES.get(reason, str(reason)) if reason is not None else None
    args: dict[str, Any] = {"exit": n}
    if exits is not None and n < len(exits):
        rec = exits[n].to_json() if hasattr(exits[n], "to_json") else dict(exits[n])
        args.update({k: _arg(v) for k, v in rec.items()})
        name = name or rec.get("reason")
    args.setdefault("reason", name)
    return {"ph": "i", "s": "t", "name": f"KVM_EXIT_{args['reason']}", "cat": "vm-exit", "pid": PID,
            "tid": tid, "ts": i, "args": args}


def write_perfetto(path: str | os.PathLike, events: Sequence, exits: Sequence | None = None,
                   **kw: Any) -> dict:
    """Write `to_perfetto(...)` to `path` as JSON; returns the document."""
    doc = to_perfetto(events, exits, **kw)
    try:
        with open(path, "w") as f:
            json.dump(doc, f, separators=(",", ":"))
    except OSError as e:
        raise VmioError(f"cannot write the trace export {os.fspath(path)!r}: {e.strerror}") from e
    return doc
