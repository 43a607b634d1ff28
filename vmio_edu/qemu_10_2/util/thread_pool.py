"""util/thread-pool.c (QEMU v10.2.0): the worker threads that do blocking I/O.

1.6.1's pool completed requests through an EventNotifier of its own and a semaphore; 10.2's:

    thread_pool_submit_co(func, arg)         (coroutine: file-posix's raw_thread_pool_submit)
      → thread_pool_submit_aio(func, arg, thread_pool_co_cb, &tpc): queue the request in the pool of the
        *current* AioContext, spawn a worker if none is idle (via new_thread_bh, on the main loop),
        qemu_cond_signal(&pool->request_cond)
      → qemu_coroutine_yield()
    worker_thread: take the request, func(arg) (handle_aiocb_rw → pwrite), THREAD_DONE,
      qemu_bh_schedule(pool->completion_bh)        (wakes the main loop through aio_notify)
    main loop: thread_pool_completion_bh → elem->common.cb = thread_pool_co_cb → aio_co_wake(co)
      → the coroutine resumes after its yield and returns tpc.ret
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Generator

from ...qemu.state import qemu_state
from ...trace.tracepoint import tracepoint
from .async_ import AioContext, aio_bh_new, aio_co_wake, qemu_bh_cancel, qemu_bh_schedule, \
    qemu_get_current_aio_context
from .qemu_coroutine import qemu_coroutine_self, qemu_coroutine_yield, qemu_in_coroutine
from .qemu_thread_posix import (QemuCond, QemuMutex, QemuThread, qemu_cond_init, qemu_cond_signal,
                                qemu_cond_timedwait, qemu_mutex_init, qemu_mutex_lock, qemu_mutex_unlock,
                                qemu_thread_create)

THREAD_QUEUED, THREAD_ACTIVE, THREAD_DONE = 0, 1, 2
STATE_NAMES = {THREAD_QUEUED: "THREAD_QUEUED", THREAD_ACTIVE: "THREAD_ACTIVE", THREAD_DONE: "THREAD_DONE"}
COMPLETED_KEPT = 32
EINPROGRESS = 115


@dataclass(eq=False)
class ThreadPoolElementAio:
    """One request; `cb`/`opaque` are its BlockAIOCB `common`."""

    cb: Callable[[Any, int], None] | None
    opaque: Any
    func: Callable[[Any], int]
    arg: Any
    pool: "ThreadPoolAio"
    state: int = THREAD_QUEUED
    ret: int = 0
    id: int = 0  # model-only
    worker: str | None = None  # model-only

    def view(self) -> dict:
        arg = self.arg.view() if hasattr(self.arg, "view") else type(self.arg).__name__
        return {"id": self.id, "func": getattr(self.func, "__name__", "?"), "arg": arg,
                "state": STATE_NAMES[self.state], "ret": self.ret, "worker": self.worker,
                "cb": getattr(self.cb, "__name__", None)}


@dataclass
class PoolWorker:
    """Model-only bookkeeping of one worker, for views."""

    name: str
    state: str = "starting"
    request: ThreadPoolElementAio | None = None
    done: int = 0

    def view(self) -> dict:
        return {"name": self.name, "state": self.state,
                "request": self.request.id if self.request is not None else None, "done": self.done}


@dataclass(eq=False)
class ThreadPoolAio:
    ctx: AioContext
    completion_bh: Any = None
    lock: QemuMutex = field(default_factory=QemuMutex)
    worker_stopped: QemuCond = field(default_factory=QemuCond)
    request_cond: QemuCond = field(default_factory=QemuCond)
    new_thread_bh: Any = None
    head: list[ThreadPoolElementAio] = field(default_factory=list)  # every request not completed, newest first
    request_list: list[ThreadPoolElementAio] = field(default_factory=list)  # queued, oldest first
    cur_threads: int = 0
    idle_threads: int = 0
    new_threads: int = 0
    pending_threads: int = 0
    min_threads: int = 0
    max_threads: int = 64
    workers: list[PoolWorker] = field(default_factory=list)
    completed: list[dict] = field(default_factory=list)
    next_request_id: int = 1
    stopping: bool = False

    def view(self) -> dict:
        return {"min_threads": self.min_threads, "max_threads": self.max_threads,
                "cur_threads": self.cur_threads, "idle_threads": self.idle_threads,
                "new_threads": self.new_threads, "pending_threads": self.pending_threads,
                "queue": [r.view() for r in self.request_list], "in_flight": [r.view() for r in self.head],
                "workers": [w.view() for w in self.workers], "completed": list(self.completed),
                "request_cond": self.request_cond.view()}


def _me(pool: ThreadPoolAio) -> PoolWorker:
    name = qemu_state().sched.current().name
    return next(w for w in pool.workers if w.name == name)


@tracepoint("qemu-threadpool", args=("opaque=pool",))
def worker_thread(pool: ThreadPoolAio) -> None:
    """A worker: start the next pending worker, then take requests until there are too many threads
    (an idle worker would leave after 10 s without work; the model has no clock, so it stays)."""
    me = _me(pool)
    qemu_mutex_lock(pool.lock)
    pool.pending_threads -= 1
    do_spawn_thread(pool)
    while pool.cur_threads <= pool.max_threads and not pool.stopping:
        if not pool.request_list:
            pool.idle_threads += 1
            me.state = "idle"
            qemu_cond_timedwait(pool.request_cond, pool.lock, 10000)
            pool.idle_threads -= 1
            continue
        req = pool.request_list.pop(0)
        req.state = THREAD_ACTIVE
        req.worker, me.state, me.request = me.name, "active", req
        qemu_mutex_unlock(pool.lock)

        ret = req.func(req.arg)  # no lock held: the slow part (the pwrite)

        req.ret = ret
        req.state = THREAD_DONE  # ret before state (smp_wmb)
        me.request, me.done = None, me.done + 1
        qemu_bh_schedule(pool.completion_bh)  # the main loop will complete it
        qemu_mutex_lock(pool.lock)
    pool.cur_threads -= 1
    me.state = "exited"
    qemu_cond_signal(pool.worker_stopped)
    qemu_cond_signal(pool.request_cond)
    qemu_mutex_unlock(pool.lock)


@tracepoint("qemu-threadpool", args=("pool",))
def do_spawn_thread(pool: ThreadPoolAio) -> None:
    """Create one worker from the backlog (with the pool lock held)."""
    if not pool.new_threads:
        return
    pool.new_threads -= 1
    pool.pending_threads += 1
    name = f"worker-{len(pool.workers) + 1}"
    pool.workers.append(PoolWorker(name))
    qemu_thread_create(QemuThread(), "worker", worker_thread, pool, model_name=name)


@tracepoint("qemu-threadpool", args=("opaque=pool",))
def spawn_thread_bh_fn(pool: ThreadPoolAio) -> None:
    """new_thread_bh, on the main loop: create the worker the submitter asked for (so it inherits the
    main thread's CPU affinity, not the vCPU's)."""
    qemu_mutex_lock(pool.lock)
    do_spawn_thread(pool)
    qemu_mutex_unlock(pool.lock)


@tracepoint("qemu-threadpool", args=("pool",))
def spawn_thread(pool: ThreadPoolAio) -> None:
    pool.cur_threads += 1
    pool.new_threads += 1
    if not pool.pending_threads:
        qemu_bh_schedule(pool.new_thread_bh)


@tracepoint("qemu-threadpool", args=("opaque=pool",))
def thread_pool_completion_bh(pool: ThreadPoolAio) -> None:
    """On the pool's AioContext: complete every THREAD_DONE request (unlink it, call its cb), rescanning
    after each callback; the BH reschedules itself around the callback in case the callback polls."""
    restart = True
    while restart:
        restart = False
        for elem in list(pool.head):
            if elem.state != THREAD_DONE:
                continue
            pool.head.remove(elem)
            if elem.cb is not None:
                pool.completed = (pool.completed + [elem.view()])[-COMPLETED_KEPT:]
                qemu_bh_schedule(pool.completion_bh)
                elem.cb(elem.opaque, elem.ret)
                qemu_bh_cancel(pool.completion_bh)
                restart = True
                break


@tracepoint("qemu-threadpool", args=("func", "arg", "cb", "opaque"))
def thread_pool_submit_aio(func: Callable[[Any], int], arg: Any, cb: Callable[[Any, int], None] | None,
                           opaque: Any) -> ThreadPoolElementAio:
    """Queue func(arg) on the pool of the calling thread's AioContext; cb(opaque, ret) runs there."""
    from .async_ import aio_get_thread_pool
    ctx = qemu_get_current_aio_context()
    pool = aio_get_thread_pool(ctx)
    if pool.ctx is not qemu_get_current_aio_context():
        raise AssertionError("pool->ctx == qemu_get_current_aio_context()")
    req = ThreadPoolElementAio(cb, opaque, func, arg, pool, id=pool.next_request_id)
    pool.next_request_id += 1
    pool.head.insert(0, req)
    qemu_mutex_lock(pool.lock)
    if pool.idle_threads == 0 and pool.cur_threads < pool.max_threads:
        spawn_thread(pool)
    pool.request_list.append(req)
    qemu_mutex_unlock(pool.lock)
    qemu_cond_signal(pool.request_cond)
    return req


@dataclass(eq=False)
class ThreadPoolCo:
    co: Any
    ret: int


@tracepoint("qemu-threadpool", args=("opaque=tpc", "ret"))
def thread_pool_co_cb(tpc: ThreadPoolCo, ret: int) -> None:
    """The completion callback of a coroutine's request: store ret, wake the coroutine."""
    tpc.ret = ret
    aio_co_wake(tpc.co)


@tracepoint("qemu-threadpool", args=("func", "arg"))
def thread_pool_submit_co(func: Callable[[Any], int], arg: Any) -> Generator[Any, Any, int]:
    """Submit func(arg) and yield until thread_pool_co_cb wakes us; returns func's result."""
    if not qemu_in_coroutine():
        raise AssertionError("qemu_in_coroutine()")
    tpc = ThreadPoolCo(qemu_coroutine_self(), -EINPROGRESS)
    thread_pool_submit_aio(func, arg, thread_pool_co_cb, tpc)
    yield from qemu_coroutine_yield()
    return tpc.ret


def thread_pool_new_aio(ctx: AioContext) -> ThreadPoolAio:
    """thread_pool_init_one: the completion and spawn BHs, the lock and conditions (min 0 / max 64 threads:
    the AioContext defaults, so no worker exists before the first request)."""
    pool = ThreadPoolAio(ctx)
    pool.completion_bh = aio_bh_new(ctx, thread_pool_completion_bh, pool)
    qemu_mutex_init(pool.lock)
    qemu_cond_init(pool.worker_stopped)
    qemu_cond_init(pool.request_cond)
    pool.new_thread_bh = aio_bh_new(ctx, spawn_thread_bh_fn, pool)
    return pool


def thread_pool_free_aio(pool: ThreadPoolAio) -> None:
    """Model-only end of the pool: its workers were already unwound by the scheduler, and the context goes
    with it, so its BHs are just dropped (qemu_bh_delete would kick the closing context)."""
    pool.stopping = True
    pool.completion_bh = pool.new_thread_bh = None
