"""thread-pool.c (QEMU v1.6.1): the worker threads that do blocking I/O off the vCPU and main threads.

`thread_pool_submit_aio(pool, func, arg, cb, opaque)` queues a request and posts the pool semaphore. A
worker (`worker_thread`) wakes, takes the first request and runs `func(arg)` (for raw-posix: `aio_worker`,
the real pwrite/pread) with no lock held. It stores the result, marks the request THREAD_DONE and sets the
pool's event notifier. The main loop sees the eventfd readable and runs `event_notifier_ready`, which calls
`cb(opaque, ret)` for every finished request.

If no worker is idle, `spawn_thread` asks the *main loop* to create one, through a bottom half, so that the
new thread inherits the main thread's CPU affinity rather than the vCPU's.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from ..trace.tracepoint import tracepoint
from .async_ import QEMUBH, AioContext, aio_bh_new, qemu_bh_delete, qemu_bh_schedule
from .aio_posix import aio_set_event_notifier
from .state import qemu_state
from .util.event_notifier_posix import (EventNotifier, event_notifier_cleanup, event_notifier_init,
                                        event_notifier_set, event_notifier_test_and_clear)
from .util.qemu_thread_posix import (QemuMutex, QemuSemaphore, QemuThread, qemu_mutex_lock, qemu_mutex_unlock,
                                     qemu_sem_init, qemu_sem_post, qemu_sem_timedwait, qemu_thread_create)

THREAD_QUEUED, THREAD_ACTIVE, THREAD_DONE, THREAD_CANCELED = 0, 1, 2, 3
STATE_NAMES = {THREAD_QUEUED: "THREAD_QUEUED", THREAD_ACTIVE: "THREAD_ACTIVE", THREAD_DONE: "THREAD_DONE",
               THREAD_CANCELED: "THREAD_CANCELED"}
COMPLETED_KEPT = 32  # how many completed requests the view remembers


@dataclass
class ThreadPoolElement:
    """One request. Its first fields are QEMU's BlockDriverAIOCB `common` (cb, opaque)."""

    cb: Callable[[Any, int], None] | None
    opaque: Any
    func: Callable[[Any], int]
    arg: Any
    pool: "ThreadPool"
    id: int = 0  # model-only: a number for views
    state: int = THREAD_QUEUED
    ret: int = 0
    worker: str | None = None  # model-only: the thread that ran it

    def view(self) -> dict:
        arg = self.arg.view() if hasattr(self.arg, "view") else type(self.arg).__name__
        return {"id": self.id, "func": self.func.__name__, "arg": arg, "state": STATE_NAMES[self.state],
                "ret": self.ret, "worker": self.worker,
                "cb": getattr(self.cb, "__name__", None)}


@dataclass
class PoolWorker:
    """Model-only bookkeeping for one worker thread, for the view."""

    name: str
    state: str = "starting"  # starting | idle | active | exited
    request: ThreadPoolElement | None = None
    done: int = 0

    def view(self) -> dict:
        return {"name": self.name, "state": self.state,
                "request": self.request.id if self.request is not None else None, "done": self.done}


@dataclass
class ThreadPool:
    ctx: AioContext
    notifier: EventNotifier = field(default_factory=EventNotifier)
    lock: QemuMutex = field(default_factory=QemuMutex)
    sem: QemuSemaphore = field(default_factory=QemuSemaphore)
    max_threads: int = 64
    new_thread_bh: QEMUBH | None = None
    head: list[ThreadPoolElement] = field(default_factory=list)  # every request not yet completed, newest first
    request_list: list[ThreadPoolElement] = field(default_factory=list)  # queued, oldest first
    cur_threads: int = 0
    idle_threads: int = 0
    new_threads: int = 0  # backlog of threads to create
    pending_threads: int = 0  # threads created but not running yet
    stopping: bool = False
    # model-only, for views
    workers: list[PoolWorker] = field(default_factory=list)
    completed: list[dict] = field(default_factory=list)
    next_request_id: int = 1

    def view(self) -> dict:
        return {
            "max_threads": self.max_threads, "cur_threads": self.cur_threads,
            "idle_threads": self.idle_threads, "new_threads": self.new_threads,
            "pending_threads": self.pending_threads,
            "queue": [r.view() for r in self.request_list],
            "in_flight": [r.view() for r in self.head],
            "workers": [w.view() for w in self.workers],
            "completed": list(self.completed),
            "sem": self.sem.view(),
            "notifier": self.notifier.view(),
        }


def thread_pool_new(ctx: AioContext) -> ThreadPool:
    """thread_pool_init_one: the notifier (watched by ctx), the semaphore and the spawn BH."""
    pool = ThreadPool(ctx)
    event_notifier_init(pool.notifier, False)
    pool.notifier.container = pool
    qemu_sem_init(pool.sem, 0)
    pool.new_thread_bh = aio_bh_new(ctx, spawn_thread_bh_fn, pool)
    aio_set_event_notifier(ctx, pool.notifier, event_notifier_ready)
    return pool


def thread_pool_free(pool: ThreadPool) -> None:
    """Stop watching the pool's notifier and close it. QEMU also stops the workers here (stopping = true,
    post the semaphore, wait); in vmio-edu the scheduler has already unwound them when this runs."""
    qemu_bh_delete(pool.new_thread_bh)
    pool.stopping = True
    aio_set_event_notifier(pool.ctx, pool.notifier, None)
    event_notifier_cleanup(pool.notifier)


def _me(pool: ThreadPool) -> PoolWorker:
    name = qemu_state().sched.current().name
    return next(w for w in pool.workers if w.name == name)


@tracepoint("qemu-threadpool", args=("opaque=pool",))
def worker_thread(pool: ThreadPool) -> None:
    """A worker: start the next pending worker, then forever wait for a request and run it."""
    me = _me(pool)
    qemu_mutex_lock(pool.lock)
    pool.pending_threads -= 1
    do_spawn_thread(pool)
    while not pool.stopping:
        while True:
            pool.idle_threads += 1
            me.state = "idle"
            qemu_mutex_unlock(pool.lock)
            ret = qemu_sem_timedwait(pool.sem, 10000)
            qemu_mutex_lock(pool.lock)
            pool.idle_threads -= 1
            if not (ret == -1 and pool.request_list):
                break
        if ret == -1 or pool.stopping:
            break
        req = pool.request_list.pop(0)
        req.state = THREAD_ACTIVE
        req.worker, me.state, me.request = me.name, "active", req
        qemu_mutex_unlock(pool.lock)

        ret = req.func(req.arg)  # no lock held: this is the slow part (the pwrite)

        req.ret = ret
        req.state = THREAD_DONE  # ret is written before state (smp_wmb in QEMU)
        me.request, me.done = None, me.done + 1
        qemu_mutex_lock(pool.lock)  # (cancellation, not modelled, would broadcast check_cancel here)
        event_notifier_set(pool.notifier)  # wakes the main loop: the request is ready for its callback
    pool.cur_threads -= 1
    me.state = "exited"
    qemu_mutex_unlock(pool.lock)


@tracepoint("qemu-threadpool", args=("pool",))
def do_spawn_thread(pool: ThreadPool) -> None:
    """Create one worker from the backlog (runs with the pool lock held)."""
    if not pool.new_threads:
        return
    pool.new_threads -= 1
    pool.pending_threads += 1
    name = f"worker-{len(pool.workers) + 1}"
    pool.workers.append(PoolWorker(name))
    qemu_thread_create(QemuThread(), worker_thread, pool, name=name)


@tracepoint("qemu-threadpool", args=("opaque=pool",))
def spawn_thread_bh_fn(pool: ThreadPool) -> None:
    """The new_thread_bh bottom half: on the main loop, create the worker the vCPU asked for."""
    qemu_mutex_lock(pool.lock)
    do_spawn_thread(pool)
    qemu_mutex_unlock(pool.lock)


@tracepoint("qemu-threadpool", args=("pool",))
def spawn_thread(pool: ThreadPool) -> None:
    """Count one more worker. Unless threads are being created already (they will spawn the backlog
    themselves), ask the main loop to create it via new_thread_bh."""
    pool.cur_threads += 1
    pool.new_threads += 1
    if not pool.pending_threads:
        qemu_bh_schedule(pool.new_thread_bh)


@tracepoint("qemu-threadpool", args=("notifier",))
def event_notifier_ready(notifier: EventNotifier) -> None:
    """The pool notifier's handler, on the main loop: clear it, then complete every THREAD_DONE request
    (unlink it and call cb(opaque, ret)), rescanning after each callback since it may submit more."""
    pool: ThreadPool = notifier.container
    event_notifier_test_and_clear(notifier)
    restart = True
    while restart:
        restart = False
        for elem in list(pool.head):
            if elem.state not in (THREAD_CANCELED, THREAD_DONE):
                continue
            pool.head.remove(elem)
            if elem.state == THREAD_DONE and elem.cb is not None:
                pool.completed = (pool.completed + [elem.view()])[-COMPLETED_KEPT:]
                elem.cb(elem.opaque, elem.ret)
                restart = True
                break


@tracepoint("qemu-threadpool", args=("pool", "func", "arg", "cb", "opaque"))
def thread_pool_submit_aio(pool: ThreadPool, func: Callable[[Any], int], arg: Any,
                           cb: Callable[[Any, int], None] | None, opaque: Any) -> ThreadPoolElement:
    """Queue `func(arg)` for a worker; `cb(opaque, ret)` will run on the main loop when it is done."""
    req = ThreadPoolElement(cb, opaque, func, arg, pool, id=pool.next_request_id)
    pool.next_request_id += 1
    req.state = THREAD_QUEUED
    pool.head.insert(0, req)
    qemu_mutex_lock(pool.lock)
    if pool.idle_threads == 0 and pool.cur_threads < pool.max_threads:
        spawn_thread(pool)
    pool.request_list.append(req)
    qemu_mutex_unlock(pool.lock)
    qemu_sem_post(pool.sem)
    return req
