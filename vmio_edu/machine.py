"""`Machine`: one PC, one vCPU, one disk (IDE, or virtio-blk with disk="virtio"), and the whole QEMU 1.6.1 /
Linux 3.7 I/O path in between.

    from vmio_edu import Machine
    with Machine(op="write", lba=5, sectors=2) as m:
        m.run()
        print(m.exits[:3], m.guest_result())

Everything is real: the guest's x86 code, the threads (vCPU, main loop, pool workers), the raw image and
its pwrite/pread, and, with engine="kvm", the ioctls on /dev/kvm.
"""
from __future__ import annotations

import inspect
import mmap
import os
import random
import shutil
import struct
import tempfile
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from .errors import GuestFault, ImageError, VmioError
from .linux.include.uapi.linux import kvm as K
from .trace.recorder import Recorder
from .trace.sched import Parked, Scheduler
from .trace.tracepoint import untraced

if TYPE_CHECKING:
    from .trace.debugger import Debugger

SECTOR = 512
DEFAULT_IMAGE_SIZE = 1 << 20  # 2048 sectors


@dataclass
class ExitRecord:
    """One return of KVM_RUN to QEMU, as userspace sees it (what both engines must agree on)."""

    reason: str
    direction: str | None = None
    size: int | None = None
    port: int | None = None
    count: int | None = None
    data: str | None = None  # hex of the bytes moved (OUT: sent by the guest; IN: answered by the device)
    rip: int | None = None
    rcx: int | None = None
    phys_addr: int | None = None  # MMIO only
    is_write: bool | None = None

    def key(self) -> tuple:
        """The fields compared between engines."""
        return (self.reason, self.direction, self.size, self.port, self.count, self.data, self.phys_addr,
                self.is_write)

    def to_json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


class ExitRecorder:
    """Listens to QEMU's `kvm_run_exit` trace event and keeps one ExitRecord per KVM_RUN return.

    It runs at every exit, so it reads struct kvm_run with one `struct.unpack_from` on the vCPU mapping
    (offsets of include/uapi/linux/kvm.h, checked by the asserts below) rather than field by field
    through ctypes, and RIP/RCX from the engine (`peek_rip_rcx`: kvm_run->s.regs on a kernel with
    KVM_CAP_SYNC_REGS) rather than with a KVM_GET_REGS per exit where it can."""

    def __init__(self) -> None:
        self.exits: list[ExitRecord] = []
        self._pending: ExitRecord | None = None

    def __call__(self, name: str, layer: str, fields: dict, ctx: Any) -> None:
        if name == "kvm_run_exit":
            cpu = fields["cpu"]
            mem = cpu.kvm_run_mem
            reason = _U32.unpack_from(mem, _EXIT_REASON)[0]
            peek = getattr(cpu.kvm_fd, "peek_rip_rcx", None)
            rip_rcx = peek() if peek is not None else None
            if rip_rcx is None:
                regs = _get_regs_quietly(cpu, ctx)
                rip_rcx = regs.rip, regs.rcx
            rec = ExitRecord(_EXIT_NAMES.get(reason) or str(reason), rip=rip_rcx[0], rcx=rip_rcx[1])
            if reason == K.KVM_EXIT_IO:
                direction, rec.size, rec.port, rec.count = _IO.unpack_from(mem, _U)
                rec.direction = "out" if direction == K.KVM_EXIT_IO_OUT else "in"
            elif reason == K.KVM_EXIT_MMIO:
                rec.phys_addr, rec.size, is_write = _MMIO.unpack_from(mem, _U)
                rec.is_write = bool(is_write)
                rec.direction = "out" if is_write else "in"
            self._pending = rec
        elif name == "kvm_exit_handled" and self._pending is not None:
            rec, mem = self._pending, fields["cpu"].kvm_run_mem
            reason = _U32.unpack_from(mem, _EXIT_REASON)[0]
            if reason == K.KVM_EXIT_IO:
                off = _U64.unpack_from(mem, _IO_DATA_OFFSET)[0]
                rec.data = mem[off:off + rec.size * rec.count].hex()
            elif reason == K.KVM_EXIT_MMIO:
                rec.data = mem[_MMIO_DATA:_MMIO_DATA + rec.size].hex()
            self.exits.append(rec)
            self._pending = None


# struct kvm_run as the exit log reads it: exit_reason, and the exit union's io / mmio members.
_EXIT_NAMES = {v: k for v, k in K.EXIT_NAMES.items()}
_EXIT_REASON, _U = K.kvm_run.exit_reason.offset, K.kvm_run.u.offset
_U32, _U64 = struct.Struct("<I"), struct.Struct("<Q")
_IO = struct.Struct("<BBHI")  # direction, size, port, count
_IO_DATA_OFFSET = _U + K.kvm_run_io.data_offset.offset
_MMIO = struct.Struct("<Q8xIB")  # phys_addr, (data), len, is_write
_MMIO_DATA = _U + K.kvm_run_mmio.data.offset
assert (K.kvm_run_io.size.offset, K.kvm_run_io.port.offset, K.kvm_run_io.count.offset) == (1, 2, 4)
assert (K.kvm_run_mmio.len.offset, K.kvm_run_mmio.is_write.offset) == (16, 20)


def _get_regs_quietly(cpu: Any, ctx: Any) -> K.kvm_regs:
    """KVM_GET_REGS for the record, hidden from the trace (QEMU itself doesn't do it on every exit)."""
    regs = K.kvm_regs()
    with untraced(ctx):
        cpu.kvm_fd.ioctl(K.KVM_GET_REGS, regs)
    return regs


def make_pattern(seed: int, nbytes: int) -> bytes:
    """The bytes the default guest writes: deterministic for a seed."""
    return random.Random(seed).randbytes(nbytes)


def _check_counts(**params: Any) -> None:
    """Counts and addresses must be ints, and a bool is not one here: Python lets True pass for 1, so
    `depth=True` would silently mean one request per kick. Name the parameter instead."""
    for name, value in params.items():
        if isinstance(value, bool):
            raise VmioError(f"{name} must be an integer, not the bool {value!r} (True is not taken for 1)")


class Machine:
    """A PC running a guest through the real QEMU/KVM I/O path.

    guest:   None for the default ATA driver, a `GuestProgram`, or raw code bytes (then give `mode`).
    image:   a raw disk image path; None makes a fresh temporary 1 MiB image (deleted on close).
    engine:  "unicorn" (the emulated engine: every kernel stage visible), "kvm" (real /dev/kvm) or "auto".
    op, lba, sectors, polling, seed: what the default guest does (op: write, read, both, identify, or an
             ATA command byte as an int).
    record:  keep the full trace (every trace point), in `self.trace`.
    latency: how many VM exits the guest gets between starting an I/O and its completion landing.
    max_exits, max_instructions (emulated engine, per KVM_RUN), max_spin_seconds (real engine): budgets
             that stop a guest which never halts with a clear BudgetExceeded.
    disk:    "ide" (the PIIX IDE disk, the default) or "virtio" (virtio-blk-pci; the default guest is then
             the virtio-blk driver, vmio_edu.guest.virtio_guest, and op/lba/sectors/seed/polling mean the
             same; per_request, depth, indirect and fault shape its requests).
    ioeventfd: the virtio device's ioeventfd property, on by default as in QEMU 1.6.1 with KVM: the
             guest's queue notify is handled in the kernel and the queue runs on the main loop. Off: the
             notify is a KVM_EXIT_IO handled on the vCPU thread.
    stack:   "1.6.1" (QEMU 1.6.1 on Linux 3.7, the default) or "10.2" (QEMU 10.2 on Linux 6.12): which
             versions' path the I/O takes (vmio_edu.stacks). The emulated engine models that Linux; the
             real engine is this host's kernel either way.
    """

    def __init__(self, guest: Any = None, *, image: str | os.PathLike | None = None, engine: str = "unicorn",
                 op: str | int = "both", lba: int = 0, sectors: int = 1, polling: bool = False, seed: int = 0,
                 mode: int | None = None, load: int = 0x1000, entry: int | None = None,
                 ram_size: int = 2 << 20, max_exits: int = 1_000_000, latency: int = 1, record: bool = False,
                 image_size: int = DEFAULT_IMAGE_SIZE, readonly: bool = False,
                 max_spin_seconds: float = 20.0, max_instructions: int = 50_000_000,
                 stack: str = "1.6.1", disk: str = "ide", ioeventfd: bool = True, per_request: int = 0,
                 depth: int = 0, fault: str | None = None, indirect: bool = False) -> None:
        config = {k: v for k, v in locals().items() if k != "self"}  # first: only the parameters
        from .guest import boot_state, default_guest, load_code
        from .qemu.state import QemuState
        from .stacks import get_stack

        self.stack = get_stack(stack)  # checked first: a bad name makes nothing
        bdrv_open = self.stack.entry("block_open")
        pc_init1 = self.stack.entry("board")
        vcpu_thread_fn = self.stack.entry("vcpu_thread")
        main_loop = self.stack.entry("main_loop")

        _check_counts(sectors=sectors, lba=lba, seed=seed, per_request=per_request, depth=depth,
                      latency=latency, ram_size=ram_size, image_size=image_size, max_exits=max_exits,
                      max_instructions=max_instructions, load=load)
        if disk not in ("ide", "virtio"):
            raise VmioError(f"disk must be 'ide' or 'virtio', not {disk!r}")
        if disk != "virtio" and (per_request or depth or fault or indirect):
            given = ", ".join(k for k, v in (("per_request", per_request), ("depth", depth), ("fault", fault),
                                             ("indirect", indirect)) if v)
            raise VmioError(f"{given} shape the virtio guest's requests: they need disk='virtio' (the IDE "
                            "guest sends one ATA command)")
        if not isinstance(ioeventfd, bool):
            raise VmioError(f"ioeventfd must be True or False, not {ioeventfd!r}")
        self.disk, self.ioeventfd = disk, ioeventfd
        # How this machine was made: the debugger's time travel builds a fresh one from it.
        self._config = config
        self._debugger = None
        self._closed = True
        self._tmpdir = None
        if image is None:
            self._tmpdir = tempfile.mkdtemp(prefix="vmio-edu-")
            image = os.path.join(self._tmpdir, "disk.img")
            with open(image, "wb") as f:
                f.truncate(image_size)
        self.image_path = os.fspath(image)
        self._image_before = _snapshot_image(self.image_path)
        self.op, self.lba, self.sectors, self.seed = op, lba, sectors, seed

        self.sched = Scheduler(latency=latency)
        self.sched.max_ticks = max_exits
        self.state = QemuState(self.sched, stack=self.stack)
        self.sched.machine = self.state
        self.ram = mmap.mmap(-1, ram_size)
        self.exit_recorder = ExitRecorder()
        self.sched.attach(listener=self.exit_recorder)
        from .trace.kernel_exits import KernelExitRecorder
        self.kernel_exit_recorder = KernelExitRecorder()  # exits the kernel handled (emulated engine)
        self.sched.attach(listener=self.kernel_exit_recorder)
        self.trace = Recorder() if record else None
        if self.trace is not None:
            self.sched.attach(hooks=self.trace)

        self.bs = bdrv_open(self.image_path, readonly=readonly)
        devices = {"disk": disk, "ioeventfd": ioeventfd} if disk == "virtio" else {}
        try:
            self.cpu, self.ide, self.engine_note = pc_init1(self.state, self.ram, engine, self.bs, **devices)
        except TypeError as e:
            if not devices or "disk" not in str(e):
                raise
            self.stack.entry("block_close")(self.bs)
            raise VmioError(f"the {self.stack.name} stack ({self.stack.qemu}) has no virtio-blk board yet: "
                            "use disk='ide' there") from e
        self.virtio = self.state.extra.get("virtio_blk")  # the VirtIOPCIProxy (disk="virtio")
        self.engine = self.state.kvm_state.engine
        # Where each I/O exit's string instruction took or puts its bytes (for byte provenance).
        from .trace.guest_pio import GuestPioObserver
        self.sched.attach(listener=GuestPioObserver(self.cpu, self.engine, self.ram))
        if self.engine == "kvm":
            self._limit_real_spins(max_spin_seconds)
        else:  # the emulated CPU counts instructions per KVM_RUN
            self.cpu.kvm_fd.max_insns = max_instructions
        self._closed = False

        if guest is None:
            if disk == "virtio":
                from .guest.virtio_guest import virtio_guest
                guest = virtio_guest()
            else:
                guest = default_guest()
        if isinstance(guest, (bytes, bytearray)):
            if mode is None:
                raise VmioError("raw guest code needs mode=16, 32 or 64")
            self.program = None
            self.mode = mode
            load_code(self.ram, bytes(guest), load)
            boot = boot_state(self.ram, mode, entry if entry is not None else load)
        else:
            self.program = guest
            self.mode = guest.mode
            load_code(self.ram, guest.code, guest.load)
            boot = boot_state(self.ram, guest.mode, guest.entry)
            if hasattr(guest, "write_params"):
                # a non-integer count gets no pattern: write_params names it (sectors must be ...)
                whole = isinstance(sectors, int)
                self.pattern = make_pattern(seed, SECTOR * max(1, sectors or 256)) if whole else b""
                extra = {}
                if per_request or depth or fault or indirect:
                    extra = {"per_request": per_request, "depth": depth, "fault": fault, "indirect": indirect}
                guest.write_params(self.ram, op=op, lba=lba, sectors=sectors, polling=polling,
                                   data=self.pattern, **extra)
        self.cpu.kvm_fd.ioctl(K.KVM_SET_SREGS, boot.sregs)
        self.cpu.kvm_fd.ioctl(K.KVM_SET_REGS, boot.regs)

        # QEMU 10.2's main() calls qemu_default_main(NULL) (system/main.c:93); 1.6.1's main_loop() takes none
        self.sched.spawn("main", main_loop, *[None] * len(inspect.signature(main_loop).parameters))
        self.vcpu_thread = self.sched.spawn("vcpu0", vcpu_thread_fn, self.cpu, vcpu=True)
        self.halted = False
        self.last: Parked | None = None

    def _limit_real_spins(self, seconds: float) -> None:
        """On real KVM a guest spinning without exits is kicked out every few ms (vmio_edu.kvm.kick).
        Let each kick come back to QEMU's loop, so Ctrl-C, the scheduler and a time budget still work."""
        from .errors import BudgetExceeded
        from .kvm.kick import KICK_AFTER_S

        vcpu = self.cpu.kvm_fd
        vcpu.spin_kick_limit = 1
        limit = int(seconds / KICK_AFTER_S)

        def check() -> None:
            if vcpu.spin_kicks > limit:
                raise BudgetExceeded(f"the guest ran about {seconds:g} s on real KVM without a VM exit "
                                     "or halt (does it loop forever?)")
        self.sched.budget_check = check

    # -- running -------------------------------------------------------------------------------------
    @property
    def exits(self) -> list[ExitRecord]:
        return self.exit_recorder.exits

    @property
    def kernel_exits(self) -> list:
        """The VM exits KVM handled itself, never returning to QEMU (`KernelExitRecord`s: ioeventfd and
        in-kernel PIC accesses, host timer ticks, in-kernel HLTs, ...). Separate from `exits`, the exits to
        userspace. Empty on the real engine, where the kernel's exits are invisible
        (see vmio_edu.trace.kernel_exits)."""
        return self.kernel_exit_recorder.exits

    def run(self) -> Parked:
        """Run until the guest halts for good (or a debugger stop / error). Errors are raised.
        Ctrl-C parks the model and returns Parked(reason="stop", detail="interrupted"); run() again goes on."""
        self._check_open()
        if self.state.extra.get("runstate") == "io-error" and self.last is not None:
            return self._finish_run(self.last)  # vm_stop'ped: QEMU stays stopped until 'cont' (not modelled)
        sched = self.sched
        try:
            parked = sched.resume()
        except KeyboardInterrupt:  # Ctrl-C landed outside the scheduler's own wait: the model may still run
            parked = self._wait_after_interrupt()
        sched.park_requested = False  # a Ctrl-C that came as the run ended must not stop the next one
        return self._finish_run(parked)

    def _wait_after_interrupt(self) -> Parked:
        """Ctrl-C landed outside the scheduler's own wait: ask the model to park, and wait for it."""
        while True:
            self.sched.park_requested = True
            try:
                return self.sched.wait_parked()
            except KeyboardInterrupt:
                continue

    def _finish_run(self, parked: Parked) -> Parked:
        """What `run` does once the baton is back: raise errors, note the final HLT."""
        self.last = parked
        if parked.reason == "error":
            err = parked.detail
            if isinstance(err, VmioError):
                raise err
            raise GuestFault(f"the model failed: {type(err).__name__}: {err}") from err
        stop = self.state.extra.get("vm_stop_reason")
        if stop and parked.reason in ("stop", "idle"):  # idle: the guest was halted, waiting for the IRQ
            raise ImageError(f"QEMU stopped the VM ({self.state.extra.get('runstate')}): {stop}. With "
                             f"{self.stack.qemu}'s default werror=enospc a full host disk pauses the guest instead "
                             "of failing its write; free space on the host and the write is retried.")
        if parked.reason == "idle" and not self.halted:
            self.halted = True
            regs = K.kvm_regs()
            self.cpu.kvm_fd.ioctl(K.KVM_GET_REGS, regs)
            self.exits.append(ExitRecord("HLT", rip=regs.rip, rcx=regs.rcx))
        return parked

    def guest_result(self) -> dict:
        """What the default guest reported in its result block."""
        self._check_open()  # guest RAM goes with close()
        if self.program is None or not hasattr(self.program, "read_result"):
            return {}
        return self.program.read_result(self.ram)

    def read_guest(self, addr: int, n: int) -> bytes:
        self._check_open()
        return bytes(self.ram[addr:addr + n])

    def image_bytes(self, lba: int, sectors: int = 1) -> bytes:
        with self._open_image() as f:
            f.seek(lba * SECTOR)
            return f.read(sectors * SECTOR)

    def _open_image(self):
        """The image by its name, for the host-side views; a clear ImageError if the name is gone."""
        if self._closed and self._tmpdir:
            raise VmioError("this machine is closed, and its temporary image was deleted with it")
        try:
            return open(self.image_path, "rb")
        except OSError as e:
            raise ImageError(f"the disk image {self.image_path!r} is no longer there ({e.strerror}): it was "
                             "removed or renamed while the machine had it open. QEMU keeps using the open "
                             "file, so the guest saw nothing, but those bytes go when the machine closes") from e

    def image_changes(self) -> list[int]:
        """Sectors whose bytes differ from the image as it was when the machine started."""
        before = self._image_before
        if before is None:
            return []
        with self._open_image() as f:
            now = f.read()
        n = max(len(now), len(before)) // SECTOR
        return [s for s in range(n) if now[s * SECTOR:(s + 1) * SECTOR] != before[s * SECTOR:(s + 1) * SECTOR]]

    def expected_sectors(self) -> dict[int, bytes]:
        """For a default-guest write: sector → the bytes the guest sent."""
        if self.op not in ("write", "both"):
            return {}
        n = self.sectors or 256
        return {self.lba + i: self.pattern[i * SECTOR:(i + 1) * SECTOR] for i in range(n)}

    # -- debugging -----------------------------------------------------------------------------------
    def debugger(self) -> "Debugger":
        """The debugger of this machine (`vmio_edu.trace.debugger.Debugger`), made on first call.

        Call it before running the machine: time travel replays the run from the start. This object stays
        the caller's handle through `back()`/`goto()`: the replayed machine is swapped in behind it.
        """
        if self._debugger is None:
            from .trace.debugger import Debugger
            self._debugger = Debugger(self)
        return self._debugger

    def _take_over(self, other: "Machine") -> None:
        """Become `other`, a machine built from the same configuration (the debugger's replay), so that
        every reference to this object sees the replayed state. `other` is left empty and closed."""
        keep = {k: self.__dict__[k] for k in ("_debugger", "_tmpdir") if k in self.__dict__}
        self.__dict__.clear()
        self.__dict__.update(other.__dict__)
        self.__dict__.update(keep)
        other.__dict__.clear()
        other.__dict__.update(_closed=True, _tmpdir=None)

    # -- closing -------------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop every thread, close the image and the KVM file descriptors, free RAM. Safe to repeat."""
        if self._closed:
            return
        self._closed = True
        if self._debugger is not None:  # the copy of the image it kept for time travel goes too
            self._debugger._finalizer()
        self.state.shutdown_requested = True
        self.sched.close()
        bdrv_close = self.stack.entry("block_close")
        qemu_cleanup_main_loop = self.stack.entry("cleanup")
        try:
            bdrv_close(self.bs)
            qemu_cleanup_main_loop(self.state)
            if getattr(self, "virtio", None) is not None:
                from .qemu.hw.virtio.virtio_pci import virtio_pci_exit
                virtio_pci_exit(self.virtio)
        finally:
            _close_kvm(self)
            if self._tmpdir:
                shutil.rmtree(self._tmpdir, ignore_errors=True)

    def _check_open(self) -> None:
        if self._closed:
            raise VmioError("this machine is closed")

    def __enter__(self) -> "Machine":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - never raise from GC
            pass


def _snapshot_image(path: str, limit: int = 64 << 20) -> bytes | None:
    try:
        if os.path.getsize(path) > limit:
            return None
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ImageError(f"cannot read disk image {path!r}: {e.strerror}") from e


def _close_kvm(m: Machine) -> None:
    cpu, ks = m.cpu, m.state.kvm_state
    cpu.kvm_run = None
    for f in (cpu.kvm_fd, ks.vmfd, ks.fd):
        try:
            f.close()
        except Exception:  # noqa: BLE001 - keep closing the rest
            pass
    try:
        cpu.kvm_run_mem.release()
    except Exception:  # noqa: BLE001
        pass
    try:
        m.ram.close()
    except BufferError:
        pass  # an engine still holds a pointer; the mapping goes with the process
