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
decide whether to stop; stopping is `sched.park()`: the model thread hands the baton to the caller's
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

Time travel is deterministic replay from a saved state. The simplest saved state is the start:
`goto(i)` before the current position can close the machine, put the image back as it was when the
debugger was created, build a fresh machine from the same configuration and run it silently to index i.
`Machine` is a stable facade: the replayed machine is swapped in behind the caller's object
(`Machine._take_over`), so `m` (and `dbg.machine`, which *is* `m`) always shows the current state. Objects
taken out of it earlier (`ide = m.ide`) belong to the old machine: read them again.

Checkpoints make it fast (emulated engine; QEMU's savevm/loadvm in spirit, see vmio_edu.trace.checkpoint).
While the machine runs forwards, every `checkpoint_every` events (3000, ~20 ms of replay) the debugger
saves the whole machine at the next *quiescent point*: the vCPU entering KVM_RUN with nothing in flight
(no coroutine, no thread-pool request, no bottom half, no notifier set; the main loop in its poll, the
workers idle). `goto(i)` backwards then (1) runs the live machine on, silently, to its next quiescent point
(a few events, or a few thousand if a request is in flight), (2) restores into the *same* objects the
latest checkpoint at or before i whose thread configuration (`checkpoint.signature`) matches, truncating
the recorded trace and `machine.exits` to it and rewriting only the image bytes written since (a redo log
of every completed host pwrite, with the pristine copy), and (3) runs silently from there to i. A far
`goto` forwards jumps to a checkpoint ahead the same way. `dbg.last_restore` tells which state the last
goto/back started from: a checkpoint's index, -1 for a fresh machine, None when it just ran forwards.
After the guest halted for good nothing is quiescent, so the vCPU is first kicked out of its halt as QEMU
pauses a vCPU (qemu_cpu_kick: KVM_RUN returns -EINTR, kvm_cpu_exec is entered again); the kick's events
are not kept in the trace. The fresh machine is the fallback when no checkpoint fits: after a model
error, before the first write (those checkpoints have no pool worker yet, the live machine
has one), or when the live machine stays busy for `QUIESCE_LIMIT` events. Its replay makes checkpoints
again (checkpoints hold the old machine's objects, so they go with it). Memory: the first checkpoint holds
all of guest RAM (2 MiB); later ones share unchanged 4 KiB pages and hold ~100 KiB each.

Changes made to the machine by hand at a stop are not replayed from the start; a checkpoint taken after
such a change keeps it. If a replay differs from the recorded run, the checkpoints after that point are
dropped and the stop's message says so.

Real KVM: a KVM_RUN that takes more than 2-4 ms is kicked by a watchdog (vmio_edu.kvm.kick) and the
machine normally returns to QEMU's loop on each kick, which makes the trace depend on timing. The debugger
lets the kicks stay inside the engine (`spin_kick_limit`), so the trace is the same on every run and
replay lands on the same event. There are no checkpoints on real KVM: the vCPU's state lives in the
kernel (restoring it would take KVM_SET_REGS, KVM_SET_SREGS, KVM_SET_IRQCHIP, KVM_SET_VCPU_EVENTS, ...),
so every goto backwards replays from the start.
"""
from __future__ import annotations

import bisect
import difflib
import os
import shutil
import tempfile
import time
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from ..errors import VmioError
from ..linux.include.uapi.linux import kvm as K
from . import checkpoint as CP
from .backtrace import BtFrame, backtrace, show_value
from .recorder import ENTER, LEAVE, POINT, Recorder
from .tracepoint import LAYERS, REGISTRY, ThreadContext, TracePoint, by_name, untraced
from .views import Views

if TYPE_CHECKING:
    from ..machine import Machine

KIND_NAMES = {ENTER: "enter", LEAVE: "leave", POINT: "event"}
# Real engine: kicks of a spinning KVM_RUN kept inside the engine before it returns to QEMU's loop.
KVM_SPIN_KICKS = 64

# Emulated engine: events between checkpoints (replay costs ~6-8.5 us an event: at most ~25 ms from a
# checkpoint; saving one costs ~2-3 ms), and how far the live machine may run on to reach a quiescent
# point before a restore gives up.
CHECKPOINT_EVERY = 3000
QUIESCE_LIMIT = 5000

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
class _Hooks:
    """Record each event, then let the debugger decide whether to stop (on the model thread)."""

    def __init__(self, dbg: "Debugger", sched: Any) -> None:
        self.dbg, self.sched = dbg, sched
        self.rec = Recorder()

    def enter(self, tp: TracePoint, args: tuple, ctx: ThreadContext) -> None:
        if self.sched.closing:
            return
        self.rec.enter(tp, args, ctx)
        self.dbg._on_event(self, ENTER, tp, tp.name, tp.layer, args, ctx)

    def leave(self, tp: TracePoint, result: Any, ctx: ThreadContext) -> None:
        if self.sched.closing:
            return
        self.rec.leave(tp, result, ctx)
        self.dbg._on_event(self, LEAVE, tp, tp.name, tp.layer, result, ctx)

    def event(self, name: str, layer: str, fields: dict, ctx: ThreadContext) -> None:
        if self.sched.closing:
            return
        self.rec.event(name, layer, fields, ctx)
        self.dbg._on_event(self, POINT, None, name, layer, fields, ctx)


# ==========================================================================================================
# The debugger
# ==========================================================================================================
class Debugger:
    """See the module docstring. Make one with `Machine.debugger()`."""

    def __init__(self, machine: "Machine") -> None:
        m = machine
        m._check_open()
        if m.last is not None or m.sched.ticks or (m.trace is not None and m.trace.events):
            raise VmioError("create the debugger before running the machine (m.debugger() first, then "
                            "dbg.cont()): time travel replays the run from its start")
        self.machine = m
        self._config = dict(m._config, engine=m.engine, image=m.image_path, record=False)
        self._dir = tempfile.mkdtemp(prefix="vmio-edu-dbg-")
        self._pristine = os.path.join(self._dir, "pristine.img")
        try:
            shutil.copyfile(m.image_path, self._pristine)
        except OSError as e:
            shutil.rmtree(self._dir, ignore_errors=True)
            from ..errors import ImageError
            raise ImageError(f"cannot keep a copy of the disk image {m.image_path!r} for time travel: "
                             f"{e.strerror}") from e
        self._finalizer = weakref.finalize(self, shutil.rmtree, self._dir, True)
        self._history: list[tuple] = []  # the longest known trace (the future too, after a goto back)
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
        # Checkpoints (emulated engine): see vmio_edu.trace.checkpoint and "Time travel" above.
        from ..linux.fs.read_write import sys_pwrite64, sys_pwritev
        from ..qemu.kvm_all import kvm_vcpu_ioctl
        self._run_tp = kvm_vcpu_ioctl.tracepoint
        self._write_tps = (sys_pwrite64.tracepoint, sys_pwritev.tracepoint)
        self.checkpoint_every = CHECKPOINT_EVERY
        self.capture_seconds = 0.0  # wall time spent saving checkpoints (for benchmarks)
        self._checkpoints: list[CP.Checkpoint] = []  # sorted by index, all made by the current machine
        self._cp_index: list[int] = []
        self._exit_log: list = []  # machine.exits as far as the checkpoints know them
        self._writes: list[tuple[int, int, bytes]] = []  # (event index, offset, bytes): completed host writes
        self._image_fds: dict[int, bool] = {}  # model fd -> is it the disk image?
        self.last_restore: int | None = None  # the checkpoint index the last replay started from (-1: start)
        self._cp_pages = CP._Pages()
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
            if not by_name(function, layer):
                near = difflib.get_close_matches(function, sorted({tp.name for tp in REGISTRY}), n=3)
                hint = f" (did you mean {', '.join(near)}?)" if near else \
                    " (try e.g. bdrv_aio_writev, ide_sector_write, paio_submit, kvm_handle_io)"
                where = f" in layer {layer}" if layer else ""
                raise VmioError(f"no modelled function is called {function!r}{where}{hint}")
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
        Events are the recorder's tuples (kind, trace point id or name, thread, depth, payload)."""
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
                          io_buffer_offset=io_buffer_offset, kvm_run_offset=kvm_run_offset, op=op, at=at)

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
        """The trace indices where the machine's state is saved (emulated engine; see the module doc)."""
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
        m.trace = self._hooks.rec
        m.sched.attach(hooks=self._hooks)
        self._checkpointing = m.engine == "unicorn"
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
        if kind == ENTER and tp is not None:
            args, result = {n: show_value(v) for n, v in zip(tp.argnames, payload)}, None
        elif kind == LEAVE:
            args, result = {}, show_value(payload) if not isinstance(payload, BaseException) else repr(payload)
        else:
            args = {k: v for k, v in (payload or {}).items() if isinstance(v, (int, str, bool))}
            result = None
        return Stop(reason, index, KIND_NAMES[kind], name, layer, ctx.name, len(ctx.stack), args, result,
                    backtrace(ctx.stack, ctx.name), bp, message,
                    _views=self._views_here(),
                    _stack=ctx.stack, _ref=self._ref_prefix)

    # -- on the model thread --------------------------------------------------------------------------------
    def _on_event(self, hooks: _Hooks, kind: int, tp: TracePoint | None, name: str, layer: str, payload: Any,
                  ctx: ThreadContext) -> None:
        if hooks is not self._hooks:
            return  # a machine being closed
        events = hooks.rec.events
        i = len(events) - 1
        ev = events[i]
        h = self._history
        if i < len(h):
            if h[i][:4] != ev[:4]:  # not the run seen before (the machine was changed by hand?)
                del h[i:]
                h.append(ev)
                self._complete = False
                if self._diverged_at is None:
                    self._diverged_at = i
                self._forget_future(i)
        else:
            h.append(ev)

        quiet = False
        if tp is self._run_tp:
            if kind == ENTER and payload and payload[0] == K.KVM_RUN and self._checkpointing:
                quiet = self._at_kvm_run(i)
        elif kind == LEAVE and tp in self._write_tps:
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
        sched = m.sched
        try:
            try:
                parked = sched.resume()
            except KeyboardInterrupt:
                parked = m._wait_after_interrupt()
        finally:
            self._mode, self._target_stack = None, None
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
                    t.name, len(ctx.stack), {}, None, backtrace(ctx.stack, t.name), None,
                    "interrupted (Ctrl-C) while the vCPU was about to re-enter KVM_RUN",
                    _views=self._views_here(),
                    _stack=ctx.stack)

    # -- time travel ------------------------------------------------------------------------------------------
    def _goto(self, index: int, reason: str) -> Stop:
        self.last_restore = None
        cur = self.stop.index
        if index == cur and self.stop.reason not in ("error",):
            return self.stop
        forward_ok = (index > cur and self.stop.reason not in ("halted", "error")
                      and self.machine.sched.error is None and not self.machine._closed)
        if forward_ok:
            # far ahead, past a checkpoint: jump to it rather than run all the way
            j = bisect.bisect_right(self._cp_index, index)
            if j and self._cp_index[j - 1] - cur > 2 * QUIESCE_LIMIT:
                stop = self._restore_checkpoint(index, reason, forward=True)
                if stop is not None:
                    return stop
                if self.stop.index > index or self.stop.reason in ("halted", "error"):
                    return self._replay_to(index, reason)  # reaching a quiescent point went past it
            return self._run_silently_to(index, reason)
        return self._replay_to(index, reason)

    def _replay_to(self, index: int, reason: str) -> Stop:
        """The state at `index`, rebuilt: restore the nearest checkpoint at or before it into the live
        machine (emulated engine), or else build a fresh machine (index -1); then run silently."""
        stop = self._restore_checkpoint(index, reason)
        if stop is not None:
            return stop
        at = self._restore_nearest_checkpoint(index)
        if index == at:
            self.stop = self._plain_stop("start" if at < 0 else reason, at)
            return self.stop
        return self._run_silently_to(index, reason)

    def _restore_nearest_checkpoint(self, index: int) -> int:
        """The fallback: a fresh machine (the state at index -1); returns that index."""
        self._fresh_machine()
        self.last_restore = -1
        return -1

    def _run_silently_to(self, index: int, reason: str) -> Stop:
        before = self._diverged_at
        stop = self._go(_SILENT, reason, target=index)
        if self._diverged_at is not None and self._diverged_at != before and self._diverged_at <= index:
            stop.message = (f"the replay differs from the recorded run from index {self._diverged_at} on "
                            "(was the machine changed by hand at a stop?); the trace now follows the replay")
        return stop

    # -- checkpoints (emulated engine) ------------------------------------------------------------------------
    def _at_kvm_run(self, i: int) -> bool:
        """On the vCPU thread, at the entry of KVM_RUN (index i): take a checkpoint if one is due and the
        machine is quiescent. Returns whether it is quiescent (computed only when it matters)."""
        every = self.checkpoint_every
        if every <= 0:
            return False
        idx = self._cp_index
        j = bisect.bisect_right(idx, i)
        due = not j or i - idx[j - 1] >= every
        if not due and self._mode != _QUIESCE:
            return False
        m = self.machine
        if CP.quiescent(m) is not None:
            return False
        if due:
            self._capture(i)
        return True

    def _capture(self, i: int) -> None:
        t0 = time.perf_counter()
        try:
            self._capture_at(i)
        finally:
            self.capture_seconds += time.perf_counter() - t0

    def _capture_at(self, i: int) -> None:
        m = self.machine
        ex, log = m.exits, self._exit_log
        if len(ex) > len(log):
            log.extend(ex[len(log):])
        cp = CP.save(m, i, self._cp_pages)
        try:
            cp.image_size = os.path.getsize(self._config["image"])
        except OSError:
            return
        j = bisect.bisect_right(self._cp_index, i)
        self._checkpoints.insert(j, cp)
        self._cp_index.insert(j, i)

    def _forget_future(self, i: int) -> None:
        """The run diverged at index i: checkpoints and logged writes from there on are of another run."""
        j = bisect.bisect_left(self._cp_index, i)
        del self._checkpoints[j:], self._cp_index[j:]
        del self._exit_log[self._checkpoints[-1].exits if self._checkpoints else 0:]
        self._writes = [w for w in self._writes if w[0] < i]

    def _log_write(self, i: int, result: Any, ctx: ThreadContext) -> None:
        """A host pwrite/pwritev returned (index i): keep the bytes it wrote (the image's redo log)."""
        if not isinstance(result, int) or result <= 0 or not ctx.stack:
            return
        args = ctx.stack[-1].args  # (fd, count, pos) or (fd, pos): the frame is popped after this
        fd, pos = args[0], args[-1]
        w = self._writes
        if w and w[-1][0] >= i:  # replaying a write already logged (the same run)
            k = bisect.bisect_left(w, (i,))
            if k < len(w) and w[k][0] == i:
                return
        if not self._is_image_fd(fd):
            return
        try:
            data = os.pread(fd, result, pos)
        except OSError:
            return
        bisect.insort(w, (i, pos, data))

    def _is_image_fd(self, fd: Any) -> bool:
        known = self._image_fds.get(fd)
        if known is None:
            try:
                a, b = os.fstat(fd), os.stat(self._config["image"])
                known = (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
            except (OSError, TypeError):
                known = False
            self._image_fds[fd] = known
        return known

    def _parked_quiescent(self) -> bool:
        """Is the live machine stopped at a quiescent point (the entry of a KVM_RUN, nothing in flight)?"""
        s, m = self.stop, self.machine
        if (m._closed or s.kind != "enter" or s.function != self._run_tp.name or s.layer != self._run_tp.layer
                or s.index != self._position() - 1 or m.sched._parked is None or not m.sched._parked.is_vcpu):
            return False
        return CP.quiescent(m) is None

    def _restore_checkpoint(self, index: int, reason: str, forward: bool = False) -> Stop | None:
        """Restore the latest usable checkpoint at or before `index` into the live machine and run silently
        to `index`. None if there is none: the live machine cannot reach a quiescent point soon (it halted,
        failed, or stays busy) or no checkpoint has its thread configuration (or, going `forward`, none
        is ahead of the live machine)."""
        j = bisect.bisect_right(self._cp_index, index)
        m = self.machine
        if not j or not self._checkpointing or m._closed or m.sched.error is not None:
            return None
        if self.stop.reason == "halted" and not self._kick_out_of_halt():
            return None
        if self.stop.reason == "error":
            return None
        if not self._parked_quiescent():
            try:
                self._go(_QUIESCE, reason, target=self._position() - 1 + QUIESCE_LIMIT)
            except VmioError:
                return None
            if self.stop.reason == "halted" and not self._kick_out_of_halt():
                return None  # (a halt on the way: kicked out of it, the vCPU is at a KVM_RUN entry)
            if not self._parked_quiescent():
                return None
        here = self.stop.index
        after = here if forward and here <= index else -2
        sig = CP.signature(m)
        cp = next((c for c in reversed(self._checkpoints[:j]) if c.signature == sig and c.index > after), None)
        if cp is None:
            return None
        self._load(cp)
        stop = self._stop_at_checkpoint(cp, reason)
        return stop if index == cp.index else self._run_silently_to(index, reason)

    def _kick_out_of_halt(self) -> bool:
        """The guest halted for good, and nothing after a halt is quiescent. Kick the vCPU out of its
        halt the way QEMU pauses a vCPU (qemu_cpu_kick: SIG_IPI, KVM_RUN returns -EINTR, kvm_cpu_exec
        returns EXCP_INTERRUPT and is called again), so that it comes back to the entry of KVM_RUN. The
        kick is not part of the run: its events leave the history, which still ends at the halt."""
        m = self.machine
        vcpu = getattr(m.cpu.kvm_fd, "vcpu", None)
        if vcpu is None or not vcpu.blocked:
            return False
        halted, n = self.stop, len(self._history)
        self.stop = self._plain_stop("kick", n - 1)
        vcpu.sigpending = True
        try:
            m.sched.wake(vcpu.model_thread)  # the signal wakes the sleeping vCPU thread (signal_wake_up)
            self._go(_QUIESCE, "kick", target=n + QUIESCE_LIMIT)
        except VmioError:
            return False
        finally:
            vcpu.sigpending = False
            del self._history[n:]
            self._complete = True
            k = bisect.bisect_left(self._cp_index, n)
            del self._checkpoints[k:], self._cp_index[k:]
        if not self._parked_quiescent():
            self.stop = halted  # (the replay from a fresh machine takes over)
            return False
        m.halted = False  # Machine notes the final HLT again when the replay reaches it
        return True

    def _load(self, cp: CP.Checkpoint) -> None:
        m = self.machine
        events = self._hooks.rec.events
        here = len(events) - 1
        CP.restore(m, cp)
        n = cp.index + 1
        if len(events) > n:
            del events[n:]
        else:
            events.extend(self._history[len(events):n])
        ex = m.exits
        if len(ex) > cp.exits:
            del ex[cp.exits:]
        else:
            ex.extend(self._exit_log[len(ex):cp.exits])
        self._image_to(here, cp.index, cp.image_size)
        self._gen += 1
        self.last_restore = cp.index

    def _stop_at_checkpoint(self, cp: CP.Checkpoint, reason: str) -> Stop:
        t = self.machine.sched._parked
        ctx = t.ctx
        frame = ctx.stack[-1]
        self.stop = self._make_stop(reason, cp.index, ENTER, frame.tp.name, frame.tp.layer, frame.args,
                                    frame.tp, ctx)
        return self.stop

    def _image_to(self, here: int, there: int, size: int) -> None:
        """Make the image what it was at index `there` (it is what it was at `here`): only the byte ranges
        written between the two are rewritten, from the pristine copy plus the writes up to `there`."""
        lo, hi = min(here, there), max(here, there)
        w = self._writes
        changed = [(off, len(data)) for i, off, data in w if lo < i <= hi]
        path = self._config["image"]
        try:
            if changed:
                kept = [(off, data) for i, off, data in w if i <= there]
                with open(self._pristine, "rb") as pf, open(path, "r+b") as f:
                    for off, n in _merge(changed):
                        pf.seek(off)
                        buf = bytearray(pf.read(n).ljust(n, b"\0"))
                        for o, data in kept:
                            a, b = max(off, o), min(off + n, o + len(data))
                            if a < b:
                                buf[a - off:b - off] = data[a - o:b - o]
                        f.seek(off)
                        f.write(buf)
            if os.path.getsize(path) != size:
                os.truncate(path, size)
        except OSError as e:
            from ..errors import ImageError
            raise ImageError(f"cannot put the disk image {path!r} back as it was at index {there}: "
                             f"{e.strerror}") from e

    # -- the fallback: a fresh machine ------------------------------------------------------------------------
    def _fresh_machine(self) -> None:
        """Close the current machine, put the image back as it was at the start, and swap a new machine
        built from the same configuration in behind the caller's `Machine` object. Its checkpoints go
        with it (they hold the old machine's objects); the replay makes new ones."""
        from ..machine import Machine

        m = self.machine
        tmpdir = m._tmpdir
        m._tmpdir = None  # the image lives there: keep it through the close
        m._debugger = None  # and keep our copy of the image: this close is not the end
        self._hooks = None
        self._gen += 1
        try:
            m.close()
        finally:
            m._tmpdir, m._debugger = tmpdir, self
        self._checkpoints, self._cp_index, self._exit_log = [], [], []
        self._cp_pages = CP._Pages()
        self._writes, self._image_fds = [], {}
        self._restore_image()
        try:
            new = Machine(**self._config)
        except Exception:
            m._tmpdir = tmpdir
            raise
        m._take_over(new)
        m._tmpdir = tmpdir
        self._attach()
        self.stop = self._plain_stop("start", -1)

    def _restore_image(self) -> None:
        path = self._config["image"]
        try:
            if os.path.getsize(path) == os.path.getsize(self._pristine) and \
                    not _files_differ(path, self._pristine):
                return
            shutil.copyfile(self._pristine, path)
        except OSError as e:
            from ..errors import ImageError
            raise ImageError(f"cannot put the disk image {path!r} back as it was for the replay: "
                             f"{e.strerror}") from e


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """(offset, length) ranges, sorted and merged where they overlap or touch."""
    out: list[list[int]] = []
    for off, n in sorted(ranges):
        if out and off <= out[-1][0] + out[-1][1]:
            out[-1][1] = max(out[-1][1], off + n - out[-1][0])
        else:
            out.append([off, n])
    return [(a, b) for a, b in out]


def _files_differ(a: str, b: str, chunk: int = 1 << 20) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(chunk), fb.read(chunk)
            if x != y:
                return True
            if not x:
                return False


_FD_KEYS = {"fd", "aio_fildes", "rfd", "wfd"}


def _without_fds(v: Any) -> Any:
    """A view without host file descriptor numbers (they depend on what else the process has open)."""
    if isinstance(v, dict):
        return {k: _without_fds(x) for k, x in v.items() if k not in _FD_KEYS}
    if isinstance(v, list):
        return [_without_fds(x) for x in v]
    return v
