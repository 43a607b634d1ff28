"""arch/x86/kvm/i8259.c (Linux v6.12): the in-kernel 8259A PIC pair on the KVM PIO bus.

Most of the PIC did not change between Linux 3.7 and 6.12, and is shared with the 3.7 model
(`vmio_edu.linux.arch.x86.kvm.i8259`) visibly, through `unchanged`: `kvm_pic_set_irq`, `pic_update_irq` and
`pic_ioport_write` are the same code at
https://github.com/torvalds/linux/blob/v3.7/arch/x86/kvm/i8259.c#L191 / #L168 / #L308 and
https://github.com/torvalds/linux/blob/v6.12/arch/x86/kvm/i8259.c#L188 / #L165 / #L307 (compared with their
comments removed). The state (`struct kvm_pic`, `struct kvm_kpic_state`) and the pure helpers that only
touch it (`pic_set_irq1`, `get_priority`, `pic_get_irq`, `pic_intack`, `pic_clear_isr`, `kvm_pic_reset`) are
shared too.

What changed, written here for 6.12:
* `pic_unlock` (i8259.c:50): kicks the first vCPU that accepts PIC interrupts from inside the loop;
* `kvm_pic_read_irq` (236): clears the PIC's output line itself (3.7 left that to irq.c);
* `picdev_write` / `picdev_read` (456 / 490): one device per port range (master, slave, ELCR) instead of a
  range check; a read that is not one byte now returns zeros;
* `pic_poll_read` (400) sets bit 7 of a poll answer when an interrupt was pending;
* `pic_ioport_read` (425) and `pic_irq_request` (566) take their arguments differently.
"""
from __future__ import annotations

from vmio_edu.linux.arch.x86.kvm import i8259 as _p37
from vmio_edu.linux.arch.x86.kvm.i8259 import (PIC_NUM_PINS, get_priority, kvm_kpic_state, kvm_pic,  # noqa: F401
                                               kvm_pic_reset, pic_clear_isr, pic_get_irq, pic_intack,
                                               pic_irq_request, pic_lock, pic_set_irq1)
from vmio_edu.linux_6_12.arch.x86.include.asm.kvm_host import KVM_REQ_EVENT
from vmio_edu.linux_6_12.include.linux.kvm_host import KVM_PIO_BUS, kvm_io_device, kvm_make_request
from vmio_edu.trace.stacks import unchanged
from vmio_edu.trace.tracepoint import tracepoint


def kvm_apic_accept_pic_intr(vcpu) -> bool:
    return True  # the LAPIC in its reset state: LVT0 unmasked, delivery mode ExtINT


@tracepoint("kvm", args=("s",))
def pic_unlock(s: kvm_pic) -> None:
    """Drop the lock and, if the PIC output went up, kick the first vCPU that accepts PIC interrupts
    (with KVM_REQ_EVENT, so it injects at its next entry)."""
    from vmio_edu.linux_6_12.virt.kvm.kvm_main import kvm_vcpu_kick
    wakeup = s.wakeup_needed
    s.wakeup_needed = False
    if wakeup:
        for vcpu in s.kvm.vcpus:
            if kvm_apic_accept_pic_intr(vcpu):
                kvm_make_request(KVM_REQ_EVENT, vcpu)
                kvm_vcpu_kick(vcpu)
                return


pic_update_irq = unchanged(_p37.pic_update_irq, globals())
kvm_pic_set_irq = unchanged(_p37.kvm_pic_set_irq, globals())
pic_ioport_write = unchanged(_p37.pic_ioport_write, globals())


@tracepoint("kvm", args=("s", "addr1"))
def pic_poll_read(s: kvm_kpic_state, pics: kvm_pic, addr1: int) -> int:
    """OCW3 poll: acknowledge the highest request as an INTA would; since 6.12 bit 7 of the answer says
    that there was one (i8259.c:400-423; 3.7 returned the bare IR number)."""
    ret = pic_get_irq(s, pics)
    if ret >= 0:
        if addr1 >> 7:
            pics.pics[0].isr &= ~(1 << 2)
            pics.pics[0].irr &= ~(1 << 2)
        s.irr &= ~(1 << ret)
        pic_clear_isr(s, ret)
        if addr1 >> 7 or ret != 2:
            pic_update_irq(pics)
        ret |= 0x80
    else:
        ret = 0x07
        pic_update_irq(pics)
    return ret


@tracepoint("kvm", args=("kvm",))
def kvm_pic_read_irq(kvm) -> int:
    """The interrupt-acknowledge cycle: the PIC's output drops, and the vector of the highest-priority
    request is returned (ISR set, IRR cleared for edge); 7/15 spurious if it went away."""
    s = kvm.arch.vpic
    s.output = 0
    pic_lock(s)
    irq = pic_get_irq(s.pics[0], s)
    if irq >= 0:
        pic_intack(s.pics[0], irq)
        if irq == 2:
            irq2 = pic_get_irq(s.pics[1], s)
            if irq2 >= 0:
                pic_intack(s.pics[1], irq2)
            else:
                irq2 = 7  # spurious IRQ on slave controller
            intno = s.pics[1].irq_base + irq2
        else:
            intno = s.pics[0].irq_base + irq
    else:
        intno = s.pics[0].irq_base + 7  # spurious IRQ on host controller
    pic_update_irq(s)
    pic_unlock(s)
    return intno


@tracepoint("kvm", args=("opaque=s", "addr"))
def pic_ioport_read(s: kvm_kpic_state, pics: kvm_pic, addr: int) -> int:
    """Port 0 reads IRR or ISR (as OCW3 selected), port 1 reads IMR; a poll command answers the request."""
    if s.poll:
        ret = pic_poll_read(s, pics, addr)
        s.poll = 0
        return ret
    if addr & 1 == 0:
        return s.isr if s.read_reg_select else s.irr
    return s.imr


@tracepoint("kvm", args=("s", "addr", "len", "val"))
def picdev_write(s: kvm_pic, addr: int, len: int, val: bytes) -> bool:  # noqa: A002 - the C name
    """A guest OUT to a PIC port from the KVM PIO bus (True = handled). Only byte writes do anything."""
    if len != 1:
        return True  # pr_pic_unimpl("non byte write"): swallowed
    data = val[0]
    if addr in (0x20, 0x21, 0xA0, 0xA1):
        pic_lock(s)
        pic_ioport_write(s.pics[0 if addr < 0xA0 else 1], s, addr, data)
        pic_unlock(s)
    elif addr in (0x4D0, 0x4D1):
        pic_lock(s)
        p = s.pics[addr & 1]
        p.elcr = data & p.elcr_mask  # elcr_ioport_write
        pic_unlock(s)
    else:
        return False  # -EOPNOTSUPP
    return True


@tracepoint("kvm", args=("s", "addr", "len", "val"))
def picdev_read(s: kvm_pic, addr: int, len: int, val: object = None) -> bytes | None:  # noqa: A002
    """A guest IN from a PIC port (None = not this device). A read that is not one byte gives zeros."""
    if len != 1:
        return bytes(len)
    if addr in (0x20, 0x21, 0xA0, 0xA1):
        pic_lock(s)
        data = pic_ioport_read(s.pics[0 if addr < 0xA0 else 1], s, addr)
        pic_unlock(s)
    elif addr in (0x4D0, 0x4D1):
        pic_lock(s)
        data = s.pics[addr & 1].elcr  # elcr_ioport_read
        pic_unlock(s)
    else:
        return None
    return bytes([data & 0xFF])


def kvm_pic_init(kvm) -> kvm_pic:
    """Create the PIC and register its three devices on the KVM PIO bus (i8259.c:590)."""
    from vmio_edu.linux_6_12.virt.kvm.kvm_main import kvm_io_bus_register_dev
    s = kvm_pic(kvm=kvm)

    def dev(name: str) -> kvm_io_device:
        return kvm_io_device(name, lambda a, n: picdev_read(s, a, n, None),
                             lambda a, n, v: picdev_write(s, a, n, v))
    kvm_io_bus_register_dev(kvm, KVM_PIO_BUS, 0x20, 2, dev("picdev_master"))
    kvm_io_bus_register_dev(kvm, KVM_PIO_BUS, 0xA0, 2, dev("picdev_slave"))
    kvm_io_bus_register_dev(kvm, KVM_PIO_BUS, 0x4D0, 2, dev("picdev_elcr"))
    kvm.arch.vpic = s
    return s
