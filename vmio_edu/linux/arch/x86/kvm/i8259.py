"""arch/x86/kvm/i8259.c (Linux v3.7): the in-kernel 8259A PIC pair (master at 0x20/0x21, slave at 0xa0/0xa1,
ELCR at 0x4d0/0x4d1).

KVM_CREATE_IRQCHIP puts it on the KVM PIO bus, so the guest's PIC programming (ICW1-4, OCW1 masks, OCW2
EOIs, OCW3 register reads) is handled inside the kernel and never reaches userspace. Interrupt lines come
in through `kvm_pic_set_irq` (from `kvm_set_irq`, i.e. QEMU's KVM_IRQ_LINE_STATUS); when the master's output goes up,
`pic_irq_request` notes a wake-up and `pic_unlock` kicks the vCPU, which injects the vector on its next
VM entry (`kvm_cpu_get_interrupt` → `kvm_pic_read_irq`, the INTA cycle).

Edge-triggered by default (ELCR 0): a line going 0→1 sets IRR once; level-triggered lines (ELCR bit set)
keep IRR while the line is high, as KVM does.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from vmio_edu.trace.tracepoint import tracepoint

PIC_NUM_PINS = 16


@dataclass
class kvm_kpic_state:
    """One 8259A."""

    last_irr: int = 0          # edge detection
    irr: int = 0               # interrupt request register
    imr: int = 0               # interrupt mask register
    isr: int = 0               # interrupt service register
    priority_add: int = 0      # highest irq priority
    irq_base: int = 0          # ICW2: the vector of IR0
    read_reg_select: int = 0   # OCW3: 0 = read IRR, 1 = read ISR
    poll: int = 0
    special_mask: int = 0
    init_state: int = 0        # 0 normal, 1 waiting for ICW2, 2 for ICW3, 3 for ICW4
    auto_eoi: int = 0
    rotate_on_auto_eoi: int = 0
    special_fully_nested_mode: int = 0
    init4: int = 0             # ICW4 expected
    elcr: int = 0              # edge/level control
    elcr_mask: int = 0
    is_master: bool = True

    def view(self) -> dict:
        return {k: getattr(self, k) for k in ("irr", "imr", "isr", "irq_base", "init_state", "elcr", "last_irr",
                                              "priority_add", "auto_eoi", "read_reg_select")}


@dataclass
class kvm_pic:
    """struct kvm_pic: master (pics[0]) and slave (pics[1]), the output line to the CPU."""

    kvm: object = None
    pics: list[kvm_kpic_state] = field(default_factory=lambda: [
        kvm_kpic_state(elcr_mask=0xF8, is_master=True), kvm_kpic_state(elcr_mask=0xDE, is_master=False)])
    output: int = 0
    wakeup_needed: bool = False
    irq_states: list[int] = field(default_factory=lambda: [0] * PIC_NUM_PINS)

    def view(self) -> dict:
        return {"master": self.pics[0].view(), "slave": self.pics[1].view(), "output": self.output}


def pic_lock(s: kvm_pic) -> None:
    pass  # one model thread runs at a time: the spinlock has nothing to exclude


@tracepoint("kvm", args=("s",))
def pic_unlock(s: kvm_pic) -> None:
    """Drop the lock and, if the PIC output went up, kick a vCPU that accepts PIC interrupts (the LAPIC
    of vCPU 0 is in its reset state, LVT0 = ExtINT, so it does)."""
    from vmio_edu.linux.virt.kvm.kvm_main import kvm_vcpu_kick
    from vmio_edu.linux.arch.x86.include.asm.kvm_host import KVM_REQ_EVENT
    wakeup = s.wakeup_needed
    s.wakeup_needed = False
    if wakeup:
        found = s.kvm.vcpus[0] if s.kvm.vcpus else None
        if found is None:
            return
        found.requests.add(KVM_REQ_EVENT)
        kvm_vcpu_kick(found)


def pic_clear_isr(s: kvm_kpic_state, irq: int) -> None:
    s.isr &= ~(1 << irq)
    # (kvm_notify_acked_irq: no ack notifiers are registered in the model)


def pic_set_irq1(s: kvm_kpic_state, irq: int, level: int) -> int:
    """Set the line level; an edge (or a high level with ELCR) sets IRR. Returns 1 if newly raised,
    0 if it was already pending (coalesced), -1 if masked."""
    mask, ret = 1 << irq, 1
    if s.elcr & mask:  # level triggered
        if level:
            ret = 0 if s.irr & mask else 1
            s.irr |= mask
            s.last_irr |= mask
        else:
            s.irr &= ~mask
            s.last_irr &= ~mask
    else:  # edge triggered
        if level:
            if not s.last_irr & mask:
                ret = 0 if s.irr & mask else 1
                s.irr |= mask
            s.last_irr |= mask
        else:
            s.last_irr &= ~mask
    return -1 if s.imr & mask else ret


def get_priority(s: kvm_kpic_state, mask: int) -> int:
    """Highest priority in `mask` (0 = highest); 8 if none."""
    if mask == 0:
        return 8
    priority = 0
    while not mask & (1 << ((priority + s.priority_add) & 7)):
        priority += 1
    return priority


def pic_get_irq(s: kvm_kpic_state, pics: kvm_pic) -> int:
    """The IR line this PIC wants to signal, or -1."""
    mask = s.irr & ~s.imr
    priority = get_priority(s, mask)
    if priority == 8:
        return -1
    mask = s.isr
    if s.special_fully_nested_mode and s.is_master:
        mask &= ~(1 << 2)
    cur_priority = get_priority(s, mask)
    if priority < cur_priority:  # higher priority found: an irq should be generated
        return (priority + s.priority_add) & 7
    return -1


def pic_irq_request(s: kvm_pic, level: int) -> None:
    """The master's INT output changed; a rising edge needs a vCPU wake-up."""
    if not s.output:
        s.wakeup_needed = True
    s.output = level


@tracepoint("kvm", args=("s",))
def pic_update_irq(s: kvm_pic) -> None:
    """Propagate: a slave request raises master IR2 (the cascade), then the master drives the CPU's INTR."""
    irq2 = pic_get_irq(s.pics[1], s)
    if irq2 >= 0:
        pic_set_irq1(s.pics[0], 2, 1)
        pic_set_irq1(s.pics[0], 2, 0)
    irq = pic_get_irq(s.pics[0], s)
    pic_irq_request(s, 1 if irq >= 0 else 0)


@tracepoint("kvm", args=("s", "irq", "irq_source_id", "level"))
def kvm_pic_set_irq(s: kvm_pic, irq: int, irq_source_id: int, level: int) -> int:
    """Drive PIC input `irq` (0-15: 8-15 are the slave's IR0-7) from source `irq_source_id`."""
    if not 0 <= irq < PIC_NUM_PINS:
        raise ValueError(f"PIC pin {irq} out of range")
    pic_lock(s)
    if level:
        s.irq_states[irq] |= 1 << irq_source_id
    else:
        s.irq_states[irq] &= ~(1 << irq_source_id)
    irq_level = 1 if s.irq_states[irq] else 0
    ret = pic_set_irq1(s.pics[irq >> 3], irq & 7, irq_level)
    pic_update_irq(s)
    pic_unlock(s)
    return ret


def pic_intack(s: kvm_kpic_state, irq: int) -> None:
    s.isr |= 1 << irq
    if not s.elcr & (1 << irq):  # a level-sensitive request stays in IRR
        s.irr &= ~(1 << irq)
    if s.auto_eoi:
        if s.rotate_on_auto_eoi:
            s.priority_add = (irq + 1) & 7
        pic_clear_isr(s, irq)


@tracepoint("kvm", args=("kvm",))
def kvm_pic_read_irq(kvm) -> int:
    """The interrupt-acknowledge cycle: the vector of the highest-priority request (ISR set, IRR cleared
    for edge); 7/15 spurious if it went away."""
    s = kvm.arch.vpic
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


def kvm_pic_reset(s: kvm_kpic_state) -> None:
    """ICW1 resets the chip's state; ICW2-4 follow."""
    edge_irr = s.irr & ~s.elcr
    s.last_irr = 0
    s.irr &= s.elcr
    s.imr = 0
    s.priority_add = 0
    s.special_mask = 0
    s.read_reg_select = 0
    if not s.init4:
        s.special_fully_nested_mode = 0
        s.auto_eoi = 0
    s.init_state = 1
    for irq in range(PIC_NUM_PINS // 2):
        if edge_irr & (1 << irq):
            pic_clear_isr(s, irq)


@tracepoint("kvm", args=("addr", "val"))
def pic_ioport_write(s: kvm_kpic_state, pics: kvm_pic, addr: int, val: int) -> None:
    """Port 0 (0x20/0xa0): ICW1 (bit 4), OCW3 (bit 3) or OCW2 (EOI and rotation). Port 1 (0x21/0xa1):
    ICW2-4 while initialising, else OCW1 (the mask)."""
    addr &= 1
    if addr == 0:
        if val & 0x10:  # ICW1
            s.init4 = val & 1
            kvm_pic_reset(s)  # (single mode and level-sensitive ICW1 are not supported by KVM either)
        elif val & 0x08:  # OCW3
            if val & 0x04:
                s.poll = 1
            if val & 0x02:
                s.read_reg_select = val & 1
            if val & 0x40:
                s.special_mask = (val >> 5) & 1
        else:  # OCW2
            cmd = val >> 5
            if cmd in (0, 4):
                s.rotate_on_auto_eoi = cmd >> 2
            elif cmd in (1, 5):  # end of interrupt
                priority = get_priority(s, s.isr)
                if priority != 8:
                    irq = (priority + s.priority_add) & 7
                    if cmd == 5:
                        s.priority_add = (irq + 1) & 7
                    pic_clear_isr(s, irq)
                    pic_update_irq(pics)
            elif cmd == 3:  # specific EOI
                pic_clear_isr(s, val & 7)
                pic_update_irq(pics)
            elif cmd == 6:
                s.priority_add = (val + 1) & 7
                pic_update_irq(pics)
            elif cmd == 7:
                irq = val & 7
                s.priority_add = (irq + 1) & 7
                pic_clear_isr(s, irq)
                pic_update_irq(pics)
    else:
        if s.init_state == 0:  # normal mode: OCW1
            s.imr = val
            pic_update_irq(pics)
        elif s.init_state == 1:  # ICW2
            s.irq_base = val & 0xF8
            s.init_state = 2
        elif s.init_state == 2:  # ICW3
            s.init_state = 3 if s.init4 else 0
        elif s.init_state == 3:  # ICW4
            s.special_fully_nested_mode = (val >> 4) & 1
            s.auto_eoi = (val >> 1) & 1
            s.init_state = 0


def pic_poll_read(s: kvm_kpic_state, pics: kvm_pic, addr1: int) -> int:
    ret = pic_get_irq(s, pics)
    if ret >= 0:
        if addr1 >> 7:
            pics.pics[0].isr &= ~(1 << 2)
            pics.pics[0].irr &= ~(1 << 2)
        s.irr &= ~(1 << ret)
        pic_clear_isr(s, ret)
        if addr1 >> 7 or ret != 2:
            pic_update_irq(pics)
    else:
        ret = 0x07
        pic_update_irq(pics)
    return ret


@tracepoint("kvm", args=("addr1",))
def pic_ioport_read(s: kvm_kpic_state, pics: kvm_pic, addr1: int) -> int:
    """Port 0 reads IRR or ISR (as OCW3 selected), port 1 reads IMR; a poll command answers the request."""
    if s.poll:
        ret = pic_poll_read(s, pics, addr1)
        s.poll = 0
        return ret
    if addr1 & 1 == 0:
        return s.isr if s.read_reg_select else s.irr
    return s.imr


def picdev_in_range(addr: int) -> bool:
    return addr in (0x20, 0x21, 0xA0, 0xA1, 0x4D0, 0x4D1)


@tracepoint("kvm", args=("s", "addr", "len", "val"))
def picdev_write(s: kvm_pic, addr: int, len: int, val: bytes) -> bool:  # noqa: A002 - the C name
    """A guest OUT to a PIC port, from the KVM PIO bus. Only byte accesses do anything ("non byte write")."""
    if not picdev_in_range(addr):
        return False
    if len != 1:
        return True  # pr_pic_unimpl("non byte write"): swallowed
    pic_lock(s)
    data = val[0]
    if addr in (0x20, 0x21, 0xA0, 0xA1):
        pic_ioport_write(s.pics[addr >> 7], s, addr, data)
    else:
        p = s.pics[addr & 1]
        p.elcr = data & p.elcr_mask
    pic_unlock(s)
    return True


@tracepoint("kvm", args=("s", "addr", "len"))
def picdev_read(s: kvm_pic, addr: int, len: int) -> bytes | None:  # noqa: A002 - the C name
    """A guest IN from a PIC port. Non-byte reads are swallowed and leave the data untouched (None+handled
    is modelled as b'' here)."""
    if not picdev_in_range(addr):
        return None
    if len != 1:
        return b""
    pic_lock(s)
    if addr in (0x20, 0x21, 0xA0, 0xA1):
        data = pic_ioport_read(s.pics[addr >> 7], s, addr)
    else:
        data = s.pics[addr & 1].elcr
    pic_unlock(s)
    return bytes([data & 0xFF])


def kvm_create_pic(kvm) -> kvm_pic:
    """Create the PIC and register its three port ranges on the KVM PIO bus."""
    from vmio_edu.linux.virt.kvm.kvm_main import kvm_io_bus_register_dev
    from vmio_edu.linux.include.linux.kvm_host import KVM_PIO_BUS, kvm_io_device
    s = kvm_pic(kvm=kvm)
    dev = kvm_io_device("i8259", lambda a, n: picdev_read(s, a, n), lambda a, n, v: picdev_write(s, a, n, v))
    kvm_io_bus_register_dev(kvm, KVM_PIO_BUS, 0x20, 2, kvm_io_device("pic-master", dev.read, dev.write))
    kvm_io_bus_register_dev(kvm, KVM_PIO_BUS, 0xA0, 2, kvm_io_device("pic-slave", dev.read, dev.write))
    kvm_io_bus_register_dev(kvm, KVM_PIO_BUS, 0x4D0, 2, kvm_io_device("pic-elcr", dev.read, dev.write))
    return s
