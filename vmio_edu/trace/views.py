"""State views: what a parked machine looks like, as plain JSON-serialisable data.

The debugger's `Stop.views` (a `Views` mapping) computes each view the first time it is read, from the
machine as it is parked now; the CLI and the widgets render the same dicts. Nothing here changes the model
or adds a trace event: registers are read without KVM's register cache noticing (emulated engine) or with
KVM_GET_REGS on the vCPU fd outside the trace (real engine), files are read with plain reads, and no
traced function is called.

Views (keys of `Views`, in display order):
  registers    guest GPRs, RFLAGS decoded, segments and control registers, a disassembly around RIP
  vmcs         the VMCS exit fields, EXIT_QUALIFICATION decoded bit by bit (the real engine's VMCS is
               opaque: what userspace can know is derived from kvm_run and the instruction at RIP)
  kvm_run      the first bytes of `struct kvm_run` with the fields overlaid, and the PIO data page
  ide          the IDE register file of the selected drive, status bits, the PIO buffer position and bytes
  qiov         the QEMUIOVector buffers of in-flight requests (IDE PIO, virtio-blk requests and the merged
               bdrv_aio_multiwrite writes (vmio_edu.trace.qiov_virtio), thread pool, block layer)
  coroutines   QEMU coroutines: live and recently finished, with their states and stacks
  thread_pool  the thread pool's queue, in-flight requests, workers, semaphore and notifier
  aio          the main AioContext: bottom halves and fd handlers
  disk         sectors of the image that differ from the image at the start, before/after bytes
  threads      every model thread: running / ready / blocked (and why) / exited, with its backtrace
  block        the BlockDriverState (format and protocol layers), tracked requests and counters
  exits        how many KVM_RUN returns so far and the last few, as userspace saw them; the exits the
               kernel handled itself (emulated engine) and the registered ioeventfds with their counters
  virtqueue    a virtio disk's queues in guest RAM: the descriptor chains (header, data, status) with their
               addresses, lengths and flags, the avail/used rings and indices, and who owns each descriptor
               (vmio_edu.trace.virtqueue_view)
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from typing import Any, Callable, Iterator

from ..linux.include.uapi.linux import kvm as K
from .backtrace import backtrace
from .tracepoint import current_context

SECTOR = 512
BYTES_CAP = 4096  # most bytes of one buffer shown in a view


# ==========================================================================================================
# Reading without tracing
# ==========================================================================================================
class _Quiet:
    """Run view code with the calling model thread's hooks detached (a condition evaluates views on the
    model thread: nothing it reads may become a trace event)."""

    def __enter__(self) -> None:
        self.ctx = current_context()
        if self.ctx is not None:
            self.hooks, self.ctx.hooks = self.ctx.hooks, None
            self.listeners, self.ctx.listeners = self.ctx.listeners, []

    def __exit__(self, *exc: Any) -> None:
        if self.ctx is not None:
            self.ctx.hooks, self.ctx.listeners = self.hooks, self.listeners


def _vcpu(m: Any) -> Any:
    """The emulated engine's struct kvm_vcpu (None on the real engine)."""
    return getattr(m.cpu.kvm_fd, "vcpu", None) if m.engine == "unicorn" else None


def peek_regs(m: Any) -> dict[str, int]:
    """The guest's general registers, RIP and RFLAGS, as KVM_GET_REGS would return them now.

    Emulated engine: read KVM's register cache without filling it (KVM_GET_REGS itself would mark RSP/RIP
    available, and the model would then skip a later `vmx_cache_reg`: a different run). Registers not yet
    cached come from the VMCS, registers the emulator changed but has not written back from its context.
    Real engine: KVM_GET_REGS on the vCPU fd.
    """
    vcpu = _vcpu(m)
    if vcpu is None:
        regs = K.kvm_regs()
        with _Quiet():
            m.cpu.kvm_fd.ioctl(K.KVM_GET_REGS, regs)
        return {name: int(getattr(regs, name)) for name, _ in K.kvm_regs._fields_}
    from ..linux.arch.x86.include.asm.kvm_host import VCPU_REGS_RIP, VCPU_REGS_RSP
    from ..linux.arch.x86.kvm.x86 import _KVM_REGS_ORDER
    a, vmcs = vcpu.arch, vcpu.vmx.vmcs
    vals = list(a.regs[:17])
    if not a.regs_avail >> VCPU_REGS_RSP & 1:
        vals[VCPU_REGS_RSP] = vmcs.GUEST_RSP
    if not a.regs_avail >> VCPU_REGS_RIP & 1:
        vals[VCPU_REGS_RIP] = vmcs.GUEST_RIP
    ctxt = a.emulate_ctxt
    if a.emulate_regs_need_sync_to_vcpu and ctxt is not None:
        for nr in range(16):
            if ctxt.regs_dirty >> nr & 1:
                vals[nr] = ctxt._regs[nr]
    out = {name: vals[i] & 0xFFFF_FFFF_FFFF_FFFF for i, name in enumerate(_KVM_REGS_ORDER)}
    out["rip"] = vals[VCPU_REGS_RIP] & 0xFFFF_FFFF_FFFF_FFFF
    out["rflags"] = vmcs.GUEST_RFLAGS
    order = [n for n, _ in K.kvm_regs._fields_]
    return {n: out[n] for n in order}


def peek_sregs(m: Any) -> K.kvm_sregs:
    """Segments, control registers and descriptor tables (KVM_GET_SREGS), without tracing."""
    vcpu = _vcpu(m)
    if vcpu is not None:
        s = vcpu.cpu.get_sregs()
        s.cr8, s.apic_base = vcpu.arch.cr8, vcpu.arch.apic_base
        return s
    s = K.kvm_sregs()
    with _Quiet():
        m.cpu.kvm_fd.ioctl(K.KVM_GET_SREGS, s)
    return s


def _segment(seg: Any) -> dict:
    return {"selector": seg.selector, "base": seg.base, "limit": seg.limit, "type": seg.type,
            "present": seg.present, "dpl": seg.dpl, "db": seg.db, "l": seg.l, "g": seg.g}


EFER_LMA = 1 << 10
RFLAGS_BITS = (("CF", 0), ("PF", 2), ("AF", 4), ("ZF", 6), ("SF", 7), ("TF", 8), ("IF", 9), ("DF", 10),
               ("OF", 11), ("NT", 14), ("RF", 16), ("VM", 17), ("AC", 18))


def cpu_mode(sregs: Any) -> int:
    """16, 32 or 64: how the CPU decodes instructions now (CR0.PE, EFER.LMA with CS.L, CS.D)."""
    if not sregs.cr0 & 1:
        return 16
    if sregs.efer & EFER_LMA and sregs.cs.l:
        return 64
    return 32 if sregs.cs.db else 16


# ==========================================================================================================
# registers
# ==========================================================================================================
def registers_view(m: Any) -> dict:
    regs = peek_regs(m)
    sregs = peek_sregs(m)
    mode = cpu_mode(sregs)
    fl = regs["rflags"]
    linear = (sregs.cs.base + regs["rip"]) if mode != 64 else regs["rip"]
    return {
        "engine": m.engine,
        "mode": mode,
        "regs": regs,
        "rflags": {"value": fl, "set": [n for n, b in RFLAGS_BITS if fl >> b & 1]},
        "segments": {n: _segment(getattr(sregs, n)) for n in ("cs", "ds", "es", "fs", "gs", "ss", "tr", "ldt")},
        "control": {"cr0": sregs.cr0, "cr2": sregs.cr2, "cr3": sregs.cr3, "cr4": sregs.cr4, "cr8": sregs.cr8,
                    "efer": sregs.efer, "apic_base": sregs.apic_base},
        "tables": {"gdt": {"base": sregs.gdt.base, "limit": sregs.gdt.limit},
                   "idt": {"base": sregs.idt.base, "limit": sregs.idt.limit}},
        "disassembly": disassembly_around(m, linear, mode),
    }


def _code_region(m: Any) -> tuple[int, int] | None:
    """(start, length) of the loaded guest program, when known: disassembly starts there, in step."""
    prog = getattr(m, "program", None)
    if prog is not None and getattr(prog, "code", None) is not None:
        return prog.load, len(prog.code)
    cfg = getattr(m, "_config", {}) or {}
    code = cfg.get("guest")
    if isinstance(code, (bytes, bytearray)):
        return cfg.get("load", 0x1000), len(code)
    return None


def disassembly_around(m: Any, linear: int, mode: int, before: int = 6, after: int = 8) -> dict:
    """Capstone's listing around `linear` (the guest's CS base + RIP), read from guest RAM.

    The guest's page tables map memory one to one (vmio_edu.guest.loader), so a linear address is read at
    the same physical address. x86 cannot be decoded backwards, so the listing starts at the program's
    first byte when RIP lies inside it, else at the furthest point before RIP that decodes in step with it.
    """
    from ..guest import disassemble

    ram = m.ram
    size = len(ram)
    out: dict = {"rip_linear": linear, "mode": mode, "rows": []}
    if not 0 <= linear < size:
        out["note"] = f"RIP points outside guest RAM (0..{size - 1:#x})"
        return out
    rows: list = []
    region = _code_region(m)
    if region is not None and region[0] <= linear < region[0] + region[1]:
        start, n = region[0], min(region[1] + 16, size - region[0])
        rows = disassemble(bytes(ram[start:start + n]), mode, start)
        if not any(r[0] == linear for r in rows):
            rows = []
    if not rows:
        for back in range(min(48, linear), -1, -1):
            start = linear - back
            cand = disassemble(bytes(ram[start:min(size, linear + 64)]), mode, start)
            if any(r[0] == linear for r in cand):
                rows = cand
                break
    at = next(i for i, r in enumerate(rows) if r[0] == linear)
    for addr, hexbytes, mnemonic, ops in rows[max(0, at - before):at + after + 1]:
        out["rows"].append({"address": addr, "bytes": hexbytes, "mnemonic": mnemonic, "op_str": ops,
                            "current": addr == linear})
    return out


# ==========================================================================================================
# VMCS
# ==========================================================================================================
IO_EXIT = 30
EPT_VIOLATION = 48
CR_ACCESS = 28


def decode_exit_qualification(reason: int, q: int) -> list[dict]:
    """EXIT_QUALIFICATION, field by field (Intel SDM Vol. 3C §27.2.1; table 27-5 for I/O)."""
    def row(bits: str, field: str, value: int, meaning: str) -> dict:
        return {"bits": bits, "field": field, "value": value, "meaning": meaning}

    basic = reason & 0xFFFF
    if basic == IO_EXIT:
        size = (q & 7) + 1
        return [row("2:0", "size of access", q & 7, f"{size} byte{'s' if size > 1 else ''} (value + 1)"),
                row("3", "direction", q >> 3 & 1, "IN (port to guest)" if q >> 3 & 1 else "OUT (guest to port)"),
                row("4", "string instruction", q >> 4 & 1, "INS/OUTS" if q >> 4 & 1 else "IN/OUT"),
                row("5", "REP prefixed", q >> 5 & 1, "yes" if q >> 5 & 1 else "no"),
                row("6", "operand encoding", q >> 6 & 1, "immediate port" if q >> 6 & 1 else "port in DX"),
                row("15:7", "reserved", q >> 7 & 0x1FF, "0"),
                row("31:16", "port number", q >> 16 & 0xFFFF, f"{q >> 16 & 0xFFFF:#x}")]
    if basic == EPT_VIOLATION:
        names = ((0, "data read"), (1, "data write"), (2, "instruction fetch"), (3, "page readable"),
                 (4, "page writable"), (5, "page executable"), (7, "guest linear address valid"),
                 (8, "access to the translated address (not a paging structure)"))
        return [row(str(b), n, q >> b & 1, "yes" if q >> b & 1 else "no") for b, n in names]
    if basic == CR_ACCESS:
        kinds = ("MOV to CR", "MOV from CR", "CLTS", "LMSW")
        return [row("3:0", "control register", q & 0xF, f"CR{q & 0xF}"),
                row("5:4", "access type", q >> 4 & 3, kinds[q >> 4 & 3]),
                row("11:8", "general register", q >> 8 & 0xF, str(q >> 8 & 0xF))]
    return [row("63:0", "exit qualification", q, "not used by this exit reason" if q == 0 else f"{q:#x}")]


def vmcs_view(m: Any) -> dict:
    from ..cpu import vmcs as V

    vcpu = _vcpu(m)
    if vcpu is not None and not vcpu.stat.get("exits"):
        return {"opaque": False, "exit_reason": None, "exit_reason_name": None, "fields": vcpu.vmx.vmcs.view(),
                "note": "no VM exit yet: the guest has not run"}
    if vcpu is not None:
        v = vcpu.vmx.vmcs
        reason = v.VM_EXIT_REASON
        return {
            "opaque": False,
            "exit_reason": reason,
            "exit_reason_name": V.EXIT_REASON_NAMES.get(reason & 0xFFFF, "?"),
            "exit_qualification": v.EXIT_QUALIFICATION,
            "exit_qualification_decoded": decode_exit_qualification(reason, v.EXIT_QUALIFICATION),
            "instruction_length": v.VM_EXIT_INSTRUCTION_LEN,
            "guest_rip": v.GUEST_RIP,
            "fields": v.view(),
            "note": "the VMCS of the last VM exit (the CPU writes the exit fields, KVM reads them)",
        }
    return _vmcs_from_userspace(m)


# The VMX basic exit reason behind each KVM exit reason, as far as userspace can tell.
_LIKELY_VMX_REASON = {K.KVM_EXIT_IO: IO_EXIT, K.KVM_EXIT_MMIO: EPT_VIOLATION, K.KVM_EXIT_HLT: 12}


def _vmcs_from_userspace(m: Any) -> dict:
    """Real engine: the VMCS (a VMCB on AMD hosts) lives in the kernel. Rebuild what can be known from
    kvm_run and the instruction at RIP, and say which parts are derived."""
    from ..cpu import vmcs as V

    run = m.cpu.kvm_run
    kr = run.exit_reason
    if not m.exits and kr == K.KVM_EXIT_UNKNOWN:
        return {"opaque": True, "exit_reason": None, "exit_reason_name": None,
                "note": "no VM exit yet (and on real KVM the VMCS is inside the kernel, opaque to userspace)"}
    out: dict = {"opaque": True,
                 "note": "real KVM: the VMCS is inside the kernel and userspace cannot read it; the fields "
                         "below are derived from struct kvm_run and the instruction at RIP",
                 "kvm_exit_reason": kr, "kvm_exit_reason_name": K.EXIT_NAMES.get(kr, str(kr))}
    vmx = _LIKELY_VMX_REASON.get(kr)
    out["exit_reason"] = vmx
    out["exit_reason_name"] = V.EXIT_REASON_NAMES.get(vmx, None) if vmx is not None else None
    if kr == K.KVM_EXIT_IO:
        io = run.u.io
        string = rep = imm = None
        insn = _io_instruction_near_rip(m, io.direction == K.KVM_EXIT_IO_IN)
        if insn is not None:
            mnem, ops = insn["mnemonic"], insn["op_str"]
            string = mnem.split()[-1].startswith(("ins", "outs"))
            rep = mnem.startswith("rep")
            imm = not string and "dx" not in ops
        q = (io.size - 1) | (8 if io.direction == K.KVM_EXIT_IO_IN else 0) | (io.port << 16)
        q |= (16 if string else 0) | (32 if rep else 0) | (64 if imm else 0)
        out["exit_qualification"] = q
        out["exit_qualification_decoded"] = decode_exit_qualification(IO_EXIT, q)
        out["derived_from"] = {"size, direction, port": "kvm_run.io",
                               "string, REP, operand encoding": (f"the instruction at {insn['address']:#x}: "
                                                                 f"{insn['mnemonic']} {insn['op_str']}".strip()
                                                                 if insn else "unknown (no I/O instruction "
                                                                              "found at RIP)")}
    elif kr == K.KVM_EXIT_MMIO:
        mm = run.u.mmio
        out["guest_physical_address"] = mm.phys_addr
        out["exit_qualification_decoded"] = [
            {"bits": "1", "field": "data write", "value": int(bool(mm.is_write)), "meaning": "from kvm_run.mmio"}]
    return out


def _io_instruction_near_rip(m: Any, is_in: bool) -> dict | None:
    """The IN/OUT/INS/OUTS that caused the exit: at RIP, or just before it (a plain OUT exits with RIP
    already past it)."""
    try:
        regs = peek_regs(m)
        mode = cpu_mode(peek_sregs(m))
        dis = disassembly_around(m, regs["rip"], mode, before=1, after=0)["rows"]
    except Exception:  # noqa: BLE001 - a view degrades, it does not fail
        return None
    want = ("in", "ins") if is_in else ("out", "outs")
    for r in reversed(dis):
        base = r["mnemonic"].split()[-1]
        if base.rstrip("bwd") in want or base in want:
            return r
    return None


# ==========================================================================================================
# kvm_run and the PIO page
# ==========================================================================================================
KVM_RUN_HEAD = 64  # header + the io / mmio members of the exit union
_MMIO_FIELDS = (("mmio.phys_addr", 32, 8), ("mmio.data", 40, 8), ("mmio.len", 48, 4), ("mmio.is_write", 52, 1))


def kvm_run_view(m: Any) -> dict:
    mem = m.cpu.kvm_run_mem
    head = bytes(mem[:KVM_RUN_HEAD])
    run = m.cpu.kvm_run
    reason = run.exit_reason
    layout = [f for f in K.KVM_RUN_FIELDS if not f[0].startswith("io.")]
    if reason == K.KVM_EXIT_IO:
        layout += [f for f in K.KVM_RUN_FIELDS if f[0].startswith("io.")]
    elif reason == K.KVM_EXIT_MMIO:
        layout += list(_MMIO_FIELDS)
    fields = [{"name": n, "offset": o, "size": s, "value": int.from_bytes(head[o:o + s], "little")}
              for n, o, s in layout]
    out = {"bytes": head.hex(), "fields": fields, "exit_reason": reason,
           "exit_reason_name": K.EXIT_NAMES.get(reason, str(reason))}
    if reason == K.KVM_EXIT_IO:
        io = run.u.io
        off, n = io.data_offset, io.size * io.count
        data = bytes(mem[off:off + min(n, BYTES_CAP)]) if 0 < off < len(mem) else b""
        out["io"] = {"direction": "in" if io.direction == K.KVM_EXIT_IO_IN else "out", "size": io.size,
                     "port": io.port, "count": io.count, "data_offset": off}
        out["pio"] = {"data_offset": off, "size": io.size, "count": io.count, "bytes": data.hex(),
                      "truncated": n > BYTES_CAP}
    elif reason == K.KVM_EXIT_MMIO:
        mm = run.u.mmio
        out["mmio"] = {"phys_addr": mm.phys_addr, "len": mm.len, "is_write": bool(mm.is_write),
                       "data": bytes(mm.data)[:mm.len].hex()}
    return out


# ==========================================================================================================
# IDE, buffers, coroutines, thread pool, block
# ==========================================================================================================
def ide_view(m: Any, channel: int = 0) -> dict:
    bus = m.ide.bus[channel]
    s = bus.ifs[bus.unit]
    drive = s.view()
    n = min(SECTOR * max(1, s.req_nb_sectors), BYTES_CAP, len(s.io_buffer))
    bus_view = {k: v for k, v in bus.view().items() if k != "drives"}
    return {
        "channel": channel,
        "selected_unit": bus.unit,
        "status": s.status,
        "status_text": drive["status_text"],
        "status_bits": drive["status_bits"],
        "drive": drive,
        "io_buffer": {"bytes": bytes(s.io_buffer[:n]).hex(), "length": n, "data_ptr": s.data_ptr,
                      "data_end": s.data_end},
        "bus": bus_view,
        "other_drives": [{"unit": d.unit, "present": _disk_of(d) is not None} for d in bus.ifs if d is not s],
        "bmdma": m.ide.bmdma[channel].view() if len(m.ide.bmdma) > channel else None,
    }


def _disk_of(drive: Any) -> Any:
    """A drive's disk: `bs` (QEMU 1.6.1's BlockDriverState) or `blk` (QEMU 10.2's BlockBackend)."""
    return getattr(drive, "blk", None) or drive.bs


def block_nodes(m: Any) -> list:
    """The block nodes from the device down: 1.6.1's format BDS and its `file`; 10.2's BlockBackend root
    node and its `file` child's node."""
    out = []
    bs = m.bs.root.bs if hasattr(m.bs, "root") else m.bs
    while bs is not None:
        out.append(bs)
        bs = getattr(bs.file, "bs", bs.file)
    return out


def _iovec_view(v: Any, io_buffers: dict[int, str]) -> dict:
    mem = v.mem()
    return {"iov_len": v.iov_len, "iov_offset": v.iov_offset,
            "buffer": io_buffers.get(id(v.iov_base), type(v.iov_base).__name__),
            "bytes": bytes(mem[:BYTES_CAP]).hex(), "truncated": v.iov_len > BYTES_CAP}


def qiov_view(m: Any) -> dict:
    io_buffers = {}
    requests = []
    for ch, bus in enumerate(m.ide.bus):
        for s in bus.ifs:
            io_buffers[id(s.io_buffer)] = f"ide{ch}-{s.unit} io_buffer"
    for ch, bus in enumerate(m.ide.bus):
        for s in bus.ifs:
            if s.pio_aiocb is not None and s.qiov is not None:
                q = s.qiov
                requests.append({"owner": f"IDE ide{ch}-{s.unit} PIO request (IDEState.qiov)",
                                 "niov": q.niov, "size": q.size,
                                 "iov": [_iovec_view(v, io_buffers) for v in q.iov[:q.niov]]})
    if getattr(m, "ram", None) is not None:
        io_buffers[id(m.ram)] = "guest RAM"  # a virtio request's buffers: mapped in place
    from .qiov_virtio import virtio_qiov_requests
    requests += virtio_qiov_requests(m)
    pool = getattr(m.state.aio_context, "thread_pool", None)
    if pool is not None:
        for req in reversed(pool.head):  # oldest first
            arg = req.arg
            io = getattr(arg, "io", None)  # 10.2's RawPosixAIOData keeps them in its `io` member
            iovs = list(io.iov)[:io.niov] if io is not None else \
                list(getattr(arg, "aio_iov", []) or [])[:getattr(arg, "aio_niov", 0) or None]
            entry = {"owner": f"thread pool request #{req.id} ({req.func.__name__})", **req.view()}
            entry["iov"] = [_iovec_view(v, io_buffers) for v in iovs]
            requests.append(entry)
    tracked = []
    for bs in block_nodes(m):
        tracked += [{"bds": os.path.basename(bs.filename) + (f" ({bs.drv.format_name})" if bs.drv else ""),
                     **r.view()} for r in bs.tracked_requests]
    return {"requests": requests, "tracked_requests": tracked}


def coroutines_view(m: Any) -> dict:
    from ..qemu.qemu_coroutine import coroutines_view as cv
    return cv(m.state)


def thread_pool_view(m: Any) -> dict:
    pool = getattr(m.state.aio_context, "thread_pool", None)
    if pool is None:
        return {"created": False, "queue": [], "in_flight": [], "workers": [],
                "note": "no thread pool yet: QEMU creates it on the first asynchronous request"}
    return {"created": True, **pool.view()}


def aio_view(m: Any) -> dict:
    out = {k: v for k, v in m.state.aio_context.view().items() if k != "thread_pool"}
    handlers = m.state.extra.get("io_handlers")
    if handlers:  # the main loop's own fd handlers (iohandler.c), e.g. a virtqueue's host notifier
        out["io_handlers"] = [h.view() for h in handlers]
    return out


ACCT_NOTE = ("QEMU 1.6.1 counts a PIO sector write as a read: ide_sector_write calls bdrv_acct_start with "
             "BDRV_ACCT_READ (hw/ide/core.c:797), so after a PIO write rd_bytes/rd_ops grow and wr_bytes/wr_ops "
             "stay 0, in the model as in query-blockstats on a real QEMU 1.6.1.")


VIRTIO_ACCT_NOTE = ("virtio-blk counts as it should: virtio_blk_handle_write starts BDRV_ACCT_WRITE and "
                    "virtio_blk_handle_read BDRV_ACCT_READ (hw/block/virtio-blk.c), one operation per request, "
                    "so wr_bytes/wr_ops grow with a write (unlike IDE PIO, which counts its writes as reads).")


def block_view(m: Any) -> dict:
    """The format BDS (1.6.1) or the BlockBackend (10.2), its counters as query-blockstats shows them (with
    a note on 1.6.1's accounting for the device the disk hangs on)."""
    if hasattr(m.bs, "root"):
        return m.bs.view()
    virtio = getattr(m, "disk", "ide") == "virtio"
    return dict(m.bs.view(), device="virtio-blk-pci" if virtio else "ide-hd (PIIX IDE)",
                accounting_note=VIRTIO_ACCT_NOTE if virtio else ACCT_NOTE)


def virtqueue_view(m: Any) -> dict:
    """virtio-blk's queues in guest RAM (hw/virtio/virtio.c VirtQueue): each chain and who owns it."""
    from .virtqueue_view import machine_virtqueue_view
    return machine_virtqueue_view(m)


def exits_view(m: Any, last: int = 8) -> dict:
    """Exits to userspace (`count`, `last`), and beside them the exits KVM handled itself (`kernel`:
    emulated engine only) and the ioeventfds QEMU registered (`ioeventfds`: port/address, length, datamatch,
    the eventfd and its counter as the kernel shows it)."""
    from ..linux.fs.eventfd import eventfd_count
    from .kernel_exits import count_kernel_exits
    kernel = list(getattr(m, "kernel_exits", ()))
    ioeventfds = []
    for space in (m.state.address_space_io, m.state.address_space_memory):
        for fd in getattr(space, "ioeventfds", ()) if space is not None else ():
            rfd = getattr(fd.e, "rfd", -1)
            ioeventfds.append({"space": space.name, "addr": fd.addr, "size": fd.size,
                               "datamatch": fd.data if fd.match_data else None, "fd": rfd,
                               "count": eventfd_count(rfd) if rfd >= 0 else None})
    return {"count": len(m.exits), "last": [x.to_json() for x in m.exits[-last:]],
            "kernel": {"count": len(kernel), "by_reason": count_kernel_exits(kernel),
                       "last": [x.to_json() for x in kernel[-last:]],
                       "visible": m.engine == "unicorn"},
            "ioeventfds": ioeventfds}


# ==========================================================================================================
# the disk
# ==========================================================================================================
def changed_sectors(path: str, pristine: str, chunk: int = 1 << 20) -> list[int]:
    """Sectors of `path` whose bytes differ from `pristine` (missing bytes count as a change)."""
    out = []
    with open(path, "rb") as a, open(pristine, "rb") as b:
        base = 0
        while True:
            x, y = a.read(chunk), b.read(chunk)
            if not x and not y:
                break
            if x != y:
                for off in range(0, max(len(x), len(y)), SECTOR):
                    if x[off:off + SECTOR] != y[off:off + SECTOR]:
                        out.append((base + off) // SECTOR)
            base += chunk
    return out


def _read_sector(path: str, lba: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(lba * SECTOR)
        return f.read(SECTOR)


def sector_view(path: str, pristine: str, lba: int) -> dict:
    before, after = _read_sector(pristine, lba), _read_sector(path, lba)
    changed = sum(1 for i in range(max(len(before), len(after))) if before[i:i + 1] != after[i:i + 1])
    return {"lba": lba, "offset": lba * SECTOR, "changed_bytes": changed, "before": before.hex(),
            "after": after.hex()}


def disk_view(m: Any, pristine: str, sector: int | None = None, max_sectors: int = 8) -> dict:
    path = m.image_path
    changed = changed_sectors(path, pristine)
    shown = [sector] if sector is not None else changed[:max_sectors]
    return {
        "image": path,
        "size_bytes": os.path.getsize(path),
        "sectors_changed": changed[:256],
        "sectors_changed_count": len(changed),
        "sectors": [sector_view(path, pristine, lba) for lba in shown],
        "note": "compared with the image as it was when the debugger was created",
    }


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ==========================================================================================================
# threads
# ==========================================================================================================
def threads_view(m: Any) -> dict:
    sched = m.sched
    parked = getattr(sched, "_parked", None)
    due = {id(t): tick for t, tick in getattr(sched, "_due", [])}
    out = []
    for t in sched.threads:
        if t.state == "done":
            state, why = "exited", ""
        elif t.state == "blocked":
            state, why = "blocked", t.why
        elif t is parked:
            state, why = "running", "stopped by the debugger (all-stop: every other thread waits too)"
        else:
            state = "ready"
            why = (f"runnable, due at vCPU tick {due[id(t)]}" if id(t) in due
                   else "runnable, waiting for its turn (one model thread runs at a time, in a fixed order, "
                        "so every run is the same)")
        out.append({"name": t.name, "state": state, "why": why, "vcpu": t.is_vcpu,
                    "backtrace": [f.to_json() for f in backtrace(t.ctx.stack, t.name, t.ctx.machine)]})
    return {"ticks": sched.ticks, "bql_owner": m.state.bql_owner, "threads": out}


# ==========================================================================================================
# The lazy mapping
# ==========================================================================================================
VIEW_NAMES = ("registers", "vmcs", "kvm_run", "ide", "virtqueue", "qiov", "coroutines", "thread_pool", "aio",
              "disk", "threads", "block", "exits")


class Views(Mapping):
    """`stop.views`: each view computed on first access and kept. `dict(views)` or `to_json()` computes
    them all. Valid only while the debugger is still parked at the stop they belong to."""

    def __init__(self, machine_getter: Callable[[], Any], pristine: str, valid: Callable[[], bool]) -> None:
        self._machine = machine_getter
        self._pristine = pristine
        self._valid = valid
        self._cache: dict[str, Any] = {}

    def _compute(self, name: str) -> Any:
        from ..errors import VmioError

        if not self._valid():
            raise VmioError("this stop is no longer current: the debugger has moved on, so its views would "
                            "show another moment (use dbg.stop.views, or dbg.goto(stop.index) to go back)")
        m = self._machine()
        fn: dict[str, Callable[[], Any]] = {
            "registers": lambda: registers_view(m), "vmcs": lambda: vmcs_view(m),
            "kvm_run": lambda: kvm_run_view(m), "ide": lambda: ide_view(m), "qiov": lambda: qiov_view(m),
            "coroutines": lambda: coroutines_view(m), "thread_pool": lambda: thread_pool_view(m),
            "aio": lambda: aio_view(m), "disk": lambda: disk_view(m, self._pristine),
            "threads": lambda: threads_view(m), "block": lambda: block_view(m), "exits": lambda: exits_view(m),
            "virtqueue": lambda: virtqueue_view(m),
        }
        with _Quiet():
            return fn[name]()

    def __getitem__(self, name: str) -> Any:
        if name not in VIEW_NAMES:
            raise KeyError(name)
        if name not in self._cache:
            self._cache[name] = self._compute(name)
        return self._cache[name]

    def __iter__(self) -> Iterator[str]:
        return iter(VIEW_NAMES)

    def __len__(self) -> int:
        return len(VIEW_NAMES)

    def sector(self, lba: int) -> dict:
        """One sector's bytes before (at the start) and now, whether or not it changed."""
        if not self._valid():
            self._compute("disk")  # raises the stale-stop error
        m = self._machine()
        return sector_view(m.image_path, self._pristine, lba)

    def to_json(self, names: Any = None) -> dict:
        return {n: self[n] for n in (names or VIEW_NAMES)}

    def __repr__(self) -> str:
        done = ", ".join(self._cache) or "none yet"
        return f"<Views {', '.join(VIEW_NAMES)} (computed: {done})>"
