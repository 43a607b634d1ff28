"""The loader's BootState and the default guest on real /dev/kvm (through vmio_edu.kvm.device).

The VMM here is minimal: RAM in slot 0, the in-kernel irqchip (so the guest's PIC programming and EOIs
stay in the kernel, as with QEMU), and a KVM_RUN loop that answers IDE port exits with the same
synchronous ATA stand-in as the Unicorn harness, raising and lowering IRQ 14 with KVM_IRQ_LINE.
"""
from __future__ import annotations

import ctypes
import mmap
import random

import pytest

from guest_harness import DRDY, DSC, ERR, ABRT, AtaStandIn
from kvm_policy import no_kvm
from vmio_edu.errors import EngineUnavailable
from vmio_edu.guest import assemble, boot_state, default_guest, load_code
from vmio_edu.guest.programs import BUFFER2_ADDR, BUFFER_ADDR, GuestParams, GuestResult, OP_RAW, OP_READ, \
    OP_WRITE, OP_WRITE_READ, OUTCOME_DEVICE_ERROR, OUTCOME_OK
from vmio_edu.linux.include.uapi.linux import kvm as K

pytestmark = pytest.mark.kvm
RAM = 2 << 20


class KvmGuest:
    def __init__(self, ata: AtaStandIn | None = None):
        try:
            from vmio_edu.kvm.device import open_real_kvm
        except ImportError as e:  # the real engine is built elsewhere
            no_kvm(f"no real KVM engine in this tree: {e}")
        try:
            self.kvm = open_real_kvm(None)
        except EngineUnavailable as e:
            no_kvm(f"no /dev/kvm: {e}")
        self.ata = ata or AtaStandIn()
        self.vm = self.kvm.ioctl(K.KVM_CREATE_VM, 0)
        self.vm.ioctl(K.KVM_CREATE_IRQCHIP, 0)
        self.ram = mmap.mmap(-1, RAM)
        anchor = ctypes.c_char.from_buffer(self.ram)
        addr = ctypes.addressof(anchor)
        del anchor
        self.vm.ioctl(K.KVM_SET_USER_MEMORY_REGION, K.kvm_userspace_memory_region(
            slot=0, flags=0, guest_phys_addr=0, memory_size=RAM, userspace_addr=addr))
        self.vcpu = self.vm.ioctl(K.KVM_CREATE_VCPU, 0)
        self.run = self.vcpu.kvm_run
        self.page = self.vcpu.mmap(self.kvm.mmap_size())
        self.line = False
        self.ports_seen: set[int] = set()

    def boot(self, mode: int, code: bytes, entry: int = 0x1000) -> None:
        load_code(self.ram, code, entry)
        st = boot_state(self.ram, mode, entry)
        self.vcpu.ioctl(K.KVM_SET_SREGS, st.sregs)
        self.vcpu.ioctl(K.KVM_SET_REGS, st.regs)

    def regs(self) -> K.kvm_regs:
        r = K.kvm_regs()
        self.vcpu.ioctl(K.KVM_GET_REGS, r)
        return r

    def _sync_irq(self) -> None:
        if self.ata.irq != self.line:
            self.line = self.ata.irq
            self.vm.ioctl(K.KVM_IRQ_LINE, K.kvm_irq_level(14, int(self.line)))

    def run_to_halt(self, limit: int = 50_000) -> list[tuple]:
        """KVM_RUN until the guest halts for good; returns the non-IDE exits (reason, port, value)."""
        other = []
        for _ in range(limit):
            self.vcpu.ioctl(K.KVM_RUN, 0)
            reason = self.run.exit_reason
            if self.vcpu.halted or reason == K.KVM_EXIT_HLT:
                return other
            if reason != K.KVM_EXIT_IO:
                raise AssertionError(f"exit {K.EXIT_NAMES.get(reason, reason)} at rip={self.regs().rip:#x}")
            io = self.run.u.io
            self.ports_seen.add(io.port)
            base, step = io.data_offset, io.size
            for i in range(io.count):
                at = base + i * step
                if io.direction == K.KVM_EXIT_IO_OUT:
                    value = int.from_bytes(self.page[at:at + step], "little")
                    if 0x1F0 <= io.port <= 0x1F7 or io.port == 0x3F6:
                        self.ata.port_out(io.port, step, value)
                    else:
                        other.append(("out", io.port, value))
                else:
                    value = self.ata.port_in(io.port, step) if (0x1F0 <= io.port <= 0x1F7 or io.port == 0x3F6) else 0
                    self.page[at:at + step] = value.to_bytes(step, "little")
            self._sync_irq()
        raise AssertionError(f"no final halt in {limit} exits")

    def close(self) -> None:
        self.run = None
        self.page.release()
        self.kvm.close()
        self.ram.close()


@pytest.fixture
def kvm_guest():
    made = []

    def make(ata=None):
        g = KvmGuest(ata)
        made.append(g)
        return g

    yield make
    for g in made:
        g.close()


@pytest.mark.parametrize("mode", [16, 32, 64])
def test_boot_state_runs_on_kvm(kvm_guest, mode):
    g = kvm_guest()
    src = {16: "mov ax, 0x1616\nmov [0x7000], ax\nmov dx, 0x80\nout dx, al\nhlt",
           32: "mov eax, 0x32323232\nmov [0x1ff000], eax\nmov dx, 0x80\nout dx, al\nhlt",
           64: "mov rax, 0x6464646464646464\nmov rbx, 0x1ff000\nmov [rbx], rax\n"
               "mov rcx, cs\nmov rdx, 0x80\nout dx, al\nhlt"}[mode]
    g.boot(mode, assemble(src, mode, 0x1000))
    other = g.run_to_halt()
    assert other == [("out", 0x80, {16: 0x16, 32: 0x32, 64: 0x64}[mode])]
    if mode == 16:
        assert g.ram[0x7000:0x7002] == b"\x16\x16"
    else:
        want = b"\x32" * 4 if mode == 32 else b"\x64" * 8
        assert g.ram[0x1FF000:0x1FF000 + len(want)] == want    # the top of RAM is reachable
    if mode == 64:
        assert g.regs().rcx == 0x08


def pattern(n, seed):
    return random.Random(seed).randbytes(512 * n)


def start_default(g: KvmGuest, params: GuestParams, data: bytes = b"") -> GuestResult:
    prog = default_guest()
    params.write(g.ram)
    g.ram[BUFFER_ADDR:BUFFER_ADDR + len(data)] = data
    g.boot(prog.mode, prog.assemble(), prog.entry)
    g.run_to_halt()
    return GuestResult.read(g.ram)


@pytest.mark.parametrize("polling", [True, False])
def test_default_guest_write_read_back_on_kvm(kvm_guest, polling):
    g = kvm_guest()
    data = pattern(3, 1)
    r = start_default(g, GuestParams(op=OP_WRITE_READ, lba=4, count=3, polling=polling), data)
    assert (r.done, r.outcome, r.sectors, r.vector) == (True, OUTCOME_OK, 6, 0xFF)
    assert r.irqs == (0 if polling else 6)        # IRQ 14 through the in-kernel PIC, the guest's IDT
    assert g.ata.disk[4 * 512:7 * 512] == data
    assert bytes(g.ram[BUFFER2_ADDR:BUFFER2_ADDR + len(data)]) == data
    assert r.status == DRDY | DSC
    assert not g.ports_seen & {0x20, 0x21, 0xA0, 0xA1}   # the PIC lives in the kernel


def test_default_guest_read_and_abort_on_kvm(kvm_guest):
    ata = AtaStandIn()
    ata.disk[:1024] = pattern(2, 9)
    g = kvm_guest(ata)
    r = start_default(g, GuestParams(op=OP_READ, lba=0, count=2))
    assert (r.outcome, r.irqs, r.sectors) == (OUTCOME_OK, 2, 2)
    assert bytes(g.ram[BUFFER_ADDR:BUFFER_ADDR + 1024]) == ata.disk[:1024]

    g2 = kvm_guest()
    r = start_default(g2, GuestParams(op=OP_RAW, command=0x77))
    assert (r.outcome, r.status, r.error, r.irqs) == (OUTCOME_DEVICE_ERROR, DRDY | ERR, ABRT, 1)
