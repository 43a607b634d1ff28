"""Code shared between the two stacks, shared visibly.

Much of QEMU and Linux did not change between QEMU 1.6.1 / Linux 3.7 and QEMU 10.2 / Linux 6.12 except for
where it sits (file and line) and what it calls (the renamed functions around it). The modern trees
(`vmio_edu/qemu_10_2/`, `vmio_edu/linux_6_12/`) reuse such a function with `unchanged`: the very same
Python body, re-bound to the modern module's globals, so its callees are the modern ones, behind a trace
point with the modern file:line. `UNCHANGED` lists every such function, so a learner (and `diff-paths`)
can see which stages are the same code in both versions.
"""
from __future__ import annotations

import inspect
import types
from typing import Any, Callable

from .tracepoint import TracePoint, tracepoint

# modern "module.function" -> the 1.6.1 "module.function" whose body it runs
UNCHANGED: dict[str, str] = {}


def _args_spec(tp: TracePoint) -> tuple[str, ...]:
    """The `args=` a trace point was declared with ("real=model" where the model renames)."""
    kw = tp.kwnames or tp.argnames
    return tuple(r if r == m else f"{r}={m}" for r, m in zip(tp.argnames, kw))


def unchanged(fn: Callable, module_globals: dict[str, Any], *, layer: str | None = None,
              args: tuple[str, ...] | None = None, name: str | None = None) -> Callable:
    """`fn` (a 1.6.1 model function) as a function of the calling modern module.

    The body is the same code object; its globals are `module_globals`, so a call to, say,
    `ide_sector_write` inside it reaches the modern module's `ide_sector_write`. The trace point is a new
    one, in the modern stack, with the modern file:line; `layer`, `args` and `name` default to the 1.6.1
    trace point's. Every name the body uses must exist in the modern module (checked on the first call
    by Python itself: a NameError names the missing one).
    """
    old_tp: TracePoint | None = getattr(fn, "tracepoint", None)
    body = inspect.unwrap(fn)
    new = types.FunctionType(body.__code__, module_globals, body.__name__, body.__defaults__,
                             body.__closure__)
    new.__kwdefaults__ = body.__kwdefaults__
    new.__annotations__ = dict(body.__annotations__)
    new.__doc__ = body.__doc__
    new.__qualname__ = body.__qualname__
    new.__module__ = module_globals["__name__"]
    if layer is None or args is None:
        if old_tp is None:
            raise TypeError(f"unchanged({body.__name__}): not a traced function; give layer= and args=")
        layer = layer or old_tp.layer
        args = _args_spec(old_tp) if args is None else args
    wrapped = tracepoint(layer, args=args, name=name or (old_tp.name if old_tp else None))(new)
    wrapped.unchanged_from = f"{body.__module__}.{body.__qualname__}"
    UNCHANGED[f"{new.__module__}.{new.__qualname__}"] = wrapped.unchanged_from
    return wrapped
