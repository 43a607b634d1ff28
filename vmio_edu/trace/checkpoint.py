"""Checkpoints of a running machine, for fast time travel (QEMU's savevm/loadvm, in spirit).

QEMU saves a VM with *VMState*: every device declares the fields that make up its state
(`VMStateDescription`, e.g. `vmstate_ide_drive` lists IDEState's registers and buffer), `savevm` walks the
devices and writes those fields, and `loadvm` writes them back into the *same, live* devices. vmio-edu does
the same for its model, in memory:

* The state is plain data on objects (the rule the model is written by), so the "field list" of an object
  is its `__dict__`. `save` walks the object graph from the machine (QEMU globals in `QemuState`, the CPU
  state, the IDE controller, the block layer, the thread pool, the AioContext, the coroutines, and the
  emulated kernel: `struct kvm`, `struct kvm_vcpu`, the PIC, the VMCS) and keeps, for every model object,
  a copy of its `__dict__`, and for every list/dict/set/bytearray it meets, a copy of its contents.
  References stay references: a saved field that pointed at the thread pool still points at the *same*
  thread pool object. `restore` puts every dict and every container back *in place*, so any reference
  held anywhere (another object, a parked thread's local variable) sees the restored state.
* Not walked (kept by identity, never copied): threads and the scheduler's thread machinery, functions,
  trace points and shadow-stack frames, ctypes objects and memoryviews over the vCPU's mmap, files.
* Saved explicitly, because they are not Python objects: guest RAM (an mmap; per 4 KiB page, pages that
  did not change since the previous checkpoint are shared with it), the vCPU's mmap (`struct kvm_run` and
  the PIO page), the processor (Unicorn's register file via `uc_context_save`, plus `X86Cpu`'s own fields
  named in `CPU_FIELDS`; its caches of decoded instructions are flushed instead), the scheduler's counters
  (`ticks`), and the lengths of the trace and of `machine.exits` (both only grow; the debugger keeps the
  long versions). The disk image is the debugger's job (a redo log of completed host writes).

A checkpoint can only be restored at a *quiescent point* (`quiescent`): the vCPU thread is entering
KVM_RUN (it has released the BQL at the top of `kvm_cpu_exec`'s loop), every other model thread is blocked
(the main loop in its poll, pool workers in `qemu_sem_wait`), no coroutine is alive, no thread-pool request
is queued, running or waiting for its completion, no bottom half is scheduled and no event notifier is
set. At such a point every Python thread of the model sits at the same line with equivalent locals
(`kvm_cpu_exec`: `cpu`, `run`, `ret == 0`; `os_host_main_loop_wait`: `timeout == -1` and the same
`GPollFD` objects; `worker_thread`: its `PoolWorker` and the pool), so putting the objects back is enough
to put the whole machine back. `signature` names that thread configuration; two quiescent points can swap
states only if their signatures are equal.

The real engine (engine="kvm") is checkpointed the same way for everything in Python (QEMU's model, the
image), while the kernel's part is saved through ioctls by `vmio_edu.kvm.state` (registers, XSAVE, XCRs,
sregs, MSRs, MP state, LAPIC, vCPU events, debug registers; the in-kernel PIC halves, IOAPIC and clock),
with guest RAM and the kvm_run/PIO pages of the vCPU mapping as bytes. One more condition makes a point
quiescent there (`settle`): the last I/O exit is finished inside the kernel (KVM_RUN with immediate_exit,
`KvmVcpu.finish_pending_io`), because no ioctl shows or restores an unfinished one.
"""
from __future__ import annotations

import ctypes
import types
from dataclasses import dataclass, field
from typing import Any

from ..linux.include.uapi.linux import kvm as K

PAGE = 4096

# Types the walk keeps by identity and never enters (by class name: threads, the scheduler, tracing).
_OPAQUE = {"Scheduler", "ModelThread", "ThreadContext", "TracePoint", "Frame", "Recorder", "Debugger",
           "ExitRecorder", "X86Cpu", "FastUc", "ExceptionState", "BlockDriver", "Machine", "_Hooks",
           # the real engine's files and run state (the kernel's part is saved through vmio_edu.kvm.state)
           "KvmSystem", "KvmVm", "KvmVcpu", "_FdState", "_VcpuState", "Watchdog", "Features"}
# X86Cpu fields that are state (restored); everything else on it is the Unicorn engine or a cache.
CPU_FIELDS = ("vcpu_id", "max_insns", "slice_insns", "host_intr_pending", "budget_left", "slots", "mmio_gfns",
              "mmio_access",
              "last_event", "fault_detail", "notes", "uc_mode", "gprs", "sel", "cr0", "cr3", "cr4", "_efer",
              "_rflags", "_full_load", "vmcs")
_HOOK_FIELDS = ("n", "watch", "stop", "addr", "size", "shadow_n", "shadow", "intr", "intr_eip", "mmio")


@dataclass(eq=False)
class Checkpoint:
    """The whole state of a machine at trace index `index` (the entry of a KVM_RUN ioctl)."""

    index: int
    signature: tuple
    objects: list = field(default_factory=list)  # (model object, saved __dict__)
    containers: list = field(default_factory=list)  # (list|dict|set|bytearray, saved contents)
    ram: tuple = ()  # guest RAM, one bytes object per 4 KiB page (shared with the previous checkpoint)
    vcpu_pages: tuple = ()  # the vCPU mmap, per page: struct kvm_run, the PIO data page
    uc_context: Any = None  # Unicorn's register file (uc_context_save)
    kvm_vcpu: Any = None  # real engine: vmio_edu.kvm.state.VcpuState
    kvm_vm: Any = None  # real engine: vmio_edu.kvm.state.VmState
    cpu: dict = field(default_factory=dict)  # X86Cpu's state fields (CPU_FIELDS) and its hook state
    sched: dict = field(default_factory=dict)  # the scheduler's counters
    exits: int = 0  # len(machine.exits)
    kernel_exits: int = 0  # len(machine.kernel_exits)
    image_size: int = 0
    nbytes: int = 0  # about the memory it adds (pages shared with the previous checkpoint not counted)

    def summary(self) -> dict[str, int]:
        """What it saved: objects by class name (a learner's view of the VMState walk), plus containers."""
        out: dict[str, int] = {}
        for o, _ in self.objects:
            name = type(o).__name__
            out[name] = out.get(name, 0) + 1
        for c, _ in self.containers:
            name = f"<{type(c).__name__}>"
            out[name] = out.get(name, 0) + 1
        out["<RAM pages>"] = len(self.ram)
        return dict(sorted(out.items()))


# ==========================================================================================================
# Where the machine is: quiescent points and their signature
# ==========================================================================================================
def _small(v: Any) -> Any:
    return v if isinstance(v, (int, str, type(None))) else type(v).__name__


def signature(machine: Any) -> tuple:
    """The thread configuration: each model thread's name, state, why it blocks, and its shadow stack
    (function names and small arguments), plus the main loop's fd handlers (by callback name)."""
    threads = tuple((t.name, t.state, t.why, t.is_vcpu,
                     tuple((f.tp.name, tuple(_small(a) for a in f.args)) for f in t.ctx.stack))
                    for t in machine.sched.threads)
    ctx = machine.state.aio_context
    handlers = tuple((getattr(h.io_read, "__name__", None), getattr(h.io_write, "__name__", None), h.deleted,
                      h.pfd.events) for h in ctx.aio_handlers) if ctx is not None else ()
    return threads, handlers, (machine.cpu.kvm_fd.cpu.uc_mode if machine.engine == "unicorn" else "kvm")


def settle(machine: Any) -> bool:
    """At a KVM_RUN entry, on the vCPU thread: make the engine's side quiescent too. The emulated kernel
    always is; the real one finishes the last I/O exit (`KvmVcpu.finish_pending_io`). False: finishing
    it made the next exit at once, so this is not a quiescent point (the run goes on unchanged)."""
    if machine.engine != "kvm":
        return True
    return machine.cpu.kvm_fd.finish_pending_io()


def _real(machine: Any) -> bool:
    return machine.engine == "kvm"


def quiescent(machine: Any) -> str | None:
    """None if the machine is at a quiescent point (see the module docstring), else what is in flight.
    Call it while the vCPU thread is stopped at the entry of KVM_RUN."""
    from ..qemu.util.event_notifier_posix import event_notifier_is_set, fd_readable

    s, st = machine.sched, machine.state
    if s._due or s.park_requested or s.error is not None or s.closing:
        return "a thread is due to run"
    for t in s.threads:
        if t.is_vcpu:
            if t.state != "runnable" or [f.tp.name for f in t.ctx.stack] != \
                    ["qemu_kvm_cpu_thread_fn", "kvm_cpu_exec", "kvm_vcpu_ioctl"]:
                return "the vCPU is not entering KVM_RUN"
        elif t.state != "blocked" or t.why not in ("g_poll", "qemu_sem_wait"):
            return f"thread {t.name} is {t.state} ({t.why})"
    if st.bql_owner is not None or st.shutdown_requested or st.extra.get("vm_stop_reason"):
        return "the BQL is held or the VM is stopping"
    table = st.extra.get("coroutines")
    if table is not None and table.live:
        return "a coroutine is alive"
    ctx = st.aio_context
    if ctx is None:
        return "no main loop"
    if ctx.walking_bh or ctx.walking_handlers or any(b.scheduled and not b.deleted for b in ctx.first_bh):
        return "a bottom half is scheduled"
    pool = ctx.thread_pool
    if pool is not None:
        if pool.head or pool.request_list or pool.new_threads or pool.pending_threads or pool.sem.count \
                or pool.lock.owner is not None or any(w.state not in ("idle",) for w in pool.workers):
            return "a thread-pool request or worker start is in flight"
        if event_notifier_is_set(pool.notifier):
            return "the thread pool's notifier is set"
    if event_notifier_is_set(ctx.notifier):
        return "the main loop's notifier is set"
    for ioh in st.extra.get("io_handlers", ()):  # an fd handler's event (an ioeventfd's signal) not yet read
        if not ioh.deleted and fd_readable(ioh.fd):
            return "a main-loop fd handler has an event pending"
    for bs in (machine.bs, machine.bs.file):
        if bs is not None and bs.tracked_requests:
            return "a block request is in flight"
    if getattr(machine.exit_recorder, "_pending", None) is not None:
        return "an exit is being recorded"
    return None


# ==========================================================================================================
# The walk
# ==========================================================================================================
# Types never entered: plain values, and (learned as the walk meets them) every type kept by identity.
_SKIP: set[type] = {int, float, str, bytes, bool, type(None), complex, frozenset, range, types.FunctionType,
                    types.MethodType, types.BuiltinFunctionType, type}
_MODEL_TYPE: dict[type, bool] = {}  # type -> is it a model object type (walked and saved)?


def _is_model_type(t: type) -> bool:
    known = _MODEL_TYPE.get(t)
    if known is None:
        known = _MODEL_TYPE[t] = (
            t.__module__.startswith("vmio_edu.") and t.__name__ not in _OPAQUE and hasattr(t, "__dict__")
            and not issubclass(t, (ctypes._SimpleCData, ctypes.Structure, ctypes.Union, ctypes.Array, type,
                                   BaseException))
            and "__dict__" in dir(t))
    return known


def _roots(machine: Any) -> list:
    if _real(machine):  # the kernel's objects are not Python: vmio_edu.kvm.state saves them
        return [machine.state, machine.cpu, machine.ide, machine.bs]
    cpu = machine.cpu.kvm_fd.cpu  # vmio_edu.cpu.x86.X86Cpu (through the kernel's vCPU file)
    return [machine.state, machine.cpu, machine.ide, machine.bs, machine.cpu.kvm_fd, cpu.vmcs]


def walk(machine: Any) -> tuple[list, list]:
    """Every model object and every mutable container reachable from the machine, each once:
    (objects, containers). Plain values (numbers, strings, bytes) are skipped on the way."""
    objects, containers, seen = [], [], set()
    todo = _roots(machine)
    atoms = _SKIP
    while todo:
        o = todo.pop()
        if id(o) in seen:
            continue
        seen.add(id(o))
        t = type(o)
        if t is list or t is set:
            containers.append(o)
            todo.extend([v for v in o if type(v) not in atoms])
        elif t is dict:
            containers.append(o)
            todo.extend([v for v in o.values() if type(v) not in atoms])
        elif t is bytearray:
            containers.append(o)
        elif t is tuple:
            todo.extend([v for v in o if type(v) not in atoms])
        elif _is_model_type(t):
            objects.append(o)
            todo.extend([v for v in o.__dict__.values() if type(v) not in atoms])
        elif isinstance(o, (list, set, dict, bytearray, tuple)):  # a subclass (defaultdict...): not expected
            raise TypeError(f"checkpoint: cannot save a {t.__name__} (a container subclass)")
        else:  # threads, ctypes, memoryviews, mmaps, Unicorn...: kept by identity, skipped from now on
            atoms.add(t)
    return objects, containers


class _Pages:
    """Page-wise copies of byte buffers, sharing the pages that did not change since the last copy.

    To find the changed pages fast, the buffer's last content is kept in 64 KiB blocks: an unchanged
    block costs one memcmp (`bytes.startswith` at an offset compares in place, without slicing)."""

    BLOCK = 16 * PAGE

    def __init__(self) -> None:
        self.last: dict[int, tuple] = {}  # id(buffer) -> its last page tuple
        self.blocks: dict[int, list[bytes]] = {}  # id(buffer) -> its content then, in BLOCK pieces

    def copy(self, key: int, buf: Any) -> tuple[tuple, int]:
        data = bytes(buf)
        prev, blocks, B = self.last.get(key), self.blocks.get(key), self.BLOCK
        if prev is None or blocks is None or sum(map(len, blocks)) != len(data):
            out = tuple(data[off:off + PAGE] for off in range(0, len(data), PAGE))
            self.last[key] = out
            self.blocks[key] = [data[off:off + B] for off in range(0, len(data), B)]
            return out, len(data)
        pages, new = None, 0
        for k, blk in enumerate(blocks):
            base = k * B
            if data.startswith(blk, base):
                continue
            blocks[k] = data[base:base + B]
            if pages is None:
                pages = list(prev)
            for off in range(base, base + len(blk), PAGE):
                if not data.startswith(pages[off // PAGE], off):
                    pages[off // PAGE] = data[off:off + PAGE]
                    new += PAGE
        if pages is None:
            return prev, 0
        out = tuple(pages)
        self.last[key] = out
        return out, new


def _changed_pages(buf: Any, pages: tuple) -> list[int]:
    """Offsets of the pages of `buf` that differ from `pages`."""
    data = bytes(buf)
    return [i * PAGE for i, p in enumerate(pages) if data[i * PAGE:i * PAGE + len(p)] != p]


def _copy_contents(c: Any, pages: _Pages) -> tuple[Any, int]:
    if isinstance(c, list):
        return list(c), 8 * len(c) + 56
    if isinstance(c, dict):
        return dict(c), 40 * len(c) + 64
    if isinstance(c, set):
        return set(c), 40 * len(c) + 216
    if len(c) > PAGE:  # a big bytearray (the IDE io_buffer): page-wise, shared
        return pages.copy(id(c), c)
    return bytes(c), len(c) + 33


def save(machine: Any, index: int, pages: _Pages | None = None) -> Checkpoint:
    """Save the machine (stopped at a quiescent point, trace index `index`)."""
    pages = pages if pages is not None else _Pages()
    cp = Checkpoint(index, signature(machine))
    nbytes = 0
    objects, containers = walk(machine)
    for o in objects:
        d = dict(vars(o))
        cp.objects.append((o, d))
        nbytes += 40 * len(d) + 100
    for c in containers:
        saved, n = _copy_contents(c, pages)
        cp.containers.append((c, saved))
        nbytes += n
    cp.ram, n = pages.copy(-1, machine.ram)
    nbytes += n
    if _real(machine):
        return _save_real(machine, cp, pages, nbytes)
    cpu = machine.cpu.kvm_fd.cpu
    cp.vcpu_pages, n = pages.copy(-2, machine.cpu.kvm_fd.vcpu.run_pages)
    nbytes += n
    cp.uc_context = cpu.uc.context_save()
    nbytes += 4096  # about the size of Unicorn's CPUX86State
    cp.cpu = {k: getattr(cpu, k) for k in CPU_FIELDS if hasattr(cpu, k) and k != "vmcs"}
    for k in ("slots", "gprs", "sel", "notes", "mmio_gfns"):  # containers: copy (vmcs is walked)
        cp.cpu[k] = type(cp.cpu[k])(cp.cpu[k])
    cp.cpu["_sregs"] = bytes(cpu._sregs)
    cp.cpu["_hs"] = {k: getattr(cpu._hs, k) for k in _HOOK_FIELDS}
    s = machine.sched
    cp.sched = {"ticks": s.ticks}
    cp.exits = len(machine.exits)
    cp.kernel_exits = len(getattr(machine, "kernel_exits", ()))
    cp.nbytes = nbytes
    return cp


_REAL_PAGES = 2  # of the vCPU mapping: struct kvm_run, the PIO data page (not the coalesced-MMIO ring)


def _save_real(machine: Any, cp: Checkpoint, pages: _Pages, nbytes: int) -> Checkpoint:
    from ..kvm import state as KS

    vcpu = machine.cpu.kvm_fd
    cp.vcpu_pages, n = pages.copy(-2, machine.cpu.kvm_run_mem[:_REAL_PAGES * PAGE])
    cp.kvm_vm = KS.save_vm(vcpu.vm)
    cp.kvm_vcpu = KS.save(vcpu)
    cp.sched = {"ticks": machine.sched.ticks}
    cp.exits = len(machine.exits)
    cp.nbytes = nbytes + n + 8192  # about the kernel state's bytes (XSAVE 4 KiB, LAPIC 1 KiB, ...)
    return cp


def _restore_real(machine: Any, cp: Checkpoint) -> None:
    from ..kvm import state as KS

    vcpu = machine.cpu.kvm_fd
    mem = machine.cpu.kvm_run_mem
    data = b"".join(cp.vcpu_pages)
    mem[:len(data)] = data
    for off in _changed_pages(machine.ram, cp.ram):  # no translated code to drop: write the pages
        page = cp.ram[off // PAGE]
        machine.ram[off:off + len(page)] = page
    KS.restore_vm(vcpu.vm, cp.kvm_vm)
    KS.restore(vcpu, cp.kvm_vcpu)
    machine.sched.ticks = cp.sched["ticks"]


def _ram_gpa(machine: Any, cpu: Any) -> int | None:
    """The guest-physical address where the machine's RAM mmap is mapped (its memory slot), if any."""
    hva = ctypes.addressof(ctypes.c_char.from_buffer(machine.ram))
    return next((g for g, size, h in cpu.slots.values() if h == hva and size == len(machine.ram)), None)


def restore(machine: Any, cp: Checkpoint) -> None:
    """Put the checkpoint's state back into the live machine (stopped at a quiescent point with the same
    signature). The trace, `machine.exits` and the disk image are the caller's (the debugger's) job."""
    for o, d in cp.objects:
        live = vars(o)
        live.clear()
        live.update(d)
    for c, saved in cp.containers:
        if isinstance(c, bytearray):
            data = b"".join(saved) if isinstance(saved, tuple) else saved
            if len(c) == len(data):
                c[:] = data
            else:
                c.clear()
                c.extend(data)
        else:
            c.clear()
            c.update(saved) if not isinstance(c, list) else c.extend(saved)
    if _real(machine):
        _restore_real(machine, cp)
        return
    run_pages = machine.cpu.kvm_fd.vcpu.run_pages
    data = b"".join(cp.vcpu_pages)
    ctypes.memmove(ctypes.addressof(run_pages), data, len(data))
    cpu = machine.cpu.kvm_fd.cpu
    # Guest RAM: only the pages that differ, written through the CPU (write_phys) so that Unicorn drops
    # code it translated from them; untouched pages keep their translations (a full flush costs ~3 ms).
    ram_gpa = _ram_gpa(machine, cpu)
    for off in _changed_pages(machine.ram, cp.ram):
        page = cp.ram[off // PAGE]
        if ram_gpa is None or not cpu.write_phys(ram_gpa + off, page):
            machine.ram[off:off + len(page)] = page
            ram_gpa = None
    cpu.uc.context_restore(cp.uc_context)
    for k, v in cp.cpu.items():
        if k in ("_sregs", "_hs"):
            continue
        live = getattr(cpu, k, None)
        if isinstance(v, (list, dict, set)) and type(live) is type(v):  # in place: others may hold it
            live.clear()
            live.extend(v) if isinstance(v, list) else live.update(v)
        else:
            setattr(cpu, k, type(v)(v) if isinstance(v, (list, dict, set)) else v)
    sregs = K.kvm_sregs()
    ctypes.memmove(ctypes.addressof(sregs), cp.cpu["_sregs"], ctypes.sizeof(sregs))
    cpu._sregs = sregs
    for k, v in cp.cpu["_hs"].items():
        setattr(cpu._hs, k, v)
    cpu._hs.error, cpu._hs.stepping, cpu._hs.step_log = None, False, []
    # caches derived from registers and page tables: rebuilt on demand
    cpu._paging, cpu._paging_key = None, ()
    cpu._lin_pages.clear()
    cpu._seg_cache.clear()
    if ram_gpa is None:  # RAM was written behind Unicorn's back: drop every translation
        cpu.flush_code_cache()
    machine.sched.ticks = cp.sched["ticks"]

