"""vl.c (QEMU v1.6.1), the part that runs the main thread: `main_loop()`.

The rest of vl.c (option parsing, machine creation) is vmio_edu.machine and hw/i386/pc_piix.py.
"""
from __future__ import annotations

from ..trace.tracepoint import tracepoint
from .cpus import qemu_mutex_lock_iothread
from .main_loop import main_loop_wait
from .state import qemu_state


# The command line the machine stands for (hw/i386/pc_piix.py): main's argc, argv and envp in a backtrace,
# whose main-thread frames end in vl.c's main (vl.c:2894, calling main_loop at 4431).
COMMAND_LINE = ("qemu-system-x86_64", "-enable-kvm", "-hda", "disk.img")


def main_loop_should_exit() -> bool:
    """True once a shutdown was requested (QEMU also handles reset, suspend and powerdown requests here)."""
    return qemu_state().shutdown_requested


@tracepoint("qemu-event-loop", args=())
def main_loop() -> None:
    """The main thread: with KVM it always waits blocking, iteration after iteration, until shutdown.
    vl.c's main() takes the BQL before calling it; the model thread starts here, so it takes it here."""
    qemu_mutex_lock_iothread()
    nonblocking = False  # !kvm_enabled() && last_io > 0: never with KVM
    while not main_loop_should_exit():
        main_loop_wait(nonblocking)
