"""Watch your own function run inside the machine, in the debugger panel (not graded).

    from vmio_edu.grading.demo import debug_with
    from vmio_edu.qemu.hw.ide import core
    dbg = debug_with(core, "ide_data_writew", ide_data_writew, op="write", lba=5, sectors=1)
    dbg.break_at("ide_data_writew")
    dbg.cont()
    dbg.panel()

The learner's function takes the modelled one's place exactly as the grader plugs it in (`grading.model.plugged`:
traced through the original's trace point, so breakpoints, backtraces and the timeline see it under the real
name and file:line), and it stays in place for as long as the debugger lives, so Step, Back and the timeline
(which replay the run) keep running it. `dbg.close()` puts QEMU's own function back.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable

from .model import plugged, replace_in_objects, restore_objects


def debug_with(module: Any, name: str, fn: Callable, **machine_kw: Any) -> Any:
    """A `Debugger` over a fresh `Machine(**machine_kw)` with `fn` in place of `module.name`."""
    if not callable(fn):
        raise TypeError(f"debug_with needs your function, not {type(fn).__name__}: define {name} first")
    from ..machine import Machine

    stack = contextlib.ExitStack()
    original = getattr(module, name, None)
    try:
        replacement = stack.enter_context(plugged(module, name, fn))
        m = Machine(**machine_kw)
        # callbacks the device captured when it was built (port lists, end functions) point at it too
        changed = replace_in_objects([m.ide, m.state.address_space_io, m.state.address_space_memory, m.state],
                                     original, replacement)
        stack.callback(restore_objects, changed)
        stack.callback(m.close)
        dbg = m.debugger()
    except BaseException:
        stack.close()
        raise
    own_close = dbg.close

    def close() -> None:
        """Close the machine and put QEMU's own function back."""
        try:
            own_close()
        finally:
            stack.close()

    dbg.close = close
    return dbg


__all__ = ["debug_with"]
