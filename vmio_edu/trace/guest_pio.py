"""What the guest instruction behind each I/O exit did with guest memory: the `guest_pio` point event.

`struct kvm_run` tells QEMU the port, size, count and data of an I/O exit, never where in guest memory a
`rep outsw` took its words or where a `rep insw` will store them (KVM knows: `ctxt->src.addr.mem` /
`ctxt->dst.addr.mem` in emulate.c). Byte provenance (vmio_edu.trace.provenance) needs that link, so this
observer, a tool like gdb looking at the vCPU and not part of the modelled path, records it right after
QEMU's `kvm_run_exit` trace event: it reads the registers and segments as KVM_GET_REGS / KVM_GET_SREGS
give them (untraced) and decodes the instruction at RIP with Capstone.

    guest_pio(is_in=0, port=0x1f0, size=2, count=1, data_offset=0x1000, string=1, insn=0x11bf,
              addr=0x20000, step=2)

`addr` is the linear address of element 0, element k is at `addr + k*step` (step is -size with DF=1).
Where the registers stand at the exit is what real KVM shows userspace, on both engines:
  OUT  the element was consumed and RSI/RCX/RIP written back before the exit (x86.c:4638-4643), so the
       element was at RSI - count*step; after the last element RIP is past the instruction (today's
       kernels; Linux 3.7 leaves it on the `rep outsw` with RCX=0), so an exit whose RIP is right after
       the previous exit's string instruction comes from that instruction's last element.
  IN   nothing is written back until the next KVM_RUN (complete_userspace_io, x86.c:4620-4627): RIP is
       on the instruction and element 0 goes to ES:RDI.
It costs nothing unless a recorder or debugger is attached (only then are events kept).
"""
from __future__ import annotations

from typing import Any

from ..cpu.decode import DecodeError, decode_io
from ..cpu.mmu import PageFault, Paging, translate
from .views import _Quiet, cpu_mode, peek_regs, peek_sregs
from ..linux.include.uapi.linux import kvm as K
from .tracepoint import emit

DF = 1 << 10


class _MachineLike:
    """What views.peek_regs / peek_sregs read of a machine."""

    def __init__(self, cpu: Any, engine: str) -> None:
        self.cpu, self.engine = cpu, engine


class GuestPioObserver:
    """A point-event listener: on `kvm_run_exit` with KVM_EXIT_IO, emit `guest_pio` (see the module doc)."""

    def __init__(self, cpu: Any, engine: str, ram: Any) -> None:
        self.m = _MachineLike(cpu, engine)
        self.ram = ram
        self._last: tuple[int, int, Any] | None = None  # (linear address, length, IoInsn) of the last string insn

    def __call__(self, name: str, layer: str, fields: dict, ctx: Any) -> None:
        if name != "kvm_run_exit" or ctx is None or ctx.hooks is None:
            return
        cpu = fields.get("cpu")
        run = getattr(cpu, "kvm_run", None)
        if run is None or run.exit_reason != K.KVM_EXIT_IO:
            return
        io = run.u.io
        fields = {"is_in": int(io.direction == K.KVM_EXIT_IO_IN), "port": io.port, "size": io.size,
                  "count": io.count, "data_offset": io.data_offset}
        try:
            fields.update(self._describe(io))
        except (DecodeError, PageFault, OSError, ValueError, IndexError):
            self._last = None  # (unreadable code: no guest address for this exit)
        emit("guest_pio", "guest", **fields)

    def _describe(self, io: Any) -> dict:
        with _Quiet():
            regs = peek_regs(self.m)
            cpu = self._emulated_cpu()
            if cpu is not None:  # the emulated CPU knows its mode, segments and paging as of the exit
                mode = cpu.code_bits()
                seg_base = cpu.segment_base
                to_phys = lambda lin: cpu._phys_page(lin & ~0xFFF) | (lin & 0xFFF)  # noqa: E731 (cached walk)
                rip = cpu._linear_ip(regs["rip"])
            else:
                sregs = self._sregs()
                mode = cpu_mode(sregs)
                paging = Paging(sregs.cr0, sregs.cr3, sregs.cr4, sregs.efer)
                seg_base = lambda seg: getattr(sregs, seg).base  # noqa: E731
                to_phys = lambda lin: translate(paging, lin, self._read_phys)  # noqa: E731
                rip = regs["rip"] if mode == 64 else sregs.cs.base + regs["rip"]
        is_in = io.direction == K.KVM_EXIT_IO_IN
        insn = self._decode(to_phys(rip), mode)
        at = rip
        if insn is None or not insn.string:
            last = self._last
            if not is_in and last is not None and rip == last[0] + last[1]:
                at, insn = last[0], last[2]  # the last element of the string instruction just before
            else:
                self._last = None
                return {"string": 0, "insn": rip}
        else:
            self._last = (rip, insn.length, insn)
        step = -io.size if regs["rflags"] & DF else io.size
        mask = (1 << (8 * insn.ad_bytes)) - 1
        if is_in:
            base = seg_base("es") if mode != 64 else 0
            addr = base + (regs["rdi"] & mask)
        else:
            base = seg_base(insn.seg) if mode != 64 or insn.seg in ("fs", "gs") else 0
            addr = base + ((regs["rsi"] - io.count * step) & mask)
        return {"string": 1, "insn": at, "addr": addr, "step": step}

    def _emulated_cpu(self) -> Any:
        if self.m.engine == "kvm":
            return None
        vcpu = getattr(self.m.cpu.kvm_fd, "vcpu", None)
        return getattr(vcpu, "cpu", None)

    def _sregs(self) -> Any:
        return peek_sregs(self.m)

    def _read_phys(self, a: int, n: int) -> bytes:
        return bytes(self.ram[a:a + n])

    def _decode(self, phys: int, mode: int):
        try:
            return decode_io(self._read_phys(phys, 15), mode)
        except DecodeError:
            return None
