"""The deterministic scheduler: real threads, one at a time.

QEMU runs a vCPU thread, the main-loop thread and thread-pool workers. vmio-edu runs the same threads as
real `threading.Thread`s, but only one holds the baton at a time, and the baton moves by a fixed rule, so
the same guest, disk and seed always give the same trace:

* A thread runs until it blocks (a worker waiting for a request, the main loop in poll, a halted vCPU),
  or, for the vCPU, until it re-enters KVM_RUN (a "tick").
* A thread woken while the vCPU is running becomes due `latency` ticks later. A tick is a KVM_RUN entry or,
  for a guest that runs on inside KVM_RUN without exits, a host timer tick (`timer_tick`, every
  `X86Cpu.slice_insns` guest instructions on the emulated engine), after which the vCPU lets the due
  threads run (`cond_resched`) before it goes back into the guest. So after the guest starts an
  I/O it polls the status register at least `latency` times before the completion lands, as on a real
  host where the pwrite takes far longer than one VM exit.
* Due threads run in the order they were woken, before the vCPU. When the vCPU is halted, waiting threads
  run at once. When nothing can run, the machine is idle and the baton goes back to the controller.

The controller is the caller's thread (the Jupyter kernel thread). It hands the baton over with `resume()`
and gets it back when a thread parks (a debugger stop), the machine goes idle, or a thread fails.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable

from .tracepoint import ThreadContext, set_context

CONTROLLER = "controller"


class ThreadExit(BaseException):
    """Raised inside a model thread to unwind it when the machine closes or rewinds."""


@dataclass
class Parked:
    """Why the baton came back to the controller."""

    reason: str  # "stop" (a thread parked itself), "idle", "error", "closed"
    thread: str | None = None
    detail: Any = None


class ModelThread:
    """A real thread of the model, with the name QEMU would give it."""

    def __init__(self, sched: "Scheduler", name: str, fn: Callable, args: tuple, is_vcpu: bool):
        self.sched, self.name, self.is_vcpu = sched, name, is_vcpu
        self.state = "runnable"  # runnable | blocked | done
        self.why = ""
        self.ctx = ThreadContext(name, machine=sched.machine)
        self._fn, self._args = fn, args
        self.thread = threading.Thread(target=self._main, name=f"vmio:{name}", daemon=True)

    def _main(self) -> None:
        set_context(self.ctx)
        s = self.sched
        try:
            with s._cv:
                s._wait_turn(self)
            self._fn(*self._args)
        except ThreadExit:
            pass
        except BaseException as e:  # noqa: BLE001 - every failure must reach the controller
            with s._cv:
                self.state = "done"
                s.error = e
                s._give(CONTROLLER, Parked("error", self.name, e))
            return
        with s._cv:
            self.state = "done"
            if not s.closing:
                s._give(s._pick(), None)
            else:
                s._give(CONTROLLER, Parked("closed", self.name))

    def __repr__(self) -> str:
        return f"<{self.name} {self.state}{' (' + self.why + ')' if self.why else ''}>"


class Scheduler:
    """Hands one baton among the model threads. See the module docstring for the rule."""

    def __init__(self, machine: Any = None, latency: int = 1):
        self.machine = machine
        self.latency = latency
        self.threads: list[ModelThread] = []
        self.ticks = 0
        self._due: list[tuple[ModelThread, int]] = []  # woken threads, in wake order
        self._turn: str = CONTROLLER
        self._cv = threading.Condition()
        self._parked: ModelThread | None = None
        self._last: Parked | None = None
        self.park_requested = False
        self.closing = False
        self.error: BaseException | None = None
        self.hooks = None  # given to every thread's context, including threads spawned later
        self.listeners: list = []
        self.max_ticks: int | None = None  # the exit budget: KVM_RUN entries allowed
        self.budget_check = None  # optional callable run at each tick; raises BudgetExceeded
        self.switch_listeners: list = []  # called with the thread (or CONTROLLER) the baton goes to

    def attach(self, hooks=None, listener=None) -> None:
        """Attach trace hooks and/or a point-event listener to every model thread, now and later."""
        if hooks is not None:
            self.hooks = hooks
        if listener is not None:
            self.listeners.append(listener)
        for t in self.threads:
            t.ctx.hooks = self.hooks
            t.ctx.listeners = list(self.listeners)

    # -- model side -----------------------------------------------------------------------------
    def spawn(self, name: str, fn: Callable, *args: Any, vcpu: bool = False) -> ModelThread:
        """Create a model thread (QEMU's qemu_thread_create). It first runs when the rule picks it."""
        t = ModelThread(self, name, fn, args, vcpu)
        t.ctx.hooks, t.ctx.listeners = self.hooks, list(self.listeners)
        with self._cv:
            self.threads.append(t)
            if not vcpu:
                self._due.append((t, self.ticks))
        t.thread.start()
        return t

    def current(self) -> ModelThread:
        return self._by_name(self._turn)

    def block(self, why: str) -> None:
        """Block the calling thread until another one wakes it."""
        with self._cv:
            me = self.current()
            me.state, me.why = "blocked", why
            self._give(self._pick(), None)
            self._wait_turn(me)

    def wake(self, t: ModelThread) -> None:
        """Make a blocked thread runnable again (a semaphore post, an eventfd write, an interrupt)."""
        with self._cv:
            if t.state != "blocked":
                return
            t.state, t.why = "runnable", ""
            if t.is_vcpu:
                return  # the vCPU is picked whenever nothing else is due
            vcpu_running = any(x.is_vcpu and x.state == "runnable" for x in self.threads)
            self._due.append((t, self.ticks + (self.latency if vcpu_running else 0)))

    def tick(self) -> None:
        """The vCPU is about to re-enter KVM_RUN: run whoever is due first, or park if asked to."""
        with self._cv:
            self.ticks += 1
            me = self.current()
            if self.max_ticks is not None and self.ticks > self.max_ticks:
                from ..errors import BudgetExceeded
                raise BudgetExceeded(f"the guest used its budget of {self.max_ticks} VM exits without "
                                     "halting (does it loop forever?)")
            if self.budget_check is not None:
                self.budget_check()
            self._park_if_requested(me)
            nxt = self._pick()
            if nxt is not me:
                self._give(nxt, None)
                self._wait_turn(me)
                self._park_if_requested(me)  # another thread may have asked (vm_stop) while we waited

    def timer_tick(self) -> bool:
        """The host's timer interrupt on the CPU of the running vCPU thread, inside KVM_RUN (Linux's
        scheduler_tick, vmio_edu/linux/kernel/sched/core.py): the clock moves on one tick, so threads woken
        `latency` ticks ago become due. True if a thread is due now (the vCPU should give way)."""
        with self._cv:
            self.ticks += 1
            return any(t.state == "runnable" and due <= self.ticks for t, due in self._due)

    def cond_resched(self) -> None:
        """The running (vCPU) thread gives the baton to the threads due now, without leaving KVM_RUN, and
        takes it back when they block (Linux's cond_resched from kvm_resched)."""
        with self._cv:
            me = self.current()
            nxt = self._pick()
            if nxt is not None and nxt is not me:
                self._give(nxt, None)
                self._wait_turn(me)

    def _park_if_requested(self, me: ModelThread) -> None:
        if self.park_requested:
            self.park_requested = False
            self._park(me, Parked("stop", me.name, "interrupted"))

    def park(self, detail: Any = None) -> None:
        """Hand the baton to the controller (a debugger stop) and wait to be resumed."""
        with self._cv:
            self._park(self.current(), Parked("stop", self._turn, detail))

    def _park(self, me: ModelThread, why: Parked) -> None:
        self._parked = me
        self._give(CONTROLLER, why)
        self._wait_turn(me)

    # -- controller side ------------------------------------------------------------------------
    def resume(self) -> Parked:
        """Let the model run until it parks, idles or fails. Ctrl-C (KeyboardInterrupt) parks it."""
        with self._cv:
            if self.error is not None:
                return Parked("error", None, self.error)
            nxt = self._parked or self._pick()
            self._parked = None
            if nxt is None:
                return Parked("idle")
            self._give(nxt, None)
            return self._wait_controller()

    def wait_parked(self) -> Parked:
        """Wait again for the baton to come back (after a KeyboardInterrupt escaped `resume` between two
        waits: the model may still be running). Set `park_requested` first to make it stop soon."""
        with self._cv:
            return self._wait_controller()

    def _wait_controller(self) -> Parked:
        while self._turn != CONTROLLER:
            try:
                self._cv.wait(0.05)
            except KeyboardInterrupt:
                # Ask the running thread to park at its next tick or trace point; keep waiting.
                self.park_requested = True
        return self._last or Parked("idle")

    def close(self) -> None:
        """Unwind every model thread (ThreadExit) and join them."""
        with self._cv:
            self.closing = True
            for t in self.threads:
                while t.state != "done" and t.thread.is_alive():
                    self._give(t.name, None)
                    self._wait_controller()
                    if t.thread.is_alive() and t.state != "done":
                        t.state = "done"  # it failed while unwinding; the error is kept
        for t in self.threads:
            t.thread.join(timeout=5)

    # -- the rule -------------------------------------------------------------------------------
    def _pick(self) -> ModelThread | None:
        vcpu = next((t for t in self.threads if t.is_vcpu and t.state == "runnable"), None)
        for i, (t, due) in enumerate(self._due):
            if t.state != "runnable":
                continue
            if vcpu is None or due <= self.ticks:
                del self._due[i]
                return t
        self._due = [(t, d) for t, d in self._due if t.state == "runnable"]
        return vcpu

    def _give(self, to: "ModelThread | str | None", why: Parked | None) -> None:
        if to is None:
            to, why = CONTROLLER, Parked("idle")
        name = to if isinstance(to, str) else to.name
        if name == CONTROLLER:
            self._last = why
        for fn in self.switch_listeners:
            fn(None if name == CONTROLLER else self._by_name(name))
        self._turn = name
        self._cv.notify_all()

    def _wait_turn(self, me: ModelThread) -> None:
        while self._turn != me.name:
            self._cv.wait()
        if self.closing:
            raise ThreadExit()

    def _by_name(self, name: str) -> ModelThread:
        for t in self.threads:
            if t.name == name:
                return t
        raise RuntimeError(f"{name!r} is not a model thread (called from outside the model?)")
