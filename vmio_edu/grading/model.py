"""Running the real model for a check, with a student's function plugged in.

`plugged(module, name, fn)` swaps one modelled function for the student's for the duration of a `with`
block. The swap keeps the original's trace point, so traces, backtraces and the exit recorder still see
`kvm_handle_io` (or `ide_data_writew`, ...) exactly where the real one was. Modules that imported the
function by name (`from .kvm_all import kvm_handle_io`) are patched too, and so are the callback slots of
objects that captured it (MemoryRegionPortio entries, end_transfer_func, ...) inside the machine's model.

`run_default_guest(...)` runs the default guest once and returns a plain `ModelRun` summary.
Checks run in the grader's subprocess, so a patch never leaks into the learner's kernel; in-process
callers (the self-check cell, the tests) get the original back when the block ends.
"""
from __future__ import annotations

import contextlib
import gc
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from ..trace.tracepoint import traced
from .base import describe_exception


class ModelUnavailable(Exception):
    """The part of the model a check needs is not there (not written yet, or broken on its own)."""


def traced_as(original: Callable, fn: Callable) -> Callable:
    """`fn`, reporting entry and exit through `original`'s trace point (same name, layer and file:line)."""
    tp = getattr(original, "tracepoint", None)
    if tp is None:
        return fn
    wrapper = traced(tp, fn)
    wrapper.__name__ = tp.name
    wrapper.student = True
    return wrapper


@contextlib.contextmanager
def plugged(module: Any, name: str, fn: Callable) -> Iterator[Callable]:
    """Replace `module.name` (and every vmio_edu module's imported copy of it) by `fn`, traced as the
    original, until the block ends."""
    original = getattr(module, name, None)
    if original is None:
        raise ModelUnavailable(f"{module.__name__} has no {name} yet")
    replacement = traced_as(original, fn)
    patched: list[tuple[Any, str]] = []
    for mod in list(sys.modules.values()):
        if mod is not None and getattr(mod, "__name__", "").startswith("vmio_edu") and \
                getattr(mod, name, None) is original:
            setattr(mod, name, replacement)
            patched.append((mod, name))
    try:
        yield replacement
    finally:
        for mod, attr in patched:
            setattr(mod, attr, original)


_ATTR = object()  # marks an attribute slot in the undo list


def replace_in_objects(roots: list[Any], original: Callable, replacement: Callable,
                       depth: int = 8) -> list[tuple[Any, Any, Callable]]:
    """Point every slot (attributes of plain objects, list items, dict values reachable from `roots`) that
    holds `original` at `replacement`: callbacks a device captured when it was built (port lists, end
    functions). Returns what was changed, for `restore_objects`: some of these objects are shared with
    module-level tables (QEMU's static const port lists), so the change must not outlive the run."""
    seen: set[int] = set()
    changed: list[tuple[Any, Any, Callable]] = []

    def visit(obj: Any, d: int) -> None:
        if d < 0 or id(obj) in seen or isinstance(obj, (str, bytes, bytearray, memoryview, int, float)):
            return
        seen.add(id(obj))
        if isinstance(obj, (list, tuple)):
            for i, v in enumerate(obj):
                if v is original and isinstance(obj, list):
                    obj[i] = replacement
                    changed.append((obj, i, original))
                else:
                    visit(v, d - 1)
            return
        if isinstance(obj, dict):
            for k, v in list(obj.items()):
                if v is original:
                    obj[k] = replacement
                    changed.append((obj, k, original))
                else:
                    visit(v, d - 1)
            return
        attrs = getattr(obj, "__dict__", None)
        if not isinstance(attrs, dict) or callable(obj) and not hasattr(obj, "__dataclass_fields__"):
            return
        for k, v in list(attrs.items()):
            if v is original:
                setattr(obj, k, replacement)
                changed.append((obj, (_ATTR, k), original))
            else:
                visit(v, d - 1)

    for r in roots:
        visit(r, depth)
    return changed


def restore_objects(changed: list[tuple[Any, Any, Callable]]) -> None:
    for obj, key, original in reversed(changed):
        if isinstance(key, tuple) and key and key[0] is _ATTR:
            setattr(obj, key[1], original)
        else:
            obj[key] = original


@contextlib.contextmanager
def spy(module: Any, name: str, record: Callable[..., None]) -> Iterator[None]:
    """Call `record(*args)` before every call of `module.name` (the original still runs)."""
    original = getattr(module, name)

    def spying(*a: Any, **kw: Any) -> Any:
        record(*a, **kw)
        return original(*a, **kw)

    spying.__wrapped__ = original
    setattr(module, name, spying)
    try:
        yield
    finally:
        setattr(module, name, original)


@dataclass
class ModelRun:
    """What one run of the default guest did, as plain data."""

    ok: bool  # the run finished: the guest halted
    error: str = ""  # why not (a model failure, usually the student's function raising)
    exits: list = field(default_factory=list)  # ExitRecord
    expected: dict = field(default_factory=dict)  # sector -> bytes the guest wrote
    image: dict = field(default_factory=dict)  # sector -> bytes in the image now (for the sectors of interest)
    changed: list = field(default_factory=list)
    guest: dict = field(default_factory=dict)  # the default guest's result block
    stages: list = field(default_factory=list)  # (layer, thread, function) when recorded
    pattern: bytes = b""
    engine: str = ""
    extra: dict = field(default_factory=dict)


ENGINE_ENV = "VMIO_EDU_GRADING_ENGINE"
_engine_cache: dict[str, tuple[str | None, str]] = {}


def grading_engine() -> tuple[str | None, str]:
    """(engine, note): the engine checks run on. The emulated engine (every kernel stage modelled, runs
    anywhere) is preferred; real /dev/kvm is the fallback; $VMIO_EDU_GRADING_ENGINE forces one. Both give
    QEMU the same exits, which is all the checks look at. (None, why) if no machine can be built."""
    import os
    wanted = os.environ.get(ENGINE_ENV, "")
    if wanted in _engine_cache:
        return _engine_cache[wanted]
    from ..machine import Machine
    reasons = []
    for engine in ([wanted] if wanted else ["unicorn", "kvm"]):
        try:
            with Machine(op="write", lba=0, sectors=1, max_exits=10, engine=engine):
                pass
        except Exception as e:  # noqa: BLE001 - anything here means "this engine is not ready"
            reasons.append(f"{engine}: {type(e).__name__}: {e}")
            continue
        finally:
            gc.collect()  # free the probe machine (Unicorn engine, guest RAM) before the graded runs
        _engine_cache[wanted] = (engine, "")
        return _engine_cache[wanted]
    _engine_cache[wanted] = (None, "; ".join(reasons))
    return _engine_cache[wanted]


def probe() -> str | None:
    """None if a Machine can be built here; else why not (the model is incomplete)."""
    engine, why = grading_engine()
    return None if engine else why


def run_default_guest(op: str, lba: int, sectors: int, seed: int = 0, record: bool = False,
                      polling: bool = False, patches: list[tuple[Any, str, Callable]] = (),
                      max_exits: int | None = None, inspect: Callable[[Any], dict] | None = None,
                      watch: tuple[str, ...] = ()) -> ModelRun:
    """Run the default guest with `patches` [(module, name, student_fn)] plugged in.

    `watch`: function names whose every entry is kept in `extra["calls"]` as (index in stages, thread,
    the shadow stack as function names, innermost last); implies record=True. `inspect(m)` adds its
    dict to `extra` after the run.

    Raises ModelUnavailable when the machine cannot even be built without the student's code; a failure
    during the run comes back as `ModelRun(ok=False, error=...)`."""
    why = probe()
    if why is not None:
        raise ModelUnavailable(why)
    from ..machine import Machine

    if max_exits is None:
        max_exits = 600 * max(1, sectors) * (2 if op == "both" else 1) + 2000
    with contextlib.ExitStack() as stack:
        replaced = [(getattr(mod, name, None), stack.enter_context(plugged(mod, name, fn)))
                    for mod, name, fn in patches]
        run = ModelRun(ok=False)
        try:
            m = Machine(op=op, lba=lba, sectors=sectors, seed=seed, record=record or bool(watch),
                        polling=polling, max_exits=max_exits, engine=grading_engine()[0])
        except Exception as e:  # noqa: BLE001
            run.error = f"the machine could not start: {describe_exception(e)}"
            return run
        calls: list[tuple[int, str, list[str]]] = []
        if watch and m.trace is not None:
            def on_enter(tp: Any, args: tuple, ctx: Any) -> None:
                if tp.name in watch:
                    calls.append((len(m.trace.events) - 1, ctx.name, [f.tp.name for f in ctx.stack],
                                  _call_info(tp.name, args)))
            m.trace.on_enter = on_enter
        with m, contextlib.ExitStack() as undo:
            for original, replacement in replaced:
                changed = replace_in_objects([m.ide, m.state.address_space_io, m.state.address_space_memory,
                                              m.state], original, replacement)
                undo.callback(restore_objects, changed)
            try:
                m.run()
                run.ok = bool(m.halted)
                if not run.ok:
                    run.error = f"the run stopped without the guest halting ({m.last.reason if m.last else '?'})"
            except Exception as e:  # noqa: BLE001 - the student's code failing inside the model
                cause = e.__cause__ if e.__cause__ is not None else e
                run.error = describe_exception(cause) if cause is not e else f"{type(e).__name__}: {e}"
            run.exits = list(m.exits)
            run.expected = m.expected_sectors()
            n = sectors or 256
            for s in range(max(0, lba - 1), lba + n + 1):
                run.image[s] = m.image_bytes(s)
            run.changed = m.image_changes()
            try:
                run.guest = m.guest_result()
            except Exception:  # noqa: BLE001
                run.guest = {}
            run.pattern = getattr(m, "pattern", b"")
            run.engine = m.engine
            if m.trace is not None:
                run.stages = m.trace.stages()
            if inspect is not None:
                run.extra = dict(inspect(m))
            if watch:
                run.extra["calls"] = calls
        del m
    gc.collect()  # free the engine's memory before the next run (see grading_engine)
    return run


def _call_info(name: str, args: tuple) -> Any:
    """What a watched call carries that a check needs: a completion's ret."""
    if name.endswith("_cb") and args and type(args[-1]) is int:
        return args[-1]  # the trace point keeps (ret,)
    return None


def first_difference(a: bytes, b: bytes) -> int:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


def image_problems(run: ModelRun, lba: int, sectors: int) -> list[str]:
    """What is wrong with the image after a write: each sector compared with what the guest sent."""
    out = []
    for s, want in sorted(run.expected.items()):
        got = run.image.get(s, b"")
        if got != want:
            i = first_difference(got, want)
            out.append(f"sector {s} of the image differs from what the guest wrote, first at byte {i} "
                       f"(word {i // 2}): image {got[i:i + 4].hex() or 'nothing'}, guest {want[i:i + 4].hex()}")
    stray = [s for s in run.changed if s not in run.expected]
    if stray:
        out.append(f"sectors the guest never wrote changed too: {stray[:6]}")
    return out


# -- model runs across the sandbox ---------------------------------------------------------------------------
def summarize(run: ModelRun) -> dict:
    """A run as plain data (what the sandbox sends back). The expected bytes are left out: the grader
    computes them itself from the pattern seed (`from_summary`)."""
    exits = [[x.reason, getattr(x, "port", None), getattr(x, "direction", None), getattr(x, "count", None)]
             for x in run.exits]
    guest = {k: run.guest.get(k) for k in ("sectors_done", "status", "error", "read_back") if k in run.guest}
    return {"ok": bool(run.ok), "error": run.error, "exits": exits, "image": [[s, b] for s, b in run.image.items()],
            "changed": list(run.changed), "guest": guest, "stages": [list(s) for s in run.stages],
            "extra": run.extra}


def from_summary(d: Any, op: str, lba: int, sectors: int, pattern: int) -> ModelRun:
    """Rebuild a ModelRun from the sandbox's summary, checking its shape; `expected` comes from the pattern
    seed (what the default guest writes), never from the sandbox."""
    from types import SimpleNamespace

    from ..machine import SECTOR, make_pattern
    if not isinstance(d, dict):
        return ModelRun(ok=False, error="the sandbox sent back something that is not a model run")
    run = ModelRun(ok=d.get("ok") is True, error=str(d.get("error", ""))[:500])
    for e in d.get("exits", []) if isinstance(d.get("exits"), list) else []:
        if isinstance(e, list) and len(e) == 4:
            run.exits.append(SimpleNamespace(reason=e[0], port=e[1], direction=e[2], count=e[3]))
    for item in d.get("image", []) if isinstance(d.get("image"), list) else []:
        if isinstance(item, list) and len(item) == 2 and isinstance(item[0], int) and isinstance(item[1], bytes):
            run.image[item[0]] = item[1]
    run.changed = [s for s in d.get("changed", []) if isinstance(s, int)] if isinstance(d.get("changed"), list) else []
    run.guest = d.get("guest") if isinstance(d.get("guest"), dict) else {}
    run.stages = [tuple(s) for s in d.get("stages", []) if isinstance(s, list) and len(s) == 3] \
        if isinstance(d.get("stages"), list) else []
    run.extra = d.get("extra") if isinstance(d.get("extra"), dict) else {}
    if op in ("write", "both"):
        n = sectors or 256
        data = make_pattern(pattern, SECTOR * max(1, n))
        run.expected = {lba + i: data[i * SECTOR:(i + 1) * SECTOR] for i in range(n)}
    return run
