"""The real /dev/kvm behind the `vmio_edu.devkvm` seam: three file objects, as the kernel gives QEMU.

`open_real_kvm(sched)` opens /dev/kvm and returns a `KvmSystem`; KVM_CREATE_VM on it returns a `KvmVm`,
KVM_CREATE_VCPU on that a `KvmVcpu`. Every ioctl goes to the real kernel (ctypes, `libc.ioctl`) with the
structures of `vmio_edu.linux.include.uapi.linux.kvm`. What the engine adds, and why:

* KVM_CREATE_VM also sets the identity-map and TSS addresses, as QEMU 1.6.1's `kvm_arch_init` does (VMX
  needs them for real mode; AMD ignores them). KVM_CREATE_VCPU also sets the host's supported CPUID, as
  QEMU's `kvm_arch_init_vcpu` does (a kernel refuses EFER.LME without CPUID's long-mode bit).
* KVM_RUN notices a halted vCPU. With the in-kernel irqchip a guest HLT sleeps inside the kernel and never
  exits; a watchdog (`kick.Watchdog`) kicks the thread out after a few ms without an exit, and if
  KVM_GET_MP_STATE says HALTED the vCPU model thread blocks in the scheduler (`sched.block("halted")`)
  until KVM_IRQ_LINE_STATUS wakes it, then re-enters. Kicks are never seen by the caller unless it asks.
* KVM_IOEVENTFD passes through: the real kernel checks it (the same errnos as virt/kvm/eventfd.c) and
  signals the real eventfd on the guest's matching writes, which never reach userspace. The VM remembers
  the fds (`KvmVm.ioeventfd_fds`); after each real KVM_RUN the vCPU thread wakes the model threads asleep
  on any of them that became readable (the kernel's own wake-up reaches only real pollers).
* The time spent inside the real ioctl is measured and kept on the vCPU, and emitted as a point event
  `emit("KVM_RUN", "kvm", ns=..., ...)`: the kernel is one opaque stage here.
"""
from __future__ import annotations

import ctypes
import errno
import os
import signal
import struct
import threading
import time
import weakref
from typing import Any

from ..errors import EngineUnavailable
from ..linux.include.uapi.linux import kvm as K
from ..qemu.util.event_notifier_posix import wake_ready_pollers
from ..trace.tracepoint import emit
from . import kick, libc
from . import uapi as U

_U64 = struct.Struct("<Q")
_S_RIP = U.KVM_RUN_S + K.kvm_regs.rip.offset  # kvm_run->s.regs.rip
_S_RCX = U.KVM_RUN_S + K.kvm_regs.rcx.offset

KVM_API_VERSION = 12
DEV_KVM = "/dev/kvm"
# QEMU 1.6.1 target-i386/kvm.c kvm_arch_init: identity map at 0xfeffc000, TSS in the 3 pages after it.
IDENTITY_MAP_ADDR = 0xFEFFC000
TSS_ADDR = IDENTITY_MAP_ADDR + 0x1000
_MAX_CPUID = 256


def open_real_kvm(sched: Any = None, sync_regs: bool = True) -> "KvmSystem":
    """Open the real /dev/kvm. `sched` (a `vmio_edu.trace.sched.Scheduler` or None) is where a halted vCPU
    blocks. `sync_regs=False` never uses KVM_CAP_SYNC_REGS (the fallback: KVM_GET_REGS for RIP/RCX), even
    where the kernel has it. Raises EngineUnavailable naming the problem."""
    try:
        fd = os.open(DEV_KVM, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        raise EngineUnavailable(f"{DEV_KVM} does not exist (no KVM here: the CPU has no virtualization, "
                                "or the kvm module is not loaded)") from None
    except PermissionError:
        raise EngineUnavailable(f"permission denied opening {DEV_KVM} (add yourself to the kvm group)") from None
    except OSError as e:
        raise EngineUnavailable(f"cannot open {DEV_KVM}: {e.strerror}") from None
    try:
        version = libc.ioctl(fd, K.KVM_GET_API_VERSION, 0)
    except OSError as e:
        os.close(fd)
        raise EngineUnavailable(f"{DEV_KVM} does not answer KVM_GET_API_VERSION: {e.strerror}") from None
    if version != KVM_API_VERSION:
        os.close(fd)
        raise EngineUnavailable(f"{DEV_KVM} speaks KVM API version {version}; vmio-edu needs "
                                f"{KVM_API_VERSION}")
    system = KvmSystem(fd, sched)
    system.sync_regs = sync_regs
    return system


def _closed_error() -> OSError:
    return OSError(errno.EBADF, "the KVM file is closed")


class _FdState:
    """What must be released for one fd: kept apart from the file object so weakref.finalize and the
    watchdog can hold it without keeping the file object alive."""

    def __init__(self, fd: int):
        self.fd = fd
        self.closed = False
        self.children: list[_FdState] = []  # a system closes its VMs, a VM its vCPUs

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for c in self.children:
            c.close()
        self.children.clear()
        self._release()

    def _release(self) -> None:
        os.close(self.fd)


class _KvmFile:
    """Common part of the three files: ioctl pass-through, close, fileno."""

    def __init__(self, state: _FdState):
        self._st = state
        self._finalizer = weakref.finalize(self, state.close)

    @property
    def fd(self) -> int:
        return self._st.fd

    @property
    def closed(self) -> bool:
        return self._st.closed

    def fileno(self) -> int:
        return self._st.fd

    def _ioctl(self, request: int, arg: Any) -> int:
        if self._st.closed:
            raise _closed_error()
        return libc.ioctl(self._st.fd, request, arg)

    def ioctl(self, request: int, arg: Any = 0) -> Any:
        return self._ioctl(request, arg)

    def mmap(self, length: int) -> memoryview:
        raise OSError(errno.ENODEV, "this KVM file cannot be mapped (only a vCPU file can)")

    def close(self) -> None:
        """Close the fd (and those of the VMs/vCPUs created from it) and unmap their memory. Idempotent."""
        self._finalizer()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class KvmSystem(_KvmFile):
    """The /dev/kvm fd: KVM_GET_API_VERSION, KVM_CHECK_EXTENSION, KVM_GET_VCPU_MMAP_SIZE, KVM_CREATE_VM."""

    def __init__(self, fd: int, sched: Any):
        super().__init__(_FdState(fd))
        self.sched = sched
        self.sync_regs = True  # use KVM_CAP_SYNC_REGS where the kernel has it (new vCPUs take this)
        self._cpuid: ctypes.Structure | None = None

    def ioctl(self, request: int, arg: Any = 0) -> Any:
        if request == K.KVM_CREATE_VM:
            return self._create_vm(arg)
        return self._ioctl(request, arg)

    def _create_vm(self, vm_type: int) -> "KvmVm":
        fd = self._ioctl(K.KVM_CREATE_VM, vm_type)
        st = _FdState(fd)
        self._st.children.append(st)
        try:
            # As QEMU's kvm_arch_init: VMX needs both for real mode (vmx_set_tss_addr); SVM accepts them.
            if libc.ioctl(self._st.fd, K.KVM_CHECK_EXTENSION, K.KVM_CAP_SET_IDENTITY_MAP_ADDR) > 0:
                libc.ioctl(fd, K.KVM_SET_IDENTITY_MAP_ADDR, ctypes.c_uint64(IDENTITY_MAP_ADDR))
            libc.ioctl(fd, K.KVM_SET_TSS_ADDR, TSS_ADDR)
        except OSError:
            st.close()
            raise
        return KvmVm(st, self)

    def supported_cpuid(self) -> ctypes.Structure:
        """KVM_GET_SUPPORTED_CPUID, once: a kvm_cpuid2 header followed by its entries."""
        if self._cpuid is None:
            class kvm_cpuid2_n(ctypes.Structure):
                _fields_ = [("nent", ctypes.c_uint32), ("padding", ctypes.c_uint32),
                            ("entries", K.kvm_cpuid_entry2 * _MAX_CPUID)]
            c = kvm_cpuid2_n(_MAX_CPUID)
            self._ioctl(K.KVM_GET_SUPPORTED_CPUID, c)
            self._cpuid = c
        return self._cpuid

    def mmap_size(self) -> int:
        return self._ioctl(K.KVM_GET_VCPU_MMAP_SIZE, 0)


class KvmVm(_KvmFile):
    """A VM fd. KVM_CREATE_VCPU returns a KvmVcpu; KVM_IRQ_LINE(_STATUS) also wakes a vCPU halted in the
    scheduler. Everything else (memory regions, KVM_CREATE_IRQCHIP, ...) passes through."""

    def __init__(self, state: _FdState, kvm: KvmSystem):
        super().__init__(state)
        self.kvm = kvm  # keeps /dev/kvm open while the VM lives
        self.sched = kvm.sched
        self.has_irqchip = False  # KVM_CREATE_IRQCHIP made the PICs, IOAPIC and LAPICs (saved by kvm.state)
        self.has_pit = False  # KVM_CREATE_PIT2 made a PIT
        self.ioeventfd_fds: dict[tuple, int] = {}  # KVM_IOEVENTFD registrations -> the fd userspace gave

    def ioctl(self, request: int, arg: Any = 0) -> Any:
        if request == K.KVM_CREATE_VCPU:
            return self._create_vcpu(arg)
        r = self._ioctl(request, arg)
        if request in (K.KVM_IRQ_LINE, K.KVM_IRQ_LINE_STATUS) and getattr(arg, "level", 0):
            self._wake_halted()
        elif request == K.KVM_CREATE_IRQCHIP:
            self.has_irqchip = True
        elif request == U.KVM_CREATE_PIT2:
            self.has_pit = True
        elif request == K.KVM_IOEVENTFD:
            self._note_ioeventfd(arg)
        return r

    def _note_ioeventfd(self, a: K.kvm_ioeventfd) -> None:
        # The real kernel now signals a.fd on the guest's matching writes, and wakes its pollers; the model
        # thread polling it sleeps in the scheduler instead, so the vCPU checks these fds after each
        # KVM_RUN (KvmVcpu._run). The counter itself is the kernel's: read(2) it to count the signals.
        key = (a.addr, a.len, a.flags & ~K.KVM_IOEVENTFD_FLAG_DEASSIGN, a.datamatch, a.fd)
        if a.flags & K.KVM_IOEVENTFD_FLAG_DEASSIGN:
            self.ioeventfd_fds.pop(key, None)
        else:
            self.ioeventfd_fds[key] = a.fd

    def _wake_halted(self) -> None:
        # A raised line may end a HLT: let each vCPU the engine parked re-enter KVM_RUN and find out.
        for st in self._st.children:
            if isinstance(st, _VcpuState) and st.sleeping and st.model_thread is not None:
                self.sched.wake(st.model_thread)

    def _create_vcpu(self, vcpu_id: int) -> "KvmVcpu":
        fd = self._ioctl(K.KVM_CREATE_VCPU, vcpu_id)
        st = _VcpuState(fd, self.sched)
        self._st.children.append(st)
        try:
            st.mmap_size = self.kvm.mmap_size()
            # As QEMU's kvm_arch_init_vcpu (it filters CPUID to a CPU model; we take the host's, like -cpu host).
            try:
                cpuid = self.kvm.supported_cpuid()
            except OSError:
                cpuid = None
            if cpuid is not None:
                libc.ioctl(fd, K.KVM_SET_CPUID2, cpuid)
        except OSError:
            st.close()
            raise
        return KvmVcpu(st, self)


class _VcpuState(_FdState):
    """A vCPU's fd, its kvm_run mapping, and the run state shared with the watchdog (under `lock`)."""

    def __init__(self, fd: int, sched: Any):
        super().__init__(fd)
        self.sched = sched
        self.mmap_size = 0
        self.map_addr = 0
        self.map_array: ctypes.Array | None = None  # the mapping as a ctypes byte array (views keep it)
        self.lock = threading.Lock()
        self.in_run = False  # a thread is inside the real KVM_RUN ioctl
        self.entry_seq = 0
        self.run_tid = 0
        self.kicks_sent = 0
        self.kicks_eaten = 0
        self.mask_tid = 0  # the thread whose signal mask KVM_SET_SIGNAL_MASK was given
        self.watchdog: kick.Watchdog | None = None
        self.sleeping = False  # blocked in the scheduler because the guest is halted
        self.model_thread: Any = None  # the model thread that runs KVM_RUN (sched.current())
        self.release_pending = False

    def close(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
            busy = self.in_run
            if busy:
                # Another thread is inside KVM_RUN: kick it out; it releases the fd on its way out, so the
                # fd number is never reused under it.
                self.kicks_sent += 1
                self.release_pending = True
                signal.pthread_kill(self.run_tid, kick.SIG_IPI)
        if self.watchdog is not None:
            self.watchdog.shutdown()
        if not busy:
            self._release()

    def _release(self) -> None:
        if self.map_array is not None:
            # Swap the kvm_run pages for zero pages: the kernel's mapping goes now; a view someone still
            # holds reads zeros instead of crashing, and the pages are unmapped when the last view dies.
            libc.replace_with_zero_pages(self.map_addr, self.mmap_size)
            self.map_array = None
        os.close(self.fd)


class KvmVcpu(_KvmFile):
    """A vCPU fd. `mmap(length)` maps the real kvm_run pages; KVM_RUN is handled as described below.

    KVM_RUN returns 0 after a real exit (kvm_run.exit_reason says which), or raises OSError(errno). Watchdog
    kicks (KVM_EXIT_INTR) are handled inside and not returned, except in these cases, where it returns
    -EINTR (-4), exactly what QEMU's kvm_vcpu_ioctl returns for a kicked KVM_RUN (kvm_cpu_exec turns it
    into EXCP_INTERRUPT and loops), with kvm_run.exit_reason == KVM_EXIT_INTR:
      * the guest is halted and there is no scheduler to block in (sched None, or KVM_RUN called from
        outside a model thread); `halted` is then True;
      * `exit_on_kick` is True (every kick is returned);
      * `spin_kick_limit` is set and this KVM_RUN call had that many kicks of a running (not halted) guest:
        a guest computing without exits. That is how a caller enforces a time budget: each spin kick is
        about KICK_AFTER_S..2*KICK_AFTER_S of guest time. `spin_kicks` counts them over the vCPU's life;
      * the scheduler asked the running thread to park (`sched.park_requested`, a Ctrl-C) during a spin.

    `halted` is True while the engine knows the guest is halted: blocked in the scheduler, or returned
    to a caller without one (then it stays True until the next KVM_RUN).

    RIP and RCX of each exit (`peek_rip_rcx`, for the exit log) come from kvm_run->s.regs where
    KVM_CHECK_EXTENSION(KVM_CAP_SYNC_REGS) says the kernel fills it (KVM_SYNC_X86_REGS in kvm_valid_regs:
    the kernel copies the registers there on every return from KVM_RUN), so the log needs no KVM_GET_REGS
    per exit. `use_sync_regs = False` (or open_real_kvm(sync_regs=False)) forces the fallback.

    Measurements, kept as plain attributes: `last_run_ns` (ns inside the real ioctl during the last
    KVM_RUN call, summed over its re-entries), `last_run_entries` (real ioctls in it), `run_ns_total`,
    `runs`, `halts` (times the engine saw MP_STATE HALTED), `spin_kicks`. Each KVM_RUN call also emits the
    point event ("KVM_RUN", "kvm") with ns, entries, kicks, halts and exit_reason.
    """

    def __init__(self, state: _VcpuState, vm: KvmVm):
        super().__init__(state)
        self.vm = vm  # keeps the VM (and /dev/kvm) open while the vCPU lives
        self.sched = vm.sched
        self.exit_on_kick = False
        self.spin_kick_limit: int | None = None
        self.debug_exit: Any = None  # called on KVM_EXIT_DEBUG (vmio_edu.trace.guest_stops), then KVM_RUN again
        self.halted = False
        self.last_run_ns = 0
        self.last_run_entries = 0
        self.run_ns_total = 0
        self.runs = 0
        self.halts = 0
        self.spin_kicks = 0
        self._kvm_run: K.kvm_run | None = None
        self.use_sync_regs = vm.kvm.sync_regs
        self._sync_has: bool | None = None  # the kernel syncs x86 registers (KVM_CHECK_EXTENSION, asked once)
        self._sync_for: Any = None  # the use_sync_regs value _sync_on was decided for
        self._sync_on = False  # KVM_SYNC_X86_REGS is in kvm_valid_regs for the KVM_RUN calls being made
        self._regs_fresh = False  # kvm_run->s.regs holds the registers of the last exit (none set since)
        self._page: memoryview | None = None  # page 0 of the mapping, for reading s.regs without ctypes
        self._stashed_exit = False  # finish_pending_io met a new exit: the next KVM_RUN returns it
        self.io_pending = False  # the last KVM_RUN returned an exit the kernel finishes on the next entry
        self.sigpending = False  # a kick (qemu_cpu_kick) asked for: a halted vCPU returns -EINTR when woken

    # -- the kvm_run mapping ----------------------------------------------------------------------
    def mmap(self, length: int) -> memoryview:
        """A writable memoryview of the first `length` bytes of the vCPU mapping: page 0 is struct kvm_run,
        page 1 the PIO data (data_offset 4096). The mapping is made once and shared by every view."""
        st: _VcpuState = self._st  # type: ignore[assignment]
        if st.closed:
            raise _closed_error()
        if not 0 < length <= st.mmap_size:
            raise OSError(errno.EINVAL, f"mmap length {length} outside 1..{st.mmap_size} "
                                        "(KVM_GET_VCPU_MMAP_SIZE)")
        if st.map_array is None:
            addr = libc.mmap_shared(st.fd, st.mmap_size)
            arr = (ctypes.c_ubyte * st.mmap_size).from_address(addr)
            # Unmap when the array (and so every view of it) is gone; by then close() has swapped the
            # kvm pages for zero pages, so this frees those.
            # Not at interpreter exit: a daemon model thread may still read it then; the OS unmaps it.
            weakref.finalize(arr, libc.munmap, addr, st.mmap_size).atexit = False
            st.map_addr, st.map_array = addr, arr
        return memoryview(st.map_array).cast("B")[:length]

    @property
    def kvm_run(self) -> K.kvm_run:
        """struct kvm_run over the mapping (maps it on first use)."""
        if self._kvm_run is None or self._st.closed:
            self.mmap(self._st.mmap_size)  # type: ignore[attr-defined]
            self._kvm_run = K.kvm_run.from_buffer(self._st.map_array)  # type: ignore[attr-defined]
        return self._kvm_run

    # -- ioctls -----------------------------------------------------------------------------------
    def ioctl(self, request: int, arg: Any = 0) -> Any:
        if request == K.KVM_RUN:
            return self._run()
        if request == K.KVM_SET_REGS:
            self._regs_fresh = False  # s.regs is the kernel's copy from the last exit, now out of date
        return self._ioctl(request, arg)

    def peek_rip_rcx(self) -> tuple[int, int] | None:
        """RIP and RCX of the last exit from kvm_run->s.regs (KVM_CAP_SYNC_REGS), or None where they are
        not there (no sync regs, or registers set since): then the caller asks KVM_GET_REGS."""
        if not self._regs_fresh:
            return None
        page = self._page
        return _U64.unpack_from(page, _S_RIP)[0], _U64.unpack_from(page, _S_RCX)[0]

    def _sync_wanted(self) -> bool:
        if not self.use_sync_regs:
            return False
        has = self._sync_has
        if has is None:
            from .state import features
            has = self._sync_has = bool(features(self.vm.kvm).sync_regs & U.KVM_SYNC_X86_REGS)
        return has

    def finish_pending_io(self) -> bool:
        """Finish the last I/O exit inside the kernel without running the guest: KVM_RUN with
        kvm_run->immediate_exit set (the kernel's api.rst: an IN's data reaches RAX or memory, a string
        instruction's next step starts, only when userspace enters KVM_RUN again; do that before saving).

        True: nothing is pending any more (the kernel answered -EINTR). False: finishing it made the next
        exit at once (a `rep outsw` emulated on: its next word); that exit is in kvm_run now, and the next
        KVM_RUN call returns it without entering the kernel, exactly as the kernel would have returned it.
        Call it between KVM_RUN calls, on the thread that runs them (a vCPU changing threads costs the
        kernel a synchronize_rcu)."""
        st: _VcpuState = self._st  # type: ignore[assignment]
        if self._stashed_exit:
            return False
        run = self.kvm_run
        self._set_valid_regs(run)
        page = self._page
        with st.lock:
            if st.closed:
                raise _closed_error()
            page[U.KVM_RUN_IMMEDIATE_EXIT] = 1
            try:
                r, err = libc.ioctl_errno(st.fd, K.KVM_RUN, 0)
            finally:
                page[U.KVM_RUN_IMMEDIATE_EXIT] = 0
            if err == errno.EINTR and st.kicks_sent != st.kicks_eaten:
                st.kicks_eaten = st.kicks_sent
                kick.eat_ipi()
        self._regs_fresh = self._sync_on
        if r >= 0:
            self._stashed_exit = True
            return False
        if err != errno.EINTR:
            raise OSError(err, f"KVM_RUN (immediate_exit): {os.strerror(err)}")
        self.io_pending = False
        return True

    @property
    def blocked(self) -> bool:
        """The guest is halted and the vCPU model thread sleeps in the scheduler (KVM_RUN has not returned)."""
        return self._st.sleeping  # type: ignore[attr-defined]

    @property
    def model_thread(self) -> Any:
        return self._st.model_thread  # type: ignore[attr-defined]

    def _set_valid_regs(self, run: K.kvm_run) -> None:
        """kvm_valid_regs as `use_sync_regs` wants it (re-read each call: a restored kvm_run page, or the
        caller, may have changed it); the check is two int compares when nothing changed."""
        page = self._page
        if page is None:
            page = self._page = memoryview(self._st.map_array).cast("B")[:4096]  # type: ignore[attr-defined]
        on = self._sync_wanted() if self.use_sync_regs is not self._sync_for else self._sync_on
        want = U.KVM_SYNC_X86_REGS if on else 0
        if on != self._sync_on or _U64.unpack_from(page, U.KVM_RUN_VALID_REGS)[0] != want:
            run.kvm_valid_regs = want
            self._sync_on = on
        self._sync_for = self.use_sync_regs
        if not on:
            self._regs_fresh = False

    def mp_state(self) -> int:
        """KVM_GET_MP_STATE (KVM_MP_STATE_RUNNABLE 0, HALTED 3), under the lock so a concurrent close()
        cannot free the fd number under it."""
        ms = K.kvm_mp_state()
        with self._st.lock:  # type: ignore[attr-defined]
            self._ioctl(K.KVM_GET_MP_STATE, ms)
        return ms.mp_state

    def _run(self) -> int:
        st: _VcpuState = self._st  # type: ignore[assignment]
        if st.closed:
            raise _closed_error()
        run = self.kvm_run
        self._set_valid_regs(run)
        if self._stashed_exit:  # finish_pending_io already made this exit (see there)
            self._stashed_exit = False
            self.last_run_ns = self.last_run_entries = 0
            self.runs += 1
            emit("KVM_RUN", "kvm", ns=0, entries=0, kicks=0, halts=0, exit_reason=run.exit_reason)
            return 0
        self._regs_fresh = False
        sched = self.sched
        model_thread = None
        model_known = False  # which model thread runs this is only needed on a kick: asked then
        tid = threading.get_ident()
        if st.mask_tid != tid:
            kick.set_kvm_signal_mask(st.fd, kick.block_ipi_here())
            st.mask_tid = tid
        if st.watchdog is None:
            st.watchdog = kick.Watchdog(st)
        wd = st.watchdog

        self.halted = False
        ns = entries = kicks = halts = 0
        try:
            while True:
                with st.lock:
                    if st.closed:
                        raise _closed_error()
                    st.in_run = True
                    st.entry_seq += 1
                    st.run_tid = tid
                    if not wd.active.is_set():
                        wd.active.set()
                t0 = time.perf_counter_ns()
                r, err = libc.ioctl_errno(st.fd, K.KVM_RUN, 0)
                ns += time.perf_counter_ns() - t0
                entries += 1
                with st.lock:
                    st.in_run = False
                    if st.kicks_sent != st.kicks_eaten or err == errno.EINTR:
                        st.kicks_eaten = st.kicks_sent
                        kick.eat_ipi()
                    if st.release_pending:
                        st.release_pending = False
                        st._release()
                        raise _closed_error()
                if self.vm.ioeventfd_fds:  # the kernel may have signalled an ioeventfd meanwhile
                    wake_ready_pollers(set(self.vm.ioeventfd_fds.values()))
                if r >= 0:
                    if run.exit_reason == K.KVM_EXIT_DEBUG and self.debug_exit is not None:
                        self.debug_exit()  # a guest breakpoint or step: the debugger's, not QEMU's
                        continue
                    self._regs_fresh = self._sync_on
                    self.io_pending = True
                    return r
                self.io_pending = False  # (the kernel finished the last exit before it saw the kick)
                if err != errno.EINTR:
                    raise OSError(err, f"KVM_RUN: {os.strerror(err)}")
                # A kick (or a stray signal): no exit happened. Halted, or still running?
                kicks += 1
                if not model_known:
                    model_known = True
                    if sched is not None:
                        try:
                            model_thread = sched.current()
                        except RuntimeError:
                            model_thread = None  # KVM_RUN from outside the model: nobody to block, return
                    st.model_thread = model_thread
                if self.mp_state() == K.KVM_MP_STATE_HALTED:
                    halts += 1
                    self.halts += 1
                    if model_thread is None or self.exit_on_kick:
                        self.halted = True
                        return -errno.EINTR
                    self.halted = st.sleeping = True
                    try:
                        sched.block("halted")  # until KVM_IRQ_LINE(_STATUS) wakes us (or the machine closes)
                    finally:
                        self.halted = st.sleeping = False
                    if self.sigpending:  # woken by a kick (the debugger pausing the vCPU), not an IRQ
                        self.sigpending = False
                        return -errno.EINTR
                    continue
                self.spin_kicks += 1
                if (self.exit_on_kick
                        or (self.spin_kick_limit is not None and kicks - halts >= self.spin_kick_limit)
                        or (sched is not None and getattr(sched, "park_requested", False))):
                    return -errno.EINTR
        finally:
            self.last_run_ns, self.last_run_entries = ns, entries
            self.run_ns_total += ns
            self.runs += 1
            emit("KVM_RUN", "kvm", ns=ns, entries=entries, kicks=kicks, halts=halts,
                 exit_reason=run.exit_reason if not st.closed else None)
