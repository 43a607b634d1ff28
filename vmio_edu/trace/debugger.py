"""The debugger: breakpoints, step / next / finish / continue, and time travel, over a `Machine`.

    from vmio_edu import Machine
    m = Machine()
    dbg = m.debugger()                 # before m.run(): time travel replays from the start
    dbg.break_at("ide_sector_write")   # by function; or layer="qemu-block"; condition=lambda stop: ...
    stop = dbg.cont()                  # to a breakpoint, or to the end (stop.reason == "halted")
    stop.function, stop.layer, stop.thread, stop.index, stop.backtrace, stop.views
    dbg.step(); dbg.next(); dbg.finish(); dbg.back(); dbg.goto(i)

How it works. The model's threads report every trace point entry, exit and point event to the hooks the
debugger attaches (on the model thread that runs). The hooks append the event to the recorded trace and
decide whether to stop, at a cost only where a stop is possible (see `_Hooks`: during a `cont` into new
ground an event no breakpoint can match is only counted, and reading `dbg.events` fills it in from a
recording replay, vmio_edu.trace.timetravel); stopping is `sched.park()`: the model thread hands the baton to the caller's
thread and waits, so every other model thread is stopped too (all-stop). `stop.index` is the position of
the event in the recorded trace (`dbg.events`). A Stop at index i is the state right after event i was
recorded (for an entry: the frame is pushed, its body not yet run; for an exit: the body has run, the frame
is not yet popped). Index -1 is the machine before it ran; the "halted" stop has index len(events).

Commands (each returns a `Stop` and makes it `dbg.stop`):
  step    the next trace point entry or exit, on any thread
  next    the next entry or exit at the same or a shallower depth on the same stack (a coroutine has a
          stack of its own, so `next` follows it from the vCPU thread to the main loop)
  finish  until the current frame returns (at an exit: until the caller returns)
  cont    until a breakpoint is hit or the guest halts
  goto(i), back()   time travel: the exact state at index i (back: the previous entry or exit)
A breakpoint hit stops `step`/`next`/`finish` too, as in gdb. Ctrl-C during any of them parks the model
at its next trace point and returns a Stop with reason "interrupted"; a condition that raises returns a
Stop with reason "condition-error" and the message. The machine stays usable after both.

Time travel (goto/back: checkpoints, deterministic replay, the image's redo log) lives beside this module
in vmio_edu.trace.timetravel; `Debugger` inherits it from `TimeTravel`.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from ..errors import VmioError
from ..linux.include.uapi.linux import kvm as K
from .backtrace import BtFrame, backtrace, show_value
from .events import _WIDE, HOLE, EventStore
from .recorder import (ENTER, LEAVE, POINT, Recorder, _args_ref, _kept, _result_ref, _shape_ref, _small,
                       _unhashable_ref)
from .tracepoint import LAYERS, REGISTRY, ThreadContext, TracePoint, by_name, untraced
from .timetravel import CHECKPOINT_EVERY, QUIESCE_LIMIT, TimeTravel  # noqa: F401 (re-exported)
from .views import Views

if TYPE_CHECKING:
    from ..machine import Machine

KIND_NAMES = {ENTER: "enter", LEAVE: "leave", POINT: "event"}
# Real engine: kicks of a spinning KVM_RUN kept inside the engine before it returns to QEMU's loop.
KVM_SPIN_KICKS = 64


# modes of a run
_CONT, _STEP, _NEXT, _FINISH, _SILENT, _QUIESCE = "cont", "step", "next", "finish", "silent", "quiesce"


# ==========================================================================================================
# Breakpoints and stops
# ==========================================================================================================
@dataclass(eq=False)
class Breakpoint:
    """Stop on entry to `function` (any layer, or only `layer`), to any function of `layer`, or, with only
    a condition, to any function. `condition(stop) -> bool` decides at each hit (it may read stop.views)."""

    number: int
    function: str | None = None
    layer: str | None = None
    condition: Callable[["Stop"], bool] | None = None
    enabled: bool = True
    hits: int = 0

    def matches(self, tp: TracePoint) -> bool:
        return (self.enabled and (self.function is None or tp.name == self.function)
                and (self.layer is None or tp.layer == self.layer))

    def to_json(self) -> dict:
        return {"number": self.number, "function": self.function, "layer": self.layer,
                "condition": getattr(self.condition, "__name__", "condition") if self.condition else None,
                "enabled": self.enabled, "hits": self.hits}

    def __str__(self) -> str:
        parts = [self.function or ""] + ([f"layer={self.layer}"] if self.layer else [])
        if self.condition is not None:
            parts.append("if " + getattr(self.condition, "__name__", "condition"))
        return f"{self.number}: " + " ".join(p for p in parts if p)


@dataclass(eq=False)
class Stop:
    """Where the debugger stopped, and why.

    reason:   "breakpoint", "step", "next", "finish", "goto", "back", "halted", "end" (a command after the
              halt: the run is over), "interrupted",
              "condition-error", "start" (before the first command), "error" (the model failed)
    index:    the position of the event in the recorded trace (-1: not started; len(events): halted)
    kind:     "enter", "leave" or "event" (a point event, reached by goto); None at start / halted
    function, layer, thread, depth: the trace point and where it ran (depth: frames on its stack)
    args:     the declared arguments at an entry, the fields of a point event; result: the value at an exit
    backtrace: frames, innermost first (`BtFrame`: .function .args .file .line .layer .thread)
    breakpoint: the Breakpoint hit, if any; message: why it stopped, in words (errors, interrupts)
    views:    the state views (vmio_edu.trace.views), computed when read
    summary:  at the halt, what the run did and whether it succeeded (vmio_edu.trace.ends)
    reference: one line of Python that reaches this moment in a fresh machine (vmio_edu.trace.share)
    """

    reason: str
    index: int
    kind: str | None = None
    function: str | None = None
    layer: str | None = None
    thread: str | None = None
    depth: int = 0
    args: dict = field(default_factory=dict)
    result: Any = None
    backtrace: list[BtFrame] = field(default_factory=list)
    breakpoint: Breakpoint | None = None
    message: str | None = None
    _views: Views | None = field(default=None, repr=False)
    _stack: Any = field(default=None, repr=False)  # identity of the stack it stopped on (next/finish)
    summary: dict | None = None
    _ref: str | None = field(default=None, repr=False)  # `Machine(...)` of the run (share.machine_call)
    guest: dict | None = None  # at a guest stop (kind "guest"): rip, label, insn, position, regs

    @property
    def reference(self) -> str | None:
        from .share import reference
        return reference(self._ref, self.index, self.guest["position"] if self.guest else None)

    @property
    def views(self) -> Views:
        if self._views is None:
            raise VmioError("this stop has no views")
        return self._views

    @property
    def file(self) -> str:
        return self.backtrace[0].file if self.backtrace else ""

    @property
    def line(self) -> int | None:
        return self.backtrace[0].line if self.backtrace else None

    def to_json(self, views: bool | tuple | list = False) -> dict:
        """Plain data; `views=True` adds every view, or give a list of view names."""
        out = {"reason": self.reason, "index": self.index, "kind": self.kind, "function": self.function,
               "layer": self.layer, "thread": self.thread, "depth": self.depth, "file": self.file,
               "line": self.line, "args": dict(self.args), "result": self.result,
               "breakpoint": self.breakpoint.number if self.breakpoint else None, "message": self.message,
               "backtrace": [f.to_json() for f in self.backtrace], "reference": self.reference,
               "summary": self.summary, "guest": self.guest}
        if views:
            out["views"] = self.views.to_json(None if views is True else list(views))
        return out

    def __str__(self) -> str:
        if self.function is None:
            return f"[{self.index}] {self.reason}" + (f": {self.message}" if self.message else "")
        where = f" at {self.file}:{self.line}" if self.file else ""
        return (f"[{self.index}] {self.reason}: {self.kind} {self.function} ({self.layer}, thread "
                f"{self.thread}){where}" + (f" - {self.message}" if self.message else ""))


# ==========================================================================================================
# The hooks attached to one machine's threads
# ==========================================================================================================
class _Hooks(Recorder):
    """Record each event (the recorder's packed columns), then let the debugger decide whether to stop.

    Deciding costs nothing for most events, the way gdb plants int3 only at breakpoint addresses: an event
    goes to `Debugger._on_event` only if its trace point is *armed* (a breakpoint could match it, or time
    travel watches it: KVM_RUN entries for checkpoints, host writes for the image's redo log), if the run
    must stop at an index (`fast_until`: step, next and finish stop anywhere; a replay stops at its
    target), if Ctrl-C asked to park, or if it replays a part of the history (`known_until`) and differs
    from it (the replay diverged). Past the known history the debugger copies the new events into its
    history when the run stops (`Debugger._sync_history`), in one go."""

    def __init__(self, dbg: "Debugger", sched: Any) -> None:
        super().__init__(EventStore(share=dbg._history))
        self.dbg, self.sched = dbg, sched
        self.rec = self  # (the recorder of the current machine: dbg.trace)
        self.armed: frozenset[int] = frozenset()  # trace point ids whose entries go to _on_event
        self.armed_leave: frozenset[int] = frozenset()  # and whose exits do
        self.fast_until = -1  # below this index an unarmed event needs no decision (set by _go)
        self.known_until = 0  # events below this index replay the history: each is checked against it
        self.sync = True  # copy new events into the history when the run stops (not a halt kick's)

    def enter(self, tp: TracePoint, args: tuple, ctx: ThreadContext) -> None:
        sched = self.sched
        if sched.closing:
            return
        words = self.events.words
        if len(words) >= self.count_from and tp.id not in self.armed and not sched.park_requested:
            words.append(HOLE)  # counted, not recorded (a cont into new ground: see Debugger)
            return
        # Recorder.enter, inlined (it runs for every traced call)
        if args:
            shape = self._unhashable.get(tp.id)
            if shape is not None and shape == tuple(map(type, args)):
                ref = _shape_ref(self, args)
            else:
                try:
                    ref = self._refs.get(args) or _args_ref(self, args)
                except (TypeError, ValueError):  # unhashable (a writable memoryview raises ValueError)
                    ref = _unhashable_ref(self, tp, args)
        else:
            ref = 0
        depth = len(ctx.stack)
        tb = ctx.tbits
        words = self.events.words
        if tb < 0 or depth > 255:
            self.events.append_event((ENTER, tp.id, ctx.name, depth, _kept(args)))
        else:
            words.append(tp.bits | tb | depth << 24 | ref << 32)
        i = len(words) - 1
        if i < self.fast_until and tp.id not in self.armed and not sched.park_requested and \
                (i >= self.known_until or self._known(i)):
            return
        self.dbg._on_event(self, i, ENTER, tp, tp.name, tp.layer, args, ctx)

    def leave(self, tp: TracePoint, result: Any, ctx: ThreadContext) -> None:
        sched = self.sched
        if sched.closing:
            return
        words = self.events.words
        if len(words) >= self.count_from and tp.id not in self.armed_leave and not sched.park_requested:
            words.append(HOLE)
            return
        # Recorder.leave, inlined
        # (_result_ref inlined for the common cases)
        if result is None:
            ref = 0
        else:
            t = type(result)
            if t is int or t is str:
                ref = self._refs.get(result) or _result_ref(self, result)
            elif t is bool:
                ref = 1 + result
            else:
                ref = _result_ref(self, result)
        depth = len(ctx.stack)
        tb = ctx.tbits
        words = self.events.words
        if tb < 0 or depth > 255:
            self.events.append_event((LEAVE, tp.id, ctx.name, depth, _small(result)))
        else:
            words.append(tp.bits | 1 | tb | depth << 24 | ref << 32)
        i = len(words) - 1
        if i < self.fast_until and tp.id not in self.armed_leave and not sched.park_requested and \
                (i >= self.known_until or self._known(i)):
            return
        self.dbg._on_event(self, i, LEAVE, tp, tp.name, tp.layer, result, ctx)

    def event(self, name: str, layer: str, fields: dict, ctx: ThreadContext) -> None:
        sched = self.sched
        if sched.closing:
            return
        words = self.events.words
        if len(words) >= self.count_from and not sched.park_requested:
            words.append(HOLE)
            return
        Recorder.event(self, name, layer, fields, ctx)
        i = len(self.events) - 1
        if i < self.fast_until and not sched.park_requested and (i >= self.known_until or self._known(i)):
            return
        self.dbg._on_event(self, i, POINT, None, name, layer, fields, ctx)

    def _known(self, i: int) -> bool:
        """Event i replays the history (or is new): is it the same event there? False if it differs (the
        replay diverged: `_on_event` deals with it). A new event is copied when the run stops."""
        if i >= self.known_until:
            return True
        hist = self.dbg._history
        hw, w = hist.words, self.events.words[i]
        if hw[i] == HOLE:  # counted, not recorded, when the run went there first: this replay fills it
            if w & 3 == _WIDE:
                hist.put(i, self.events[i])
            else:
                hw[i] = w
            return True
        if w & 3 == _WIDE or hw[i] & 3 == _WIDE:  # (rare: an event too big for a word)
            return hist[i][:4] == self.events[i][:4]
        if (hw[i] ^ w) & 0xFFFFFFFF:
            return False
        hw[i] = w  # the same event; the payload as this run has it
        return True


# ==========================================================================================================
# The debugger
# ==========================================================================================================
def _not_on_this_machine(m: Any, function: str, stack: str | None, found: list) -> str | None:
    """A real function this machine never runs (a kernel function under real KVM, a virtio function on
    the IDE board): say why, instead of 'no modelled function' or a breakpoint that is never hit."""
    from .sources import lookup
    engine, disk = getattr(m, "engine", None), getattr(m, "disk", None)
    kernel = lookup("linux", function, stack or "1.6.1")
    # on the real engine the host's syscalls (layer "host": QEMU's pwrite) are still modelled; KVM is not
    in_kvm = all(tp.side == "linux" and tp.layer != "host" for tp in found) if found else \
        kernel is not None and kernel.file.startswith(("arch/x86/kvm/", "virt/kvm/"))
    if kernel is not None and engine == "kvm" and in_kvm:
        return (f"{function!r} ({kernel.file}:{kernel.line}) runs inside the real kernel on engine 'kvm', "
                "where the model cannot stop; use engine='unicorn' to step the modelled kernel")
    ref = lookup("qemu", function, stack or "1.6.1")
    if ref is not None and disk == "ide" and ref.file.startswith(("hw/virtio/", "hw/block/virtio", "hw/pci")):
        return (f"{function!r} ({ref.file}:{ref.line}) is on the virtio-blk path, and this machine's disk is "
                "IDE; build it with disk='virtio' to stop there")
    return None


# names to try, per stack, when a breakpoint names no modelled function and nothing is close
_EXAMPLES = {"1.6.1": "bdrv_aio_writev, ide_sector_write, paio_submit, kvm_handle_io",
             "10.2": "blk_aio_pwritev, ide_sector_write, raw_co_prw, kvm_handle_io"}


def _on_the_other_stack(function: str, stack: str | None) -> str:
    """': it is a 1.6.1 function ...' when `function` is modelled on the other stack only (a 1.6.1 name on a
    10.2 machine, or the reverse), else ''. Read from the source maps, which know modules not loaded yet."""
    from .sources import lookup
    if stack == "10.2":
        ref = lookup("qemu", function, "1.6.1") or lookup("linux", function, "1.6.1")
        if ref is None:
            return ""
        virtio = ref.file.startswith(("hw/virtio/", "hw/block/virtio", "hw/pci", "virt/kvm/eventfd"))
        return (f": it is modelled on the 1.6.1 stack ({ref.file}:{ref.line})"
                + ("; virtio-blk and ioeventfd are modelled on the 1.6.1 stack only" if virtio else ""))
    if stack == "1.6.1" and lookup("qemu", function, "1.6.1") is None and \
            lookup("linux", function, "1.6.1") is None:
        ref = lookup("qemu", function, "10.2") or lookup("linux", function, "10.2")
        if ref is not None:  # a 10.2 name the 1.6.1 map does not know
            return f": it is modelled on the 10.2 stack ({ref.file}:{ref.line}; stack='10.2', --stack 10.2)"
    return ""


class Debugger(TimeTravel):
    """See the module docstring. Make one with `Machine.debugger()`."""

    def __init__(self, machine: "Machine") -> None:
        m = machine
        m._check_open()
        if m.last is not None or m.sched.ticks or (m.trace is not None and m.trace.events):
            raise VmioError("create the debugger before running the machine (m.debugger() first, then "
                            "dbg.cont()): time travel replays the run from its start")
        self.machine = m
        self._config = dict(m._config, engine=m.engine, image=m.image_path, record=False)
        self._init_time_travel(m)
        self._history = EventStore()  # the longest known trace (the future too, after a goto back)
        self._history.filler = self._fill_history
        # Record little: a cont into new ground counts events instead of recording them, unless the
        # machine was made with record=True (see _Hooks and TimeTravel._fill_history)
        self._count_only = not m._config.get("record", False)
        self._complete = False  # the history reaches the halt
        self._diverged_at: int | None = None
        self._breakpoints: list[Breakpoint] = []
        self._bp_numbers = 0
        self._bp_any = False
        self._bp_names: set[str] = set()
        self._bp_layers: set[str] = set()
        self._gen = 0  # bumped whenever the model moves: stops of older generations are stale
        self._mode: str | None = None
        self._reason = ""
        self._target = -1
        self._target_stack: Any = None
        self._target_depth = 0
        self._target_thread: str | None = None
        self._hooks: _Hooks | None = None
        from .guest_stops import GuestStops
        from .share import machine_call
        self._ref_prefix = machine_call(m)
        self._guest = GuestStops(self)
        self._attach()
        self.stop: Stop = self._plain_stop("start", -1)

    # -- breakpoints ------------------------------------------------------------------------------------
    def break_at(self, function: str | None = None, *, layer: str | None = None,
                 condition: Callable[[Stop], bool] | None = None, guest_label: str | None = None,
                 guest_addr: int | None = None) -> Breakpoint:
        """Add a breakpoint on entry to `function`, to any function of `layer`, or (condition only) to
        any function where `condition(stop)` is true; or on a guest instruction, by its label in the
        guest's assembly or its address (vmio_edu.trace.guest_stops)."""
        if guest_label is not None or guest_addr is not None:
            if function is not None or layer is not None or condition is not None:
                raise VmioError("a guest breakpoint takes guest_label= or guest_addr= alone")
            return self._guest.break_at(guest_label, guest_addr)  # type: ignore[return-value]
        if layer is not None and layer not in LAYERS:
            raise VmioError(f"unknown layer {layer!r}: choose one of {', '.join(LAYERS)}")
        if function is not None:
            if not isinstance(function, str):
                raise VmioError(f"break_at takes a function name, not {type(function).__name__}")
            stack = getattr(getattr(self.machine, "stack", None), "name", None)
            found = by_name(function, layer, stack)
            why = _not_on_this_machine(self.machine, function, stack, found)
            if why:
                raise VmioError(why)
            if not found:
                near = difflib.get_close_matches(
                    function, sorted({tp.name for tp in REGISTRY if stack in (None, tp.stack)}), n=3)
                hint = f" (did you mean {', '.join(near)}?)" if near else \
                    f" (try e.g. {_EXAMPLES.get(stack or '1.6.1', _EXAMPLES['1.6.1'])})"
                where = (f" in layer {layer}" if layer else "") + (f" in the {stack} stack" if stack else "")
                raise VmioError(f"no modelled function is called {function!r}{where}"
                                f"{_on_the_other_stack(function, stack)}{hint}")
        if function is None and layer is None and condition is None:
            raise VmioError("break_at needs a function, a layer or a condition")
        if condition is not None and not callable(condition):
            raise VmioError("condition must be a callable taking the Stop and returning a bool")
        self._bp_numbers += 1
        bp = Breakpoint(self._bp_numbers, function, layer, condition)
        self._breakpoints.append(bp)
        self._index_breakpoints()
        return bp

    def delete(self, bp: "Breakpoint | int") -> None:
        """Remove a breakpoint (the object or its number)."""
        for b in self._breakpoints:
            if b is bp or b.number == bp:
                self._breakpoints.remove(b)
                self._index_breakpoints()
                self._guest._sync()  # (a guest breakpoint's hook goes)
                return
        raise VmioError(f"no breakpoint {bp}")

    def clear(self) -> None:
        """Remove every breakpoint."""
        self._breakpoints.clear()
        self._index_breakpoints()
        self._guest._sync()

    @property
    def breakpoints(self) -> list[Breakpoint]:
        return list(self._breakpoints)

    def _index_breakpoints(self) -> None:
        live = [b for b in self._breakpoints if b.enabled]
        self._bp_any = any(b.function is None and b.layer is None for b in live)
        self._bp_names = {b.function for b in live if b.function is not None}
        self._bp_layers = {b.layer for b in live if b.function is None and b.layer is not None}

    # -- the trace ----------------------------------------------------------------------------------------
    @property
    def events(self) -> list[tuple]:
        """The recorded trace as far as it is known (after a goto back, the future seen before too).
        Events are `Event(kind, what, thread, depth, payload)` named tuples (vmio_edu.trace.events)."""
        self._sync_history()
        return self._history

    @property
    def trace(self) -> Recorder:
        """The recorder of the current machine: the events up to where the machine is now."""
        return self._hooks.rec

    @property
    def index(self) -> int:
        return self.stop.index

    def provenance(self, *, image_offset: int | None = None, guest_addr: int | None = None,
                   io_buffer_offset: int | None = None, kvm_run_offset: int | None = None,
                   op: str | None = None) -> list[dict]:
        """The journey of one byte, hop by hop, as recorded so far (vmio_edu.trace.provenance); an
        io_buffer or kvm_run byte as it is at the current stop."""
        from .provenance import provenance
        at = min(self.stop.index, len(self.events) - 1)
        return provenance(self.events, image_offset=image_offset, guest_addr=guest_addr,
                          io_buffer_offset=io_buffer_offset, kvm_run_offset=kvm_run_offset, op=op, at=at,
                          disk=getattr(self.machine, "disk", None))

    # -- commands ---------------------------------------------------------------------------------------
    def cont(self) -> Stop:
        """Run to the next breakpoint hit, or until the guest halts."""
        return self._go(_CONT, "breakpoint")

    def step(self) -> Stop:
        """The next trace point entry or exit, on any thread."""
        return self._go(_STEP, "step")

    def next(self) -> Stop:
        """The next entry or exit at the same or a shallower depth, on the same stack."""
        s = self.stop
        if s._stack is None:
            return self._go(_STEP, "next")
        # At an entry or exit, the stopped frame's depth; at a point event inside a frame, one deeper
        # (like a line of that function: its next callee or its return).
        depth = s.depth + 1 if s.kind not in ("enter", "leave") else s.depth
        return self._go(_NEXT, "next", stack=s._stack, depth=depth)

    def finish(self) -> Stop:
        """Until the current frame returns (at an exit: until its caller returns)."""
        s = self.stop
        if s._stack is None:
            return self._go(_STEP, "finish")
        depth = s.depth - 1 if s.kind == "leave" else s.depth
        if depth <= 0:  # the outermost frame of its thread or coroutine: nothing to return to
            return self._go(_STEP, "finish")
        return self._go(_FINISH, "finish", stack=s._stack, depth=depth)

    def stepi(self) -> Stop:
        """The next guest instruction (vmio_edu.trace.guest_stops); a breakpoint on the way stops first."""
        return self._guest.stepi()

    def goto(self, index: int, guest: tuple | None = None) -> Stop:
        """The exact state at `index` of the trace (-1: before the first event; len(events) when the run
        is complete: the halted state). Forward from here it runs on; backward it replays. With `guest`
        (a guest stop's stop.guest["position"]): that guest instruction in the VM entry after `index`."""
        if guest is not None:
            return self._guest.goto(index, guest)
        if not isinstance(index, int) or isinstance(index, bool):
            raise VmioError(f"goto takes a trace index (an int), not {index!r}")
        n = len(self._history)
        if index < -1 or (self._complete and index > n):
            top = f"{n} (halted)" if self._complete else "the end of the run"
            raise VmioError(f"trace index {index} is out of range: -1 (start) .. {top}")
        return self._goto(index, "goto")

    def back(self) -> Stop:
        """The previous trace point entry or exit (time travel)."""
        i = min(self.stop.index, len(self._history))
        j = i - 1
        while j >= 0 and self._history[j][0] == POINT:
            j -= 1
        return self._goto(max(j, -1), "back")  # before the first event: the start

    def close(self) -> None:
        """Close the machine and drop the copy of the image kept for time travel (closing the machine
        does both too) and the checkpoints."""
        self.machine.close()
        self._finalizer()
        self._checkpoints, self._cp_index, self._exit_log, self._writes = [], [], [], []

    @property
    def checkpoints(self) -> list[int]:
        """The trace indices where the machine's state is saved (both engines; see vmio_edu.trace.timetravel)."""
        return list(self._cp_index)

    def __enter__(self) -> "Debugger":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- state checks (tests, and the checkpoint work to come) --------------------------------------------
    def panel(self):
        """The JupyterLab debugger panel for this debugger (vmio_edu.widgets.DebuggerPanel)."""
        from ..widgets import DebuggerPanel
        return DebuggerPanel(self)

    def state_digest(self) -> dict:
        """A summary of the whole state, equal for equal states: registers, guest RAM, kvm_run, device,
        block, thread-pool, coroutine and thread state, the exits so far and the image bytes."""
        import hashlib

        from . import views as V

        m = self.machine
        with V._Quiet():
            return {
                "index": self.stop.index,
                "regs": V.peek_regs(m),
                "ram_sha256": hashlib.sha256(bytes(m.ram)).hexdigest(),
                "kvm_run": V.kvm_run_view(m),
                "ide": V.ide_view(m),
                "thread_pool": _without_fds(V.thread_pool_view(m)),
                "aio": _without_fds(V.aio_view(m)),
                "coroutines": V.coroutines_view(m),
                "threads": V.threads_view(m),
                "block": _without_fds(V.block_view(m)),
                "exits": [x.to_json() for x in m.exits],
                "image_sha256": V.file_sha256(m.image_path),
            }

    # ======================================================================================================
    # Internals
    # ======================================================================================================
    def _attach(self) -> None:
        m = self.machine
        if m.engine == "kvm" and hasattr(m.cpu.kvm_fd, "spin_kick_limit"):
            m.cpu.kvm_fd.spin_kick_limit = KVM_SPIN_KICKS
        self._hooks = _Hooks(self, m.sched)
        self._hooks.events.filler = self._fill_history
        m.trace = self._hooks.rec
        m.sched.attach(hooks=self._hooks)
        # (after a restore the kernel refused, checkpoints stay off: replays start from the start)
        self._checkpointing = self._can_checkpoint(m) and getattr(self, "restore_error", None) is None
        self._guest.attach(m)

    def _views_here(self) -> Views:
        """Views of the machine as it is now, valid while it stays here (same generation, no new event)."""
        gen, pos = self._gen, self._position()
        return Views(lambda: self.machine, self._pristine,
                     lambda: self._gen == gen and self._position() == pos)

    def _position(self) -> int:
        return len(self._hooks.rec.events) if self._hooks is not None else -1

    def _plain_stop(self, reason: str, index: int, message: str | None = None) -> Stop:
        return Stop(reason, index, message=message,
                    _views=self._views_here(), _ref=self._ref_prefix)

    def _make_stop(self, reason: str, index: int, kind: int, name: str, layer: str, payload: Any,
                   tp: TracePoint | None, ctx: ThreadContext, bp: Breakpoint | None = None,
                   message: str | None = None) -> Stop:
        bt = backtrace(ctx.stack, ctx.name, ctx.machine)
        if kind == ENTER and tp is not None:  # the live frame's arguments, pointers as addresses
            args, result = dict(bt[0].args) if bt and bt[0].function == tp.name else \
                {n: show_value(v) for n, v in zip(tp.argnames, payload)}, None
        elif kind == LEAVE:
            args, result = {}, show_value(payload) if not isinstance(payload, BaseException) else repr(payload)
        else:
            args = {k: v for k, v in (payload or {}).items() if isinstance(v, (int, str, bool))}
            result = None
        return Stop(reason, index, KIND_NAMES[kind], name, layer, ctx.name, len(ctx.stack), args, result,
                    bt, bp, message,
                    _views=self._views_here(),
                    _stack=ctx.stack, _ref=self._ref_prefix)

    def _sync_history(self) -> None:
        """Copy the events this machine recorded past the known history into it (see `_Hooks`)."""
        h = self._hooks
        if h is None or not h.sync:
            return
        k, n = len(self._history), len(h.events)
        if n > k:
            self._history.extend_from(h.events, k, n)

    def _arm(self, mode: str, target: int) -> None:
        """Which events the hooks send to `_on_event` during this run (see `_Hooks`): a `cont` only those
        of trace points a breakpoint can match or time travel watches; a silent replay those too, and the
        events from its target on; step, next, finish and quiesce every event."""
        h = self._hooks
        if h is None:
            return
        self._sync_history()
        h.known_until = len(self._history)
        h.sync = True
        live = [b for b in self._breakpoints if b.enabled]
        # breakpoints stop at entries; checkpoints are taken at KVM_RUN entries; the redo log keeps
        # what a host write wrote when it returns; the halt's summary counts the bytes of the host reads
        # and writes from their exits, so those are recorded even where a cont only counts
        watched = {self._run_tp.id} if self._checkpointing else set()
        h.armed = frozenset(watched | {tp.id for tp in REGISTRY if any(b.matches(tp) for b in live)})
        h.armed_leave = frozenset(tp.id for tp in self._write_tps + self._read_tps)
        h.count_from = 1 << 62
        if mode == _CONT and not self._bp_any:
            h.fast_until = 1 << 62
            if self._count_only:
                # record little: count the events of new ground; a reader of dbg.events gets them from a
                # recording replay (_fill_history)
                h.count_from = h.known_until
                h.events.unfilled = self._history.unfilled = True
        elif mode == _SILENT:
            h.fast_until = target
        else:
            h.fast_until = -1

    # -- on the model thread --------------------------------------------------------------------------------
    def _on_event(self, hooks: _Hooks, i: int, kind: int, tp: TracePoint | None, name: str, layer: str,
                  payload: Any, ctx: ThreadContext) -> None:
        if hooks is not self._hooks:
            return  # a machine being closed
        if not hooks._known(i):  # not the run seen before (the machine was changed by hand?)
            self._history.truncate(i)
            hooks.known_until = i  # (from here on the events are new: copied when the run stops)
            self._complete = False
            if self._diverged_at is None:
                self._diverged_at = i
            self._forget_future(i)

        quiet = False
        if tp is self._run_tp:
            if kind == ENTER and payload and payload[tp.argnames.index("type")] == K.KVM_RUN and \
                    self._checkpointing:
                quiet = self._at_kvm_run(i)
        elif kind == LEAVE and any(tp is w for w in self._write_tps):
            self._log_write(i, payload, ctx)

        sched = hooks.sched
        mode = self._mode
        stop: Stop | None = None
        if sched.park_requested:  # Ctrl-C, or vm_stop
            sched.park_requested = False
            stop = self._make_stop("interrupted", i, kind, name, layer, payload, tp, ctx,
                                   message="interrupted (Ctrl-C)")
        elif mode == _SILENT:
            if i >= self._target:
                stop = self._make_stop(self._reason, i, kind, name, layer, payload, tp, ctx)
        elif mode == _QUIESCE:
            if quiet or i >= self._target:
                stop = self._make_stop(self._reason, i, kind, name, layer, payload, tp, ctx)
        elif kind != POINT:
            if kind == ENTER and (self._bp_any or name in self._bp_names or layer in self._bp_layers):
                stop = self._check_breakpoints(i, kind, name, layer, payload, tp, ctx)
            if stop is None:
                if mode == _STEP:
                    stop = self._make_stop(self._reason, i, kind, name, layer, payload, tp, ctx)
                elif mode in (_NEXT, _FINISH):
                    target = self._target_stack
                    if ctx.stack is target:
                        self._target_thread = ctx.name
                        hit = (mode == _NEXT or kind == LEAVE) and len(ctx.stack) <= self._target_depth
                    else:
                        # A coroutine that returned from its entry function: go on in whoever entered it
                        # (the next event on the thread that ran it last), as gdb returns to the caller.
                        hit = not target and ctx.name == self._target_thread
                    if hit:
                        stop = self._make_stop(self._reason, i, kind, name, layer, payload, tp, ctx)
        if stop is not None:
            sched.park(stop)

    def _check_breakpoints(self, i: int, kind: int, name: str, layer: str, payload: Any, tp: TracePoint,
                           ctx: ThreadContext) -> Stop | None:
        for bp in self._breakpoints:
            if not bp.matches(tp):
                continue
            stop = self._make_stop("breakpoint", i, kind, name, layer, payload, tp, ctx, bp=bp)
            if bp.condition is not None:
                try:
                    with untraced(ctx):  # nothing the condition calls becomes a trace event
                        ok = bool(bp.condition(stop))
                except Exception as e:  # noqa: BLE001 - reported in the Stop, the model carries on
                    stop.reason = "condition-error"
                    stop.message = (f"the condition of breakpoint {bp.number} raised "
                                    f"{type(e).__name__}: {e}")
                    return stop
                if not ok:
                    continue
            bp.hits += 1
            return stop
        return None

    # -- on the caller's thread -------------------------------------------------------------------------------
    def _go(self, mode: str, reason: str, stack: Any = None, depth: int = 0, target: int = -1) -> Stop:
        m = self.machine
        m._check_open()
        if self.stop.reason == "halted":
            return self.stop if mode in (_SILENT, _QUIESCE) else self._past_end()
        if self.stop.reason == "error" or m.sched.error is not None:
            raise VmioError("the model failed at this point (see the error); go back with dbg.back() or "
                            "dbg.goto(i) to a point before it")
        self._mode, self._reason = mode, reason
        self._target_stack, self._target_depth, self._target = stack, depth, target
        self._target_thread = self.stop.thread
        self._gen += 1
        self._arm(mode, target)
        sched = m.sched
        try:
            try:
                parked = sched.resume()
            except KeyboardInterrupt:
                parked = m._wait_after_interrupt()
        finally:
            self._mode, self._target_stack = None, None
            if self._hooks is not None:
                self._hooks.fast_until = -1
                self._hooks.count_from = 1 << 62
                self._sync_history()
        sched.park_requested = False
        try:
            m._finish_run(parked)
        except VmioError as e:
            self.stop = self._plain_stop("error", len(self._hooks.rec.events) - 1, f"{type(e).__name__}: {e}")
            raise
        if parked.reason == "idle":
            self._complete = True
            self.stop = self._halted_stop(len(self._hooks.rec.events))
        elif parked.reason == "stop" and isinstance(parked.detail, Stop):
            self.stop = parked.detail
        else:  # parked at a vCPU tick (Ctrl-C seen by the scheduler first)
            self.stop = self._stop_at_tick(parked)
        return self.stop

    def _halted_stop(self, index: int) -> Stop:
        from .ends import halted_message, run_summary
        summary = run_summary(self.machine, self._history)
        stop = self._plain_stop("halted", index, halted_message(summary))
        stop.summary = summary
        return stop

    def _past_end(self) -> Stop:
        """A command after the halt: a Stop saying the run is over (dbg.stop stays the halted stop)."""
        from .ends import past_end_message
        h = self.stop
        return Stop("end", h.index, message=past_end_message(h.index), summary=h.summary, _views=h._views,
                    _ref=h._ref)

    def _stop_at_tick(self, parked: Any) -> Stop:
        sched = self.machine.sched
        t = sched._parked or (sched._by_name(parked.thread) if parked.thread else None)
        i = len(self._hooks.rec.events) - 1
        if t is None:
            return self._plain_stop("interrupted", i, "interrupted (Ctrl-C)")
        ctx = t.ctx
        top = ctx.stack[-1] if ctx.stack else None
        return Stop("interrupted", i, "event", top.tp.name if top else None, top.tp.layer if top else None,
                    t.name, len(ctx.stack), {}, None, backtrace(ctx.stack, t.name, ctx.machine), None,
                    "interrupted (Ctrl-C) while the vCPU was about to re-enter KVM_RUN",
                    _views=self._views_here(),
                    _stack=ctx.stack)


_FD_KEYS = {"fd", "aio_fildes", "rfd", "wfd"}


def _without_fds(v: Any) -> Any:
    """A view without host file descriptor numbers (they depend on what else the process has open)."""
    if isinstance(v, dict):
        return {k: _without_fds(x) for k, x in v.items() if k not in _FD_KEYS}
    if isinstance(v, list):
        return [_without_fds(x) for x in v]
    return v
