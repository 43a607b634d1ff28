"""system/main.c (QEMU v10.2.0): the main thread after start-up (1.6.1 ran main_loop() from vl.c's main).

`main` (system/main.c:69) runs qemu_init, which is vmio_edu.machine here, drops the BQL, and then, with no
UI that needs the main thread, calls `qemu_default_main(NULL)` on it (main.c:93): a backtrace on the main
thread ends in main's frame (vmio_edu.trace.backtrace).

`qemu_default_main` takes the BQL and runs `qemu_main_loop`. The main thread's AioContext is
qemu_aio_context (qemu_init_main_loop calls qemu_set_current_aio_context on this thread in QEMU; the
model's set-up runs on the controller, so the thread names its context when it starts).
"""
from __future__ import annotations

from ...qemu.state import qemu_state
from ...trace.tracepoint import tracepoint
from ..util.async_ import qemu_set_current_aio_context
from .cpus import bql_lock, bql_unlock
from .runstate import qemu_main_loop


# The command line the machine stands for (hw/i386/pc_piix.py): main's argc and argv in a backtrace.
COMMAND_LINE = ("qemu-system-x86_64", "-accel", "kvm", "-hda", "disk.img")


@tracepoint("qemu-event-loop", args=("opaque",))
def qemu_default_main(opaque: object = None) -> int:
    """BQL, the main loop until shutdown, BQL released (qemu_cleanup and exit are the machine's close)."""
    qemu_set_current_aio_context(qemu_state().aio_context)
    bql_lock("../system/main.c", 49)
    status = qemu_main_loop()
    bql_unlock()
    return status
