"""The whole machine on the emulated Linux 6.12 kernel: the default ATA guest's write and read, the IRQ 14
route through 6.12's stages, determinism, and time travel (goto/back reproduce the forward states).

The userspace is QEMU 1.6.1's model (it only talks to the kernel through the /dev/kvm seam), and QEMU
10.2's too once the "10.2" stack's QEMU entry points exist.
"""
from __future__ import annotations

import dataclasses
import importlib.util

import pytest

from vmio_edu import Machine
from vmio_edu.stacks import STACKS
from vmio_edu.trace.recorder import ENTER
from vmio_edu.trace.stacks import UNCHANGED
from vmio_edu.trace.tracepoint import REGISTRY

KERNEL_6_12 = "vmio_edu.linux_6_12.virt.kvm.kvm_main:open_emulated_kvm"
QEMU_1_6_1_ON_LINUX_6_12 = dataclasses.replace(STACKS["1.6.1"], kernel=KERNEL_6_12)


def stacks() -> list:
    have_10_2 = importlib.util.find_spec("vmio_edu.qemu_10_2") is not None
    return [pytest.param(QEMU_1_6_1_ON_LINUX_6_12, id="qemu1.6.1-on-linux6.12"),
            pytest.param("10.2", id="qemu10.2-on-linux6.12", marks=[] if have_10_2 else pytest.mark.skip(
                reason="QEMU 10.2's model (vmio_edu/qemu_10_2, branch m-qemu) is not in this tree yet"))]


def entered(m) -> list:
    """(trace point, thread) of every function entry of a recorded run."""
    return [(REGISTRY[e.what], e.thread) for e in m.trace.events if e.kind == ENTER]


@pytest.mark.parametrize("stack", stacks())
def test_write_then_read_on_the_6_12_kernel(stack):
    with Machine(stack=stack, op="both", lba=7, sectors=2, seed=5, record=True) as m:
        m.run()
        r = m.guest_result()
        assert r["done"] and r["error"] == 0 and r["sectors_done"] == 4
        assert m.image_bytes(7, 2) == r["read_back"][:1024]
        kernel = [tp for tp, _ in entered(m) if tp.side == "linux" and tp.layer in ("vmx", "kvm")]
        assert kernel and {tp.stack for tp in kernel} == {"10.2"}  # not one Linux 3.7 stage
        names = [tp.name for tp in kernel]
        for stage in ("handle_io", "kvm_fast_pio", "kvm_fast_pio_out", "complete_fast_pio_out",
                      "kvm_fast_pio_in", "complete_fast_pio_in", "kvm_emulate_instruction", "pio_in_emulated",
                      "complete_emulated_pio", "vmx_exit_handlers_fastpath", "handle_fastpath_hlt",
                      "kvm_vm_ioctl_irq_line", "kvm_set_irq", "kvm_set_pic_irq", "kvm_pic_set_irq",
                      "pic_unlock", "kvm_vcpu_kick", "kvm_check_and_inject_events", "kvm_cpu_get_interrupt",
                      "kvm_pic_read_irq", "vmx_inject_irq"):
            assert stage in names, stage
        for gone in ("kernel_pio", "__vcpu_run", "inject_pending_event", "emulate_instruction", "handle_halt"):
            assert gone not in names, gone  # Linux 3.7 names


def test_the_irq_route_is_6_12s_and_the_shared_pic_says_so():
    with Machine(stack=QEMU_1_6_1_ON_LINUX_6_12, op="write", lba=1, record=True) as m:
        m.run()
        where = {tp.name: str(tp.source) for tp, _ in entered(m) if tp.stack == "10.2"}
    assert where["kvm_vm_ioctl_irq_line"] == "arch/x86/kvm/x86.c:6503"
    assert where["kvm_set_irq"] == "virt/kvm/irqchip.c:70"
    assert where["kvm_set_pic_irq"] == "arch/x86/kvm/irq_comm.c:30"
    assert where["kvm_pic_set_irq"] == "arch/x86/kvm/i8259.c:188"
    assert where["pic_unlock"] == "arch/x86/kvm/i8259.c:50"
    assert where["kvm_pic_read_irq"] == "arch/x86/kvm/i8259.c:236"
    assert where["vmx_inject_irq"] == "arch/x86/kvm/vmx/vmx.c:4953"
    # the PIC stages that did not change are the 3.7 model's code, listed as such
    for fn in ("kvm_pic_set_irq", "pic_update_irq", "pic_ioport_write"):
        assert UNCHANGED[f"vmio_edu.linux_6_12.arch.x86.kvm.i8259.{fn}"] == f"vmio_edu.linux.arch.x86.kvm.i8259.{fn}"
    assert "vmio_edu.linux_6_12.arch.x86.kvm.i8259.pic_unlock" not in UNCHANGED  # rewritten: it changed


def test_same_guest_same_trace():
    def run():
        with Machine(stack=QEMU_1_6_1_ON_LINUX_6_12, op="both", lba=2, sectors=1, seed=9, record=True) as m:
            m.run()
            return [(e.kind, e.what, e.thread, e.depth) for e in m.trace.events], [x.to_json() for x in m.exits]
    assert run() == run()


@pytest.mark.parametrize("stack", [pytest.param(QEMU_1_6_1_ON_LINUX_6_12, id="linux6.12"),
                                   pytest.param("1.6.1", id="linux3.7")])
def test_goto_and_back_reproduce_the_forward_states(stack):
    # Going back to the guest's first IN completion replays from the start of the run: the page tables'
    # accessed/dirty bits must come out as on the way forward (Unicorn's TLB is flushed on restore).
    m = Machine(stack=stack, op="write", lba=4)
    try:
        dbg = m.debugger()
        dbg.cont()
        events = dbg.events
        firsts = []
        for name in ("complete_fast_pio_out", "handle_fastpath_hlt", "kvm_pic_read_irq", "pio_in_emulated",
                     "complete_fast_pio_in", "complete_emulated_pio", "handle_halt"):
            i = next((i for i, e in enumerate(events) if e[0] == ENTER and REGISTRY[e[1]].name == name), None)
            if i is not None:
                firsts.append(i)
        assert len(firsts) >= 4
        picks = sorted(set(firsts) | {len(events) // 3, 2 * len(events) // 3})
        forward = {}
        for i in picks:
            stop = dbg.goto(i)
            assert stop.index == i
            forward[i] = dbg.state_digest()
        for i in reversed(picks):  # each a replay from a checkpoint
            dbg.goto(i)
            assert dbg.state_digest() == forward[i], f"state at {i} ({REGISTRY[events[i][1]].name}) differs"
        stop = dbg.goto(firsts[0])
        back = dbg.back()
        assert back.index < firsts[0]
    finally:
        m.close()


def test_the_10_2_stack_opens_the_6_12_kernel_for_the_emulated_engine():
    from vmio_edu.devkvm import open_dev_kvm
    from vmio_edu.linux.include.uapi.linux import kvm as K
    from vmio_edu.linux_6_12.virt.kvm.kvm_main import KvmDevFile
    from vmio_edu.stacks import get_stack
    f, used, note = open_dev_kvm("unicorn", None, get_stack("10.2"))
    try:
        assert isinstance(f, KvmDevFile) and used == "unicorn" and note == ""
        assert f.ioctl(K.KVM_GET_API_VERSION) == 12
        vm = f.ioctl(K.KVM_CREATE_VM, 0)
        vcpu = vm.ioctl(K.KVM_CREATE_VCPU, 0)
        assert type(vcpu.vcpu.arch.pio).__module__ == "vmio_edu.linux_6_12.arch.x86.include.asm.kvm_host"
    finally:
        f.close()


@pytest.mark.parametrize("stack", [s for s in stacks() if s.id == "qemu10.2-on-linux6.12"])
def test_the_modern_stacks_host_syscalls_are_linux_6_12s(stack):
    with Machine(stack=stack, op="both", lba=3, sectors=1, record=True) as m:
        m.run()
        host = [(tp.name, str(tp.source), thread) for tp, thread in entered(m) if tp.layer == "host"]
    assert [h[:2] for h in host] == [("sys_pwrite64", "fs/read_write.c:805"), ("ksys_pwrite64", "fs/read_write.c:785"),
                                     ("sys_pread64", "fs/read_write.c:771"), ("ksys_pread64", "fs/read_write.c:751")]
    assert {t for _, _, t in host} == {"worker-1"}


def test_the_backtrace_at_kvm_fast_pio_out_is_6_12s_under_qemu_10_2():
    """What `vmio-edu trace --stack 10.2 --break kvm_fast_pio_out` prints: the kernel's 6.12 frames on top
    of QEMU 10.2's vCPU thread, gdb style."""
    from vmio_edu.trace.argfmt import format_frame
    if importlib.util.find_spec("vmio_edu.qemu_10_2") is None:
        pytest.skip("QEMU 10.2's model is not in this tree yet")
    with Machine(stack="10.2", op="write", lba=1) as m:
        dbg = m.debugger()
        dbg.break_at("kvm_fast_pio_out", condition=lambda stop: stop.args.get("port") == 0x1F2)
        stop = dbg.cont()
        lines = [format_frame(f) for f in stop.backtrace]
    assert [ln.split(" (")[0].split()[-1] for ln in lines] == [
        "kvm_fast_pio_out", "kvm_fast_pio", "handle_io", "__vmx_handle_exit", "vmx_handle_exit", "vcpu_enter_guest",
        "vcpu_run", "kvm_arch_vcpu_ioctl_run", "kvm_vcpu_ioctl", "kvm_vcpu_ioctl", "kvm_cpu_exec",
        "kvm_vcpu_thread_fn", "qemu_thread_start"]
    assert lines[0].endswith("size=1, port=0x1f2) at arch/x86/kvm/x86.c:9320")
    assert "in=0) at arch/x86/kvm/x86.c:9391" in lines[1]
    assert lines[2].endswith("at arch/x86/kvm/vmx/vmx.c:5414")
    assert "exit_fastpath=EXIT_FASTPATH_NONE) at arch/x86/kvm/vmx/vmx.c:6615" in lines[3]
    assert lines[8].endswith("ioctl=KVM_RUN, arg=0) at virt/kvm/kvm_main.c:4475")
    assert "accel/kvm/kvm-all.c" in lines[9]


def test_the_exits_handled_in_the_kernel_are_the_same_on_both_kernels():
    """`Machine.kernel_exits` (the half QEMU never sees): the PIC's ports, the in-kernel HLTs and the last
    `rep outsw` entry with RCX = 0, exit by exit the same under Linux 3.7 and 6.12 (6.12 names the PIC's
    devices picdev_master/slave/elcr and no longer notes a kernel-handled access in vcpu->arch.pio)."""
    from vmio_edu.trace.kernel_exits import count_kernel_exits
    got = {}
    for name, stack in (("3.7", "1.6.1"), ("6.12", QEMU_1_6_1_ON_LINUX_6_12)):
        with Machine(stack=stack, op="both", lba=2, sectors=2) as m:
            m.run()
            got[name] = [x.to_json() for x in m.kernel_exits]
            counts = count_kernel_exits(m.kernel_exits)
    assert got["6.12"] == got["3.7"]
    assert counts["IO(pic)"] >= 14 and counts["HLT"] >= 2
    pic = [x for x in got["6.12"] if x["reason"] == "IO(pic)"]
    assert pic[0] == {**pic[0], "direction": "out", "size": 1, "port": 0x21, "data": "ff"}
