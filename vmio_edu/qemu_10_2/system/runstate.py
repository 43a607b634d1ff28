"""system/runstate.c (QEMU v10.2.0): the main thread's loop (1.6.1's vl.c main_loop).

system/main.c's qemu_default_main() takes the BQL and calls `qemu_main_loop()`; the model thread starts
there, so it takes the BQL and names its AioContext (qemu_set_current_aio_context, done by
qemu_init_main_loop on the main thread in QEMU) first.
"""
from __future__ import annotations

from ...qemu.state import qemu_state
from ...trace.tracepoint import tracepoint
from ..util.async_ import qemu_set_current_aio_context
from ..util.main_loop import main_loop_wait
from .cpus import bql_lock


def main_loop_should_exit() -> bool:
    """True once a shutdown was requested (reset, suspend, powerdown and vmstop requests: not modelled)."""
    return qemu_state().shutdown_requested


@tracepoint("qemu-event-loop", args=())
def qemu_main_loop() -> int:
    """Wait for and dispatch events, iteration after iteration, until shutdown."""
    s = qemu_state()
    qemu_set_current_aio_context(s.aio_context)
    bql_lock("../system/main.c", 49)
    while not main_loop_should_exit():
        main_loop_wait(False)
    return 0
