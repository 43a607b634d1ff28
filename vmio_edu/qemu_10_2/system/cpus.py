"""system/cpus.c (QEMU v10.2.0): the big QEMU lock, now called the BQL in the code too.

QEMU 1.6.1's `qemu_mutex_lock_iothread`/`qemu_mutex_unlock_iothread` became `bql_lock`/`bql_unlock`
(QEMU 8.2). What moved is *where* it is taken on this path: the 10.2 vCPU thread drops it once when it
enters `kvm_cpu_exec` and handles PIO exits without it; `prepare_mmio_access` (system/physmem.c) takes it
around each device access. So a `rep outsw` of 256 words takes and drops the BQL 256 times on the vCPU
thread, where 1.6.1 held it across all of `kvm_handle_io`.

`bql_lock()` is a macro (include/qemu/main-loop.h:368) for `bql_lock_impl(__FILE__, __LINE__)`: callers
here pass the file and line of their own `bql_lock()` call, as the macro does.

Only one model thread runs at a time (vmio_edu.trace.sched), but a thread can hold the BQL while it waits
(the main loop running a nested aio_poll under it, e.g. a cancel in a bottom half): then another thread
that takes the BQL sleeps until it is released, as on the real mutex. Taking it twice is QEMU's g_assert.
"""
from __future__ import annotations

from ...trace.tracepoint import current_context, emit, tracepoint
from ...qemu.state import qemu_state


def bql_locked() -> bool:
    """Does the calling thread hold the BQL (QEMU keeps a thread-local flag)?"""
    s = qemu_state()
    return s.bql_owner is not None and s.bql_owner == s.sched.current().name


@tracepoint("qemu-cpu", args=("file", "line"))
def bql_lock_impl(file: str, line: int) -> None:
    """Take the BQL (the real code asserts the thread does not hold it already)."""
    s = qemu_state()
    t = s.sched.current()
    if s.bql_owner == t.name:
        raise RuntimeError(f"BQL already held by {t.name} when it takes it again at {file}:{line}")
    while s.bql_owner is not None:  # held by a thread that waits for something: sleep on the mutex
        waiters = s.extra.setdefault("bql_waiters", [])
        waiters.append(t)
        s.sched.block("bql_lock")
        if t in waiters:  # woken for another reason (the machine is closing)
            waiters.remove(t)
    s.bql_owner = t.name


def bql_lock(file: str, line: int) -> None:
    """The `bql_lock()` macro at `file`:`line` of the caller."""
    bql_lock_impl(file, line)


@tracepoint("qemu-cpu", args=())
def bql_unlock() -> None:
    """Release the BQL (asserting the caller holds it)."""
    s = qemu_state()
    if s.bql_owner != s.sched.current().name:
        raise RuntimeError(f"bql_unlock by {s.sched.current().name}, but the BQL is held by {s.bql_owner}")
    s.bql_owner = None
    waiters = s.extra.get("bql_waiters")
    if waiters:
        s.sched.wake(waiters.pop(0))


@tracepoint("qemu-cpu", args=("state",))
def vm_stop(state: str, why: str = "") -> None:
    """Pause the VM (RUN_STATE_IO_ERROR for a werror=enospc stop). As in vmio_edu.qemu.cpus: record the
    state and reason, and ask the vCPU to park at its next KVM_RUN so `Machine.run()` returns."""
    ctx = current_context()
    s = getattr(ctx, "machine", None)
    if s is not None:
        s.extra["runstate"] = state
        s.extra["vm_stop_reason"] = why
        s.sched.park_requested = True
    emit("vm_stop", "qemu-cpu", state=state, why=why)
