"""Trace points: how the model is watched without being changed.

Real QEMU declares trace points in `trace-events` and calls `trace_foo(...)` inside functions. vmio-edu
wraps each modelled function once with `@tracepoint(layer, args=...)`. The function body stays a clean
model of the C; the wrapper reports entry and exit to whatever is attached to the running thread (a
recorder, a debugger). With nothing attached a call costs one thread-local look-up.

Each model thread (vCPU, main loop, pool worker) has a `ThreadContext` holding its name and its shadow
stack. A QEMU coroutine has a stack of its own: `qemu_coroutine_enter` swaps it in, as the real
`qemu_coroutine_switch` swaps machine stacks, so a backtrace inside a coroutine ends at its entry function.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import operator
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Protocol

from .events import thread_bits
from .sources import SourceRef, lookup

# Layers in path order; the swimlanes and `--format text` group by these.
LAYERS = (
    "guest", "vmx", "kvm", "qemu-cpu", "qemu-memory", "qemu-pci", "qemu-ide", "qemu-virtio", "qemu-block",
    "qemu-threadpool", "qemu-event-loop", "host",
)
# qemu-event-loop: the main loop and its AioContext (main_loop, main_loop_wait, glib_pollfds_*, aio_poll,
# bottom halves, event notifiers), which wait for and dispatch completions; qemu-threadpool: the pool itself.
# qemu-pci: hw/pci/ and hw/pci-host/ (config mechanism #1, BARs, INTx routing); qemu-virtio: hw/virtio/
# (virtqueues, the legacy virtio-pci BAR) and hw/block/virtio-blk.c, the device beside IDE (issue 14).
_LINUX_LAYERS = {"guest", "vmx", "kvm", "host"}


@dataclass
class TracePoint:
    """One modelled function: its real name, layer, real source and the arguments worth showing."""

    id: int
    name: str
    layer: str
    side: str
    argnames: tuple[str, ...]
    argpos: tuple[int, ...]
    source: SourceRef | None
    fn: Callable | None = None
    kwnames: tuple[str, ...] = ()  # the model's names of `argnames` (differ where args= renames)
    stack: str = "1.6.1"  # "1.6.1" (QEMU 1.6.1 / Linux 3.7) or "10.2" (QEMU 10.2 / Linux 6.12)
    bits: int = field(init=False, repr=False)  # the what field of its events in the packed trace

    def __post_init__(self) -> None:
        self.bits = self.id << 2  # (vmio_edu.trace.events)

    @property
    def where(self) -> str:
        return str(self.source) if self.source else "?"


REGISTRY: list[TracePoint] = []
_BY_KEY: dict[tuple[str, str, str], TracePoint] = {}

# The modern stack's trees; every other module of the package models QEMU 1.6.1 / Linux 3.7.
_MODERN_TREES = ("vmio_edu.qemu_10_2", "vmio_edu.linux_6_12")


def stack_of_module(module: str) -> str:
    """The stack a module models, from where it sits in the package tree."""
    return "10.2" if module.startswith(_MODERN_TREES) else "1.6.1"


def by_name(name: str, layer: str | None = None, stack: str | None = None) -> list[TracePoint]:
    """Trace points called `name` (a name can exist in both QEMU and Linux, e.g. kvm_set_irq, and in
    both stacks, e.g. kvm_cpu_exec); `stack` narrows to one stack."""
    return [tp for tp in REGISTRY if tp.name == name and (layer is None or tp.layer == layer)
            and (stack is None or tp.stack == stack)]


class Hooks(Protocol):
    """What a tracer attached to a thread implements."""

    def enter(self, tp: TracePoint, args: tuple, ctx: "ThreadContext") -> None: ...

    def leave(self, tp: TracePoint, result: Any, ctx: "ThreadContext") -> None: ...


class Frame(tuple):
    """A shadow-stack frame: the trace point and the values of its declared arguments, `(tp, args)`.

    A tuple with named fields (made on every traced call while anything is attached, so it must be
    cheap: building it is one C call)."""

    __slots__ = ()
    tp: TracePoint = property(operator.itemgetter(0))  # type: ignore[assignment]
    args: tuple = property(operator.itemgetter(1))  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Frame({self.tp.name}, {self.args!r})"


@dataclass
class ThreadContext:
    """Per model thread: its name, the hooks attached (or None) and the active shadow stack."""

    name: str
    hooks: Hooks | None = None
    stack: list[Frame] = field(default_factory=list)
    machine: Any = None
    listeners: list[Callable] = field(default_factory=list)  # point-event callbacks (see emit)
    tbits: int = field(init=False, repr=False)  # the thread field of its events in the packed trace

    def __post_init__(self) -> None:
        self.tbits = thread_bits(self.name)


class _ThreadLocal(threading.local):
    ctx: ThreadContext | None = None  # a class default: threads outside the model read None, no exception


_tls = _ThreadLocal()  # read as `_tls.ctx` (an attribute read is faster than getattr with a default)


@contextlib.contextmanager
def untraced(ctx: ThreadContext | None) -> Iterator[None]:
    """Run a block on a model thread without its calls becoming trace events (a tool looking, not the
    model acting: the exit recorder's KVM_GET_REGS, a breakpoint condition)."""
    if ctx is None:
        yield
        return
    hooks, ctx.hooks = ctx.hooks, None
    try:
        yield
    finally:
        ctx.hooks = hooks


def current_context() -> ThreadContext | None:
    """The context of the calling model thread, or None outside the model."""
    return _tls.ctx


def set_context(ctx: ThreadContext | None) -> None:
    _tls.ctx = ctx


def _argpos(fn: Callable, names: tuple[str, ...]) -> tuple[int, ...]:
    params = list(inspect.signature(fn).parameters)
    try:
        return tuple(params.index(n) for n in names)
    except ValueError as e:  # a typo in args= should fail at import, not mid-run
        raise TypeError(f"@tracepoint on {fn.__name__}: unknown argument in {names}") from e


def _pick(a: tuple, kw: dict, tp: TracePoint) -> tuple:
    if kw:
        return tuple(a[i] if i < len(a) else kw.get(n) for i, n in zip(tp.argpos, tp.kwnames or tp.argnames))
    return tuple(a[i] for i in tp.argpos if i < len(a))


def _picker(tp: TracePoint) -> Callable[[tuple, dict], tuple]:
    """A fast `_pick` for `tp`: the common call (all declared arguments passed by position) costs one C
    call (operator.itemgetter), since it runs twice per stage while anything is attached."""
    pos = tp.argpos
    if not pos:
        return lambda a, kw: ()
    top = max(pos)
    if len(pos) == 1:
        i = pos[0]
        return lambda a, kw: (a[i],) if not kw and len(a) > top else _pick(a, kw, tp)
    get = operator.itemgetter(*pos)
    return lambda a, kw: get(a) if not kw and len(a) > top else _pick(a, kw, tp)


def tracepoint(layer: str, args: tuple[str, ...] = (), name: str | None = None,
               stack: str | None = None) -> Callable:
    """Make a modelled function observable.

    `layer` is one of LAYERS; `name` defaults to the Python name, which should be the real C name;
    `args` lists the parameters of the real signature the model has, in order; `"opaque=bus"` names the
    model's parameter `bus` by its real name `opaque`. Backtraces show every real parameter (those the
    model lacks as `<optimized out>`); the recorder keeps only the small values.
    Generator functions (QEMU coroutine_fn code) are traced across their yields.
    `stack` defaults to the stack of the module defining `fn` (`stack_of_module`).
    """
    if layer not in LAYERS:
        raise ValueError(f"unknown layer {layer!r}")

    def deco(fn: Callable) -> Callable:
        fname = name or fn.__name__
        side = "linux" if layer in _LINUX_LAYERS else "qemu"
        # "opaque=bus": the real C parameter `opaque` is the model's `bus` (shown under the real name)
        real = tuple(a.split("=")[0] for a in args)
        model = tuple(a.split("=")[-1] for a in args)
        stk = stack or stack_of_module(fn.__module__)
        tp = TracePoint(len(REGISTRY), fname, layer, side, real, _argpos(fn, model), lookup(side, fname, stk),
                        fn, model, stk)
        REGISTRY.append(tp)
        _BY_KEY[(stk, side, fname)] = tp

        return traced(tp, fn)

    return deco


def traced(tp: TracePoint, fn: Callable) -> Callable:
    """`fn` wrapped so that it enters and leaves through trace point `tp`.

    The decorator uses this for every modelled function; the grader uses it to put a student's function
    in place of the real one under the same name, layer and file:line.
    """
    pick = _picker(tp)
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*a, **kw):
            return _traced_gen(tp, fn(*a, **kw), pick(a, kw))
        gen_wrapper.tracepoint = tp
        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*a, **kw):
        ctx = _tls.ctx
        if ctx is None or ctx.hooks is None:
            return fn(*a, **kw)
        args = pick(a, kw)
        stack = ctx.stack
        stack.append(Frame((tp, args)))
        try:
            ctx.hooks.enter(tp, args, ctx)
            result = fn(*a, **kw)
        except BaseException as e:
            _leave(tp, e, stack)
            raise
        # _leave, inlined (a plain function returns on the thread that called it)
        try:
            hooks = ctx.hooks
            if hooks is not None:
                hooks.leave(tp, result, ctx)
        finally:
            if stack and stack[-1].tp is tp:
                stack.pop()
        return result

    wrapper.tracepoint = tp
    return wrapper


def _leave(tp: TracePoint, result: Any, stack: list[Frame]) -> None:
    # The leave is reported on the thread running now (a coroutine may finish on another thread).
    ctx = _tls.ctx
    try:
        if ctx is not None and ctx.hooks is not None:
            ctx.hooks.leave(tp, result, ctx)
    finally:
        if stack and stack[-1].tp is tp:
            stack.pop()


def _traced_gen(tp: TracePoint, gen, picked: tuple):
    ctx = _tls.ctx
    if ctx is None or ctx.hooks is None:
        return (yield from gen)
    stack = ctx.stack  # the coroutine's own stack while it runs
    stack.append(Frame((tp, picked)))
    try:
        ctx.hooks.enter(tp, picked, ctx)
        result = yield from gen
    except GeneratorExit:
        # The coroutine was abandoned (its machine closed) and the garbage collector is closing it, on
        # whatever thread runs then: not a return of the function, so nothing to report there.
        if stack and stack[-1].tp is tp:
            stack.pop()
        raise
    except BaseException as e:
        _leave(tp, e, stack)
        raise
    _leave(tp, result, stack)
    return result


def emit(name: str, layer: str, **fields: Any) -> None:
    """A point event inside a stage (QEMU's trace_*() calls, e.g. trace_kvm_run_exit): never a frame.

    It goes to the attached hooks (if they take events) and to `ctx.listeners`, which let a light
    observer (the exit recorder) watch without paying for every trace point.
    """
    ctx = _tls.ctx
    if ctx is None:
        return
    if ctx.hooks is not None and hasattr(ctx.hooks, "event"):
        ctx.hooks.event(name, layer, fields, ctx)
    for fn in ctx.listeners:
        fn(name, layer, fields, ctx)
