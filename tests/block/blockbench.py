"""A minimal machine for the block tests: the scheduler, QEMU's state, the main loop on "main", and a
model thread standing in for the vCPU that submits requests and then ticks until their callbacks ran."""
from __future__ import annotations

from vmio_edu.qemu.block import bdrv_aio_readv, bdrv_aio_writev
from vmio_edu.qemu.cpus import qemu_mutex_lock_iothread, qemu_mutex_unlock_iothread
from vmio_edu.qemu.util.iov import QEMUIOVector, iovec, qemu_iovec_init_external

from qemu_rig import QemuRig

SECTOR = 512
MAX_TICKS = 500


class Rec:
    """Tiny recording hooks: every trace point entry/exit with its thread, and the shadow stack at
    chosen functions."""

    def __init__(self, watch=("paio_submit",)):
        self.events = []
        self.watch = set(watch)
        self.stacks = []  # (function, thread, [frame names innermost first], [Frame...])

    def enter(self, tp, args, ctx):
        self.events.append(("enter", tp.name, ctx.name, tuple(a for a in args if isinstance(a, (int, str)))))
        if tp.name in self.watch:
            self.stacks.append((tp.name, ctx.name, [f.tp.name for f in reversed(ctx.stack)], list(ctx.stack)))

    def leave(self, tp, result, ctx):
        self.events.append(("leave", tp.name, ctx.name, result if isinstance(result, int) else None))

    def threads_of(self, name):
        return [t for kind, n, t, _ in self.events if kind == "enter" and n == name]


class Request:
    def __init__(self, op, sector, nb, data=None, bufs=None):
        self.op, self.sector, self.nb = op, sector, nb
        if bufs is None:
            bufs = [bytearray(data) if data is not None else bytearray(b"\xaa" * (nb * SECTOR))]
        self.bufs = bufs
        self.qiov = QEMUIOVector()
        qemu_iovec_init_external(self.qiov, [iovec(b, len(b)) for b in bufs])
        self.done = False
        self.ret = None
        self.cb_thread = None
        self.submit_tick = self.cb_tick = None

    @property
    def data(self) -> bytes:
        return b"".join(bytes(b) for b in self.bufs)


def request_cb(opaque, ret):
    """The device's completion callback (ide_sector_write_cb's place)."""
    req, sched = opaque
    req.done, req.ret = True, ret
    req.cb_thread, req.cb_tick = sched.current().name, sched.ticks


class Bench(QemuRig):
    def __init__(self, image, latency=1, readonly=False, hooks=None):
        super().__init__(image, latency=latency, readonly=readonly, hooks=hooks)
        self.start()

    def run(self, *requests: Request, together: bool = False) -> None:
        """Submit each request from the vCPU and tick until its callback ran; with `together`, submit
        them all first and then tick until every callback ran."""
        sched = self.sched

        def submit(r):
            r.submit_tick = sched.ticks
            fn = bdrv_aio_writev if r.op == "write" else bdrv_aio_readv
            fn(self.bs, r.sector, r.qiov, r.nb, request_cb, (r, sched))

        def wait(rs):
            start = sched.ticks
            while not all(r.done for r in rs):  # the guest polls the status register: one exit per tick
                if sched.ticks - start > MAX_TICKS:
                    raise AssertionError(f"no completion after {MAX_TICKS} ticks")
                qemu_mutex_unlock_iothread()  # before KVM_RUN: the scheduling point
                qemu_mutex_lock_iothread()

        def guest():
            if together:
                for r in requests:
                    submit(r)
                wait(requests)
            else:
                for r in requests:
                    submit(r)
                    wait([r])

        self.run_vcpu(guest)

    def thread_names(self):
        return [t.name for t in self.sched.threads]


def make_image(path, sectors=16, fill=None) -> bytes:
    data = fill if fill is not None else bytes((i * 7 + 3) & 0xFF for i in range(sectors * SECTOR))
    with open(path, "wb") as f:
        f.write(data)
    return data


def read_image(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()
