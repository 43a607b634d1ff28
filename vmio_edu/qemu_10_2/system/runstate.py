"""system/runstate.c (QEMU v10.2.0): the main thread's loop (1.6.1's vl.c main_loop). system/main.c's
qemu_default_main() calls it with the BQL held."""
from __future__ import annotations

from ...qemu.state import qemu_state
from ...trace.tracepoint import tracepoint
from ..util.main_loop import main_loop_wait


def main_loop_should_exit() -> bool:
    """True once a shutdown was requested (reset, suspend, powerdown and vmstop requests: not modelled)."""
    return qemu_state().shutdown_requested


@tracepoint("qemu-event-loop", args=())
def qemu_main_loop() -> int:
    """Wait for and dispatch events, iteration after iteration, until shutdown."""
    while not main_loop_should_exit():
        main_loop_wait(False)
    return 0
