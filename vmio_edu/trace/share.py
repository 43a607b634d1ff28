"""Share a moment (issue 11, item 9): `stop.reference` is one line of Python that reaches the same stop
in a fresh machine, e.g.

    Machine(op="write", lba=4, sectors=1, engine="unicorn", seed=0).debugger().goto(20200)

It is built from the parameters the machine was really made with (only those that differ from the
defaults, plus op, lba, sectors, engine and seed, always). Runs are deterministic, so the same parameters
and index give the same state on any computer. What a line cannot carry: a guest program of one's own
(written `GUEST`: the learner passes the same program), and a disk image file (its path is given; the
image must hold the same bytes as when the machine was made). A fresh temporary image is not mentioned:
every Machine makes an identical blank one.
"""
from __future__ import annotations

import inspect
import json
from typing import Any

_ALWAYS = ("op", "lba", "sectors", "engine", "seed")


def _lit(v: Any) -> str:
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (bytes, bytearray)):
        return "GUEST"
    return repr(v)


def machine_call(machine: Any) -> str:
    """`Machine(...)` with this machine's real parameters."""
    from ..machine import Machine

    cfg = dict(machine._config)
    cfg["engine"] = machine.engine  # "auto" resolved to what ran
    defaults = {n: p.default for n, p in inspect.signature(Machine.__init__).parameters.items()
                if p.default is not inspect.Parameter.empty}
    parts = []
    if cfg.get("guest") is not None:
        parts.append("GUEST")
    if cfg.get("image") is not None:
        parts.append(f"image={_lit(str(cfg['image']))}")
    for k in _ALWAYS:
        parts.append(f"{k}={_lit(cfg.get(k, defaults.get(k)))}")
    for k, v in cfg.items():
        if k in _ALWAYS or k in ("guest", "image", "record") or k not in defaults:
            continue
        if v != defaults[k]:
            parts.append(f"{k}={_lit(v)}")
    return f"Machine({', '.join(parts)})"


def reference(prefix: str | None, index: int, guest: tuple | None = None) -> str | None:
    """The line for the moment at `index` (and, at a guest stop, its guest position)."""
    if prefix is None:
        return None
    if guest is not None:
        rip, hit, steps = guest
        return f"{prefix}.debugger().goto({index}, guest=({rip:#x}, {hit}, {steps}))"
    return f"{prefix}.debugger().goto({index})"
