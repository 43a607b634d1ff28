"""QEMU without a board, for tests that drive one layer by hand (what pc_init1 would set up): the
deterministic scheduler, QEMU's state with an I/O address space, the main loop's context and a raw image
opened by the block layer. Subclasses add their devices, then call `start()` to spawn the main loop."""
from __future__ import annotations

from typing import Callable

from vmio_edu.qemu.block import bdrv_close, bdrv_open
from vmio_edu.qemu.cpus import qemu_mutex_lock_iothread
from vmio_edu.qemu.exec import AddressSpace
from vmio_edu.qemu.main_loop import qemu_cleanup_main_loop, qemu_init_main_loop
from vmio_edu.qemu.memory import MemoryRegion
from vmio_edu.qemu.state import QemuState
from vmio_edu.qemu.vl import main_loop
from vmio_edu.trace.sched import Scheduler


class QemuRig:
    def __init__(self, image: str, latency: int = 1, readonly: bool = False, hooks=None):
        self.sched = Scheduler(latency=latency)
        self.state = QemuState(self.sched)
        self.sched.machine = self.state
        self.state.address_space_io = AddressSpace("I/O", MemoryRegion("io", 0x10000))
        qemu_init_main_loop(self.state)
        self.bs = bdrv_open(image, readonly=readonly)
        if hooks is not None:
            self.sched.attach(hooks=hooks)
        self.closed = False

    def start(self) -> None:
        """Spawn the main loop (it first runs when the scheduler picks it)."""
        self.sched.spawn("main", main_loop)

    def run_vcpu(self, body: Callable[[], None]) -> None:
        """Run `body` on a vCPU model thread holding the BQL, then halt it; wait until nothing can run."""
        sched = self.sched

        def vcpu():
            qemu_mutex_lock_iothread()
            body()
            sched.block("halted")

        sched.spawn("vcpu0", vcpu, vcpu=True)
        parked = sched.resume()
        if parked.reason == "error":
            raise parked.detail
        assert parked.reason == "idle", parked

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.state.shutdown_requested = True
        self.sched.close()
        bdrv_close(self.bs)
        qemu_cleanup_main_loop(self.state)
