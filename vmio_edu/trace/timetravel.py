"""Time travel for the debugger: checkpoints, restore and deterministic replay, the image's redo log.

The debugger (vmio_edu.trace.debugger) steps and stops; this module moves it to any index of the trace.
`TimeTravel` is a base class of `Debugger`: it keeps the state time travel needs (the pristine image,
the checkpoints, the redo log of image writes) and the moves (`_goto`, `_replay_to`, restore, quiesce).
The debugger calls in at three places on the model thread: `_at_kvm_run` (a checkpoint may be due),
`_log_write` (a host write completed) and `_forget_future` (the run diverged).

Time travel is deterministic replay from a saved state. The simplest saved state is the start:
`goto(i)` before the current position can close the machine, put the image back as it was when the
debugger was created, build a fresh machine from the same configuration and run it silently to index i.
`Machine` is a stable facade: the replayed machine is swapped in behind the caller's object
(`Machine._take_over`), so `m` (and `dbg.machine`, which *is* `m`) always shows the current state. Objects
taken out of it earlier (`ide = m.ide`) belong to the old machine: read them again.

Checkpoints make it fast (both engines; QEMU's savevm/loadvm in spirit, see vmio_edu.trace.checkpoint).
While the machine runs forwards, every `checkpoint_every` events (3000, ~20 ms of replay; 40,000 while
a `cont` runs into new ground, see `TimeTravel.checkpoint_every`) the debugger saves the whole machine at the next *quiescent point*: the vCPU entering KVM_RUN with nothing in flight
(no coroutine, no thread-pool request, no bottom half, no notifier set; the main loop in its poll, the
workers idle). `goto(i)` backwards then (1) runs the live machine on, silently, to its next quiescent point
(a few events, or a few thousand if a request is in flight), (2) restores into the *same* objects the
latest checkpoint at or before i whose thread configuration (`checkpoint.signature`) matches, truncating
the recorded trace and `machine.exits` to it and rewriting only the image bytes written since (a redo log
of every completed host pwrite, with the pristine copy), and (3) runs silently from there to i. A far
`goto` forwards jumps to a checkpoint ahead the same way. `dbg.last_restore` tells which state the last
goto/back started from: a checkpoint's index, -1 for a fresh machine, None when it just ran forwards.
After the guest halted for good nothing is quiescent, so the vCPU is first kicked out of its halt as QEMU
pauses a vCPU (qemu_cpu_kick: KVM_RUN returns -EINTR, kvm_cpu_exec is entered again); the kick's events
are not kept in the trace. The fresh machine is the fallback when no checkpoint fits: after a model
error, before the first write (those checkpoints have no pool worker yet, the live machine
has one), or when the live machine stays busy for `QUIESCE_LIMIT` events. Its replay makes checkpoints
again (checkpoints hold the old machine's objects, so they go with it). Memory: the first checkpoint holds
all of guest RAM (2 MiB); later ones share unchanged 4 KiB pages and hold ~100 KiB each.

Changes made to the machine by hand at a stop are not replayed from the start; a checkpoint taken after
such a change keeps it. If a replay differs from the recorded run, the checkpoints after that point are
dropped and the stop's message says so.

Real KVM: a KVM_RUN that takes more than 2-4 ms is kicked by a watchdog (vmio_edu.kvm.kick) and the
machine normally returns to QEMU's loop on each kick, which makes the trace depend on timing. The debugger
lets the kicks stay inside the engine (`spin_kick_limit`), so the trace is the same on every run and
replay lands on the same event. Checkpoints work there too: the Python side is saved as above, and the
kernel's side (registers, FPU/XSAVE, sregs, MSRs, LAPIC, vCPU events, debug registers, the in-kernel PIC
halves and IOAPIC, the clock) through the KVM_GET_* ioctls and back through KVM_SET_* in QEMU's
kvm_arch_put_registers order (vmio_edu.kvm.state), with guest RAM and the kvm_run/PIO pages. A quiescent
point there also needs the last I/O exit finished inside the kernel (`checkpoint.settle`: KVM_RUN with
immediate_exit), because no ioctl reads or restores an unfinished one. A halted real vCPU is kicked out of
its halt like the emulated one (KvmVcpu.sigpending: woken, its KVM_RUN returns -EINTR).
"""
from __future__ import annotations

import bisect
import os
import shutil
import tempfile
import time
import weakref
from typing import TYPE_CHECKING, Any

from ..errors import VmioError
from . import checkpoint as CP
from .events import HOLE, EventStore
from .recorder import ENTER
from .tracepoint import ThreadContext

if TYPE_CHECKING:
    from .debugger import Stop

# Emulated engine: events between checkpoints (replay costs ~6-8.5 us an event: at most ~25 ms from a
# checkpoint; saving one costs ~2-3 ms), and how far the live machine may run on to reach a quiescent
# point before a restore gives up.
CHECKPOINT_EVERY = 3000
CHECKPOINT_EVERY_RUNNING = 40000  # (running forwards into new ground: see `checkpoint_every`)
QUIESCE_LIMIT = 5000

# the debugger's modes of a run that time travel uses
_CONT, _SILENT, _QUIESCE = "cont", "silent", "quiesce"


class TimeTravel:
    """The time-travel half of `Debugger` (see the module docstring). It uses the debugger's `machine`,
    `stop`, `_go`, `_plain_stop`, `_make_stop`, `_position`, `_hooks`, `_history` and `_attach`."""

    def _init_time_travel(self, m: Any) -> None:
        self._dir = tempfile.mkdtemp(prefix="vmio-edu-dbg-")
        self._pristine = os.path.join(self._dir, "pristine.img")
        try:
            shutil.copyfile(m.image_path, self._pristine)
        except OSError as e:
            shutil.rmtree(self._dir, ignore_errors=True)
            from ..errors import ImageError
            raise ImageError(f"cannot keep a copy of the disk image {m.image_path!r} for time travel: "
                             f"{e.strerror}") from e
        self._replay_box: list = []  # the machine that fills the trace in (see _fill_history), if made
        self._finalizer = weakref.finalize(self, _cleanup, self._dir, self._replay_box)
        # Checkpoints: see vmio_edu.trace.checkpoint and the module docstring.
        from ..linux.fs.read_write import sys_pread64, sys_preadv, sys_pwrite64, sys_pwritev
        from ..qemu.kvm_all import kvm_vcpu_ioctl
        self._run_tp = kvm_vcpu_ioctl.tracepoint
        self._write_tps = (sys_pwrite64.tracepoint, sys_pwritev.tracepoint)
        self._read_tps = (sys_pread64.tracepoint, sys_preadv.tracepoint)  # (recorded for the halt's summary)
        self._cp_every = CHECKPOINT_EVERY
        self._cp_every_running = CHECKPOINT_EVERY_RUNNING
        self.capture_seconds = 0.0  # wall time spent saving checkpoints (for benchmarks)
        self._checkpoints: list[CP.Checkpoint] = []  # sorted by index, all made by the current machine
        self._cp_index: list[int] = []
        self._exit_log: list = []  # machine.exits as far as the checkpoints know them
        self._kexit_log: list = []  # machine.kernel_exits likewise (the emulated kernel's own exits)
        self._writes: list[tuple[int, int, bytes]] = []  # (event index, offset, bytes): completed host writes
        self._image_fds: dict[int, bool] = {}  # model fd -> is it the disk image?
        self.last_restore: int | None = None  # the checkpoint index the last replay started from (-1: start)
        self.restore_error: str | None = None  # why checkpoints were given up (a restore the kernel refused)
        self._cp_pages = CP._Pages()

    @property
    def checkpoint_every(self) -> int:
        """Events between checkpoints while time travelling (replays, steps). A `cont` into new ground
        takes them `CHECKPOINT_EVERY_RUNNING` apart by default: saving one
        costs ~3 ms, as much as running ~3000 events, so dense checkpoints would double the cost of a run
        nobody travels back in; the first replay back there makes the dense ones. Setting this sets one
        spacing for both. 0 turns checkpoints off."""
        return self._cp_every

    @checkpoint_every.setter
    def checkpoint_every(self, n: int) -> None:
        self._cp_every = self._cp_every_running = n

    @staticmethod
    def _can_checkpoint(m: Any) -> bool:
        """Whether checkpoints can be saved and restored on this machine's engine (else: replay from the
        start). The emulated engine's state is all in Python objects (vmio_edu.trace.checkpoint); the real
        one's kernel state is saved through ioctls (vmio_edu.kvm.state), which needs KVM_RUN's
        immediate_exit to finish an I/O exit before saving."""
        if m.engine == "unicorn":
            return True
        if m.engine != "kvm" or not hasattr(m.cpu.kvm_fd, "finish_pending_io"):
            return False
        from ..kvm.state import features
        return features(m.cpu.kvm_fd.vm.kvm).immediate_exit

    # -- record little, replay for detail -----------------------------------------------------------------
    def _fill_history(self) -> None:
        """Fill in the events a `cont` counted but did not record (HOLEs: see vmio_edu.trace.events), in
        the history and in the current machine's trace, from a recording replay (rr's design: record
        little, replay for detail). The replay runs on a machine of its own, built from the same
        configuration and the image as it was when the debugger was made, so the live machine and its
        stop are not touched; it stays parked where it got to, and the next fill goes on from there. The
        run is deterministic, so the replay's events are the run's (changes made by hand at a stop are not
        in it, as in any replay from the start)."""
        hist, hooks = self._history, self._hooks
        stores = [hist] + ([hooks.events] if hooks is not None else [])
        holes = [[j for j, w in enumerate(st.words) if w == HOLE] for st in stores]
        last = max((h[-1] for h in holes if h), default=-1)
        if last >= 0:
            src = self._replayed_to(last)
            for st, hs in zip(stores, holes):
                for j in hs:
                    st.put(j, src[j])
        for st in stores:
            st.unfilled = False

    def _replayed_to(self, index: int) -> EventStore:
        """The trace of the replay machine, run (recording) at least to `index`."""
        from ..machine import Machine

        if not self._replay_box:
            image = os.path.join(self._dir, "replay.img")
            try:
                shutil.copyfile(self._pristine, image)
            except OSError as e:
                from ..errors import ImageError
                raise ImageError(f"cannot copy the disk image for the replay that fills the trace in: "
                                 f"{e.strerror}") from e
            rm = Machine(**dict(self._config, image=image))
            self._replay_box.append(rm)
            rd = rm.debugger()
            rd._count_only = False  # it records every event
            rd.checkpoint_every = 0  # and only runs forwards
        rd = self._replay_box[0].debugger()
        if rd.stop.index < index and rd.stop.reason not in ("halted", "error"):
            rd.goto(index)
        if len(rd._history) <= index:
            raise VmioError(f"the replay that fills the trace in ended at index {len(rd._history) - 1}, "
                            f"before {index}")
        return rd._history

    # -- time travel ------------------------------------------------------------------------------------------
    def _goto(self, index: int, reason: str) -> Stop:
        self.last_restore = None
        cur = self.stop.index
        if index == cur and self.stop.reason not in ("error",):
            return self.stop
        forward_ok = (index > cur and self.stop.reason not in ("halted", "error")
                      and self.machine.sched.error is None and not self.machine._closed)
        if forward_ok:
            # far ahead, past a checkpoint: jump to it rather than run all the way
            j = bisect.bisect_right(self._cp_index, index)
            if j and self._cp_index[j - 1] - cur > 2 * QUIESCE_LIMIT:
                stop = self._restore_checkpoint(index, reason, forward=True)
                if stop is not None:
                    return stop
                if self.stop.index > index or self.stop.reason in ("halted", "error"):
                    return self._replay_to(index, reason)  # reaching a quiescent point went past it
            return self._run_silently_to(index, reason)
        return self._replay_to(index, reason)

    def _replay_to(self, index: int, reason: str) -> Stop:
        """The state at `index`, rebuilt: restore the nearest checkpoint at or before it into the live
        machine, or else build a fresh machine (index -1); then run silently."""
        stop = self._restore_checkpoint(index, reason)
        if stop is not None:
            return stop
        at = self._restore_nearest_checkpoint(index)
        if index == at:
            self.stop = self._plain_stop("start" if at < 0 else reason, at)
            return self.stop
        return self._run_silently_to(index, reason)

    def _restore_nearest_checkpoint(self, index: int) -> int:
        """The fallback: a fresh machine (the state at index -1); returns that index."""
        self._fresh_machine()
        self.last_restore = -1
        return -1

    def _run_silently_to(self, index: int, reason: str) -> Stop:
        before = self._diverged_at
        stop = self._go(_SILENT, reason, target=index)
        if self._diverged_at is not None and self._diverged_at != before and self._diverged_at <= index:
            stop.message = (f"the replay differs from the recorded run from index {self._diverged_at} on "
                            "(was the machine changed by hand at a stop?); the trace now follows the replay")
        return stop

    # -- checkpoints ----------------------------------------------------------------------------------------------
    def _at_kvm_run(self, i: int) -> bool:
        """On the vCPU thread, at the entry of KVM_RUN (index i): take a checkpoint if one is due and the
        machine is quiescent. Returns whether it is quiescent (computed only when it matters)."""
        running = self._mode == _CONT and self._hooks is not None and i >= self._hooks.known_until
        every = self._cp_every_running if running else self._cp_every
        if every <= 0:
            return False
        idx = self._cp_index
        j = bisect.bisect_right(idx, i)
        due = not j or i - idx[j - 1] >= every
        if not due and self._mode != _QUIESCE:
            return False
        m = self.machine
        if CP.quiescent(m) is not None or not CP.settle(m):
            return False
        if due:
            self._capture(i)
        return True

    def _capture(self, i: int) -> None:
        t0 = time.perf_counter()
        try:
            self._capture_at(i)
        finally:
            self.capture_seconds += time.perf_counter() - t0

    def _capture_at(self, i: int) -> None:
        m = self.machine
        ex, log = m.exits, self._exit_log
        if len(ex) > len(log):
            log.extend(ex[len(log):])
        kex, klog = _kernel_exits(m), self._kexit_log
        if len(kex) > len(klog):
            klog.extend(kex[len(klog):])
        cp = CP.save(m, i, self._cp_pages)
        try:
            cp.image_size = os.path.getsize(self._config["image"])
        except OSError:
            return
        j = bisect.bisect_right(self._cp_index, i)
        self._checkpoints.insert(j, cp)
        self._cp_index.insert(j, i)

    def _forget_future(self, i: int) -> None:
        """The run diverged at index i: checkpoints and logged writes from there on are of another run."""
        j = bisect.bisect_left(self._cp_index, i)
        del self._checkpoints[j:], self._cp_index[j:]
        del self._exit_log[self._checkpoints[-1].exits if self._checkpoints else 0:]
        del self._kexit_log[self._checkpoints[-1].kernel_exits if self._checkpoints else 0:]
        self._writes = [w for w in self._writes if w[0] < i]

    def _log_write(self, i: int, result: Any, ctx: ThreadContext) -> None:
        """A host pwrite/pwritev returned (index i): keep the bytes it wrote (the image's redo log)."""
        if not isinstance(result, int) or result <= 0 or not ctx.stack:
            return
        args = ctx.stack[-1].args  # (fd, count, pos) or (fd, pos): the frame is popped after this
        fd, pos = args[0], args[-1]
        w = self._writes
        if w and w[-1][0] >= i:  # replaying a write already logged (the same run)
            k = bisect.bisect_left(w, (i,))
            if k < len(w) and w[k][0] == i:
                return
        if not self._is_image_fd(fd):
            return
        try:
            data = os.pread(fd, result, pos)
        except OSError:
            return
        bisect.insort(w, (i, pos, data))

    def _is_image_fd(self, fd: Any) -> bool:
        known = self._image_fds.get(fd)
        if known is None:
            try:
                a, b = os.fstat(fd), os.stat(self._config["image"])
                known = (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
            except (OSError, TypeError):
                known = False
            self._image_fds[fd] = known
        return known

    def _parked_quiescent(self) -> bool:
        """Is the live machine stopped at a quiescent point (the entry of a KVM_RUN, nothing in flight)?"""
        s, m = self.stop, self.machine
        if (m._closed or s.kind != "enter" or s.function != self._run_tp.name or s.layer != self._run_tp.layer
                or s.index != self._position() - 1 or m.sched._parked is None or not m.sched._parked.is_vcpu):
            return False
        if getattr(m.cpu.kvm_fd, "io_pending", False):  # real engine: the last exit is not finished yet
            return False
        return CP.quiescent(m) is None

    def _restore_checkpoint(self, index: int, reason: str, forward: bool = False) -> Stop | None:
        """Restore the latest usable checkpoint at or before `index` into the live machine and run silently
        to `index`. None if there is none: the live machine cannot reach a quiescent point soon (it halted,
        failed, or stays busy) or no checkpoint has its thread configuration (or, going `forward`, none
        is ahead of the live machine)."""
        j = bisect.bisect_right(self._cp_index, index)
        m = self.machine
        if not j or not self._checkpointing or m._closed or m.sched.error is not None:
            return None
        if self.stop.reason == "halted" and not self._kick_out_of_halt():
            return None
        if self.stop.reason == "error":
            return None
        if not self._parked_quiescent():
            try:
                self._go(_QUIESCE, reason, target=self._position() - 1 + QUIESCE_LIMIT)
            except VmioError:
                return None
            if self.stop.reason == "halted" and not self._kick_out_of_halt():
                return None  # (a halt on the way: kicked out of it, the vCPU is at a KVM_RUN entry)
            if not self._parked_quiescent():
                return None
        here = self.stop.index
        after = here if forward and here <= index else -2
        sig = CP.signature(m)
        cp = next((c for c in reversed(self._checkpoints[:j]) if c.signature == sig and c.index > after), None)
        if cp is None:
            return None
        try:
            self._load(cp)
        except OSError as e:
            # The real kernel refused part of the saved state (a KVM_SET_* ioctl failed): the live machine
            # is half restored, so rebuild the state from the start instead, and say so.
            self.restore_error = f"restoring the checkpoint at {cp.index} failed ({e}); replayed from the start"
            at = self._restore_nearest_checkpoint(index)  # (no more checkpoints: see Debugger._attach)
            stop = self._plain_stop("start", at) if index == at else self._run_silently_to(index, reason)
            stop.message = stop.message or self.restore_error
            self.stop = stop
            return stop
        stop = self._stop_at_checkpoint(cp, reason)
        return stop if index == cp.index else self._run_silently_to(index, reason)

    def _kick_out_of_halt(self) -> bool:
        """The guest halted for good, and nothing after a halt is quiescent. Kick the vCPU out of its
        halt the way QEMU pauses a vCPU (qemu_cpu_kick: SIG_IPI, KVM_RUN returns -EINTR, kvm_cpu_exec
        returns EXCP_INTERRUPT and is called again), so that it comes back to the entry of KVM_RUN. The
        kick is not part of the run: its events leave the history, which still ends at the halt."""
        m = self.machine
        vcpu = getattr(m.cpu.kvm_fd, "vcpu", None) if m.engine == "unicorn" else m.cpu.kvm_fd
        if vcpu is None or not getattr(vcpu, "blocked", False):
            return False
        halted, n = self.stop, len(self._history)
        self.stop = self._plain_stop("kick", n - 1)
        vcpu.sigpending = True
        try:
            m.sched.wake(vcpu.model_thread)  # the signal wakes the sleeping vCPU thread (signal_wake_up)
            self._go(_QUIESCE, "kick", target=n + QUIESCE_LIMIT)
        except VmioError:
            return False
        finally:
            vcpu.sigpending = False
            del self._history[n:]
            if self._hooks is not None:
                self._hooks.sync = False  # (the kick's events stay out of the history)
            self._complete = True
            k = bisect.bisect_left(self._cp_index, n)
            del self._checkpoints[k:], self._cp_index[k:]
        if not self._parked_quiescent():
            self.stop = halted  # (the replay from a fresh machine takes over)
            return False
        m.halted = False  # Machine notes the final HLT again when the replay reaches it
        return True

    def _load(self, cp: CP.Checkpoint) -> None:
        m = self.machine
        events = self._hooks.rec.events
        here = len(events) - 1
        CP.restore(m, cp)
        n = cp.index + 1
        if len(events) > n:
            del events[n:]
        else:
            events.extend_from(self._history, len(events), n)
        ex = m.exits
        if len(ex) > cp.exits:
            del ex[cp.exits:]
        else:
            ex.extend(self._exit_log[len(ex):cp.exits])
        kex = _kernel_exits(m)
        if len(kex) > cp.kernel_exits:
            del kex[cp.kernel_exits:]
        else:
            kex.extend(self._kexit_log[len(kex):cp.kernel_exits])
        self._image_to(here, cp.index, cp.image_size)
        self._gen += 1
        self.last_restore = cp.index

    def _stop_at_checkpoint(self, cp: CP.Checkpoint, reason: str) -> Stop:
        t = self.machine.sched._parked
        ctx = t.ctx
        frame = ctx.stack[-1]
        self.stop = self._make_stop(reason, cp.index, ENTER, frame.tp.name, frame.tp.layer, frame.args,
                                    frame.tp, ctx)
        return self.stop

    def _image_to(self, here: int, there: int, size: int) -> None:
        """Make the image what it was at index `there` (it is what it was at `here`): only the byte ranges
        written between the two are rewritten, from the pristine copy plus the writes up to `there`."""
        lo, hi = min(here, there), max(here, there)
        w = self._writes
        changed = [(off, len(data)) for i, off, data in w if lo < i <= hi]
        path = self._config["image"]
        try:
            if changed:
                kept = [(off, data) for i, off, data in w if i <= there]
                with open(self._pristine, "rb") as pf, open(path, "r+b") as f:
                    for off, n in _merge(changed):
                        pf.seek(off)
                        buf = bytearray(pf.read(n).ljust(n, b"\0"))
                        for o, data in kept:
                            a, b = max(off, o), min(off + n, o + len(data))
                            if a < b:
                                buf[a - off:b - off] = data[a - o:b - o]
                        f.seek(off)
                        f.write(buf)
            if os.path.getsize(path) != size:
                os.truncate(path, size)
        except OSError as e:
            from ..errors import ImageError
            raise ImageError(f"cannot put the disk image {path!r} back as it was at index {there}: "
                             f"{e.strerror}") from e

    # -- the fallback: a fresh machine ------------------------------------------------------------------------
    def _fresh_machine(self) -> None:
        """Close the current machine, put the image back as it was at the start, and swap a new machine
        built from the same configuration in behind the caller's `Machine` object. Its checkpoints go
        with it (they hold the old machine's objects); the replay makes new ones."""
        from ..machine import Machine

        m = self.machine
        tmpdir = m._tmpdir
        m._tmpdir = None  # the image lives there: keep it through the close
        m._debugger = None  # and keep our copy of the image: this close is not the end
        self._hooks = None
        self._gen += 1
        try:
            m.close()
        finally:
            m._tmpdir, m._debugger = tmpdir, self
        self._checkpoints, self._cp_index, self._exit_log = [], [], []
        self._kexit_log = []
        self._cp_pages = CP._Pages()
        self._writes, self._image_fds = [], {}
        self._restore_image()
        try:
            new = Machine(**self._config)
        except Exception:
            m._tmpdir = tmpdir
            raise
        m._take_over(new)
        m._tmpdir = tmpdir
        self._attach()
        self.stop = self._plain_stop("start", -1)

    def _restore_image(self) -> None:
        path = self._config["image"]
        try:
            if os.path.getsize(path) == os.path.getsize(self._pristine) and \
                    not _files_differ(path, self._pristine):
                return
            shutil.copyfile(self._pristine, path)
        except OSError as e:
            from ..errors import ImageError
            raise ImageError(f"cannot put the disk image {path!r} back as it was for the replay: "
                             f"{e.strerror}") from e



def _cleanup(path: str, box: list) -> None:
    for m in box:  # the replay machine (see TimeTravel._fill_history)
        try:
            m.close()
        except Exception:  # noqa: BLE001 - closing at exit: nothing left to tell
            pass
    box.clear()
    shutil.rmtree(path, True)


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """(offset, length) ranges, sorted and merged where they overlap or touch."""
    out: list[list[int]] = []
    for off, n in sorted(ranges):
        if out and off <= out[-1][0] + out[-1][1]:
            out[-1][1] = max(out[-1][1], off + n - out[-1][0])
        else:
            out.append([off, n])
    return [(a, b) for a, b in out]


def _files_differ(a: str, b: str, chunk: int = 1 << 20) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(chunk), fb.read(chunk)
            if x != y:
                return True
            if not x:
                return False


def _kernel_exits(m: Any) -> list:
    """The machine's exits handled in the kernel (none kept on the real engine, or before issue 14)."""
    rec = getattr(m, "kernel_exit_recorder", None)
    return rec.exits if rec is not None else []
