"""QEMU 10.2's thread structure on the path: the vCPU thread submits and handles PIO without the BQL
(taken per device access), a pool worker does the pwrite, the main loop completes the request out of the
coroutine; and the run is deterministic."""
from collections import Counter

from vmio_edu import Machine
from vmio_edu.trace.tracepoint import REGISTRY


def _entries(m):
    return [(REGISTRY[e.what].name, e.thread) for e in m.trace.events if e.kind == 0]


def test_who_runs_what(emu_stack):
    with Machine(stack=emu_stack, op="write", sectors=1, record=True) as m:
        m.run()
        ent = _entries(m)
        where = {}
        for name, thread in ent:
            where.setdefault(name, set()).add(thread)
        assert where["blk_aio_pwritev"] == {"vcpu0"} and where["raw_co_prw"] == {"vcpu0"}
        assert where["handle_aiocb_rw"] == {"worker-1"} and where["sys_pwrite64"] == {"worker-1"}
        assert where["spawn_thread_bh_fn"] == {"main"}  # the main loop creates the worker, not the vCPU
        for f in ("thread_pool_completion_bh", "thread_pool_co_cb", "aio_co_wake", "blk_aio_complete",
                  "ide_sector_write_cb", "ide_bus_set_irq"):
            assert where[f] == {"main"}, f
        # completion order on the main loop: the BH wakes the coroutine, which completes the AIOCB
        main = [n for n, t in ent if t == "main"]
        i = main.index("thread_pool_completion_bh")
        order = [n for n in main[i:] if n in ("thread_pool_co_cb", "aio_co_wake", "qemu_aio_coroutine_enter",
                                                   "blk_aio_complete", "ide_sector_write_cb", "ide_bus_set_irq")]
        assert order[:6] == ["thread_pool_co_cb", "aio_co_wake", "qemu_aio_coroutine_enter", "blk_aio_complete",
                             "ide_sector_write_cb", "ide_bus_set_irq"]
        # the worker's completion schedules a BH (no event notifier of the pool's own)
        assert ("qemu_bh_schedule", "worker-1") in ent


def test_the_bql_is_taken_per_device_access_on_the_vcpu(emu_stack):
    with Machine(stack=emu_stack, op="write", sectors=1, record=True) as m:
        m.run()
        io_exits = [x for x in m.exits if x.reason == "IO"]
        accesses = sum(x.count for x in io_exits)
        # each element of each PIO exit: prepare_mmio_access → bql_lock_impl ... bql_unlock
        stack_at = []
        depth_name = {}
        for e in m.trace.events:
            if e.kind == 0 and e.thread == "vcpu0":
                depth_name[e.depth] = REGISTRY[e.what].name
                if REGISTRY[e.what].name == "bql_lock_impl":
                    stack_at.append(depth_name.get(e.depth - 1))
        c = Counter(stack_at)
        assert c["prepare_mmio_access"] == accesses
        assert c["kvm_vcpu_thread_fn"] == 1  # taken once when the thread starts
        assert m.state.bql_owner in (None, "main")  # nobody else holds it when the guest halts
        # KVM_RUN runs without the BQL (kvm_cpu_exec dropped it)
        n_unlock = sum(1 for e in m.trace.events if e.kind == 0 and e.thread == "vcpu0"
                       and REGISTRY[e.what].name == "bql_unlock")
        assert n_unlock == accesses + 1


def test_raising_irq14_sets_the_pic_and_the_ioapic_pin(emu_stack):
    # gsi_handler falls through from the PIC input to the IOAPIC pin: two KVM_IRQ_LINE_STATUS per change
    with Machine(stack=emu_stack, op="write", sectors=1, record=True) as m:
        m.run()
        names = [REGISTRY[e.what].name for e in m.trace.events if e.kind == 0 and REGISTRY[e.what].side == "qemu"]
        i = names.index("ide_bus_set_irq")
        seq = [n for n in names[i:i + 40] if n in ("kvm_pic_set_irq", "kvm_ioapic_set_irq", "kvm_set_irq")]
        assert seq[:4] == ["kvm_pic_set_irq", "kvm_set_irq", "kvm_ioapic_set_irq", "kvm_set_irq"]


def test_same_inputs_same_trace(emu_stack):
    runs = []
    for _ in range(2):
        with Machine(stack=emu_stack, op="both", lba=6, sectors=3, seed=4, record=True) as m:
            m.run()
            runs.append(([tuple(e) for e in m.trace.events], [x.to_json() for x in m.exits],
                         m.image_bytes(6, 3)))
    assert runs[0] == runs[1]
    assert len(runs[0][0]) > 10000


SRST_DURING_WRITE = """
    mov dx, 0x3f6
    mov al, 0x02
    out dx, al
    mov dx, 0x1f6
    mov al, 0xe0
    out dx, al
    mov dx, 0x1f2
    mov al, 1
    out dx, al
    mov dx, 0x1f3
    mov al, 4
    out dx, al
    mov dx, 0x1f4
    xor al, al
    out dx, al
    mov dx, 0x1f5
    out dx, al
    mov dx, 0x1f7
    mov al, 0x30
    out dx, al
    mov cx, 256
    mov dx, 0x1f0
    mov ax, 0x1234
l1: out dx, ax
    loop l1
    mov dx, 0x3f6
    mov al, 0x06
    out dx, al
    mov al, 0x02
    out dx, al
    mov dx, 0x1f7
w:  in al, dx
    test al, 0x80
    jnz w
    hlt
"""


def test_a_reset_during_a_write_waits_for_it_under_the_bql(emu_stack):
    """SRST while the sector's write is in flight: 10.2 resets from a bottom half (ide_bus_perform_srst),
    whose ide_reset cancels the request: blk_aio_cancel runs the main AioContext (a nested aio_poll, which
    also runs the rest of the outer BH slice) until the request completes, holding the BQL all along, so a
    vCPU that reaches a device access meanwhile sleeps on the BQL. The sector is written; the drive ends
    reset (DRDY|DSC, diagnostic code 1)."""
    from vmio_edu.guest.assembler import assemble
    # latency 3: the pwrite is still to come when the reset's bottom half runs
    with Machine(assemble(SRST_DURING_WRITE, 16), mode=16, stack=emu_stack, record=True, latency=3) as m:
        m.run()
        s = m.ide.bus[0].ifs[0]
        assert (s.status, s.error) == (0x50, 0x01) and m.image_bytes(4) == b"\x34\x12" * 256
        ev = [(e.kind, REGISTRY[e.what].name, e.thread) for e in m.trace.events if e.kind in (0, 1)]
        enter = ev.index((0, "blk_aio_cancel", "main"))
        leave = ev.index((1, "blk_aio_cancel", "main"))
        inside = ev[enter:leave]
        assert (0, "ide_sector_write_cb", "main") in inside and (0, "aio_poll", "main") in inside
        assert (0, "handle_aiocb_rw", "worker-1") in inside  # the pwrite happens while main waits
        assert (0, "bql_lock_impl", "vcpu0") in inside  # the vCPU asked for the BQL while main held it
        assert m.state.bql_owner is None
