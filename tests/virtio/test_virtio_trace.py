"""Issue 14: the virtio path as the debugger and the recorder see it: 1.6.1 frames on the right thread,
multiwrite merging, the virtqueue view, determinism."""
import pytest

from kvm_policy import require_kvm
from vmio_edu import Machine
from vmio_edu.trace.tracepoint import REGISTRY

VCPU_TAIL = ["kvm_handle_io", "kvm_cpu_exec", "qemu_kvm_cpu_thread_fn"]


def _stop_at(function, **kw):
    m = Machine(disk="virtio", op="write", sectors=8, **kw)
    dbg = m.debugger()
    dbg.break_at(function)
    stop = dbg.cont()
    return m, stop


def _frames(stop):
    return [(f.function, f"{f.file}:{f.line}") for f in stop.backtrace]


def test_handle_write_runs_on_the_vcpu_thread_without_ioeventfd():
    m, stop = _stop_at("virtio_blk_handle_write", ioeventfd=False)
    with m:
        assert stop.thread == "vcpu0"
        assert _frames(stop)[:7] == [
            ("virtio_blk_handle_write", "hw/block/virtio-blk.c:289"),
            ("virtio_blk_handle_request", "hw/block/virtio-blk.c:382"),
            ("virtio_blk_handle_output", "hw/block/virtio-blk.c:413"),
            ("virtio_queue_notify_vq", "hw/virtio/virtio.c:720"),
            ("virtio_queue_notify", "hw/virtio/virtio.c:726"),
            ("virtio_ioport_write", "hw/virtio/virtio-pci.c:286"),
            ("virtio_pci_config_write", "hw/virtio/virtio-pci.c:416")]
        names = [f.function for f in stop.backtrace]
        assert "cpu_outw" in names and names[-3:] == VCPU_TAIL  # the guest's 16-bit OUT to QUEUE_NOTIFY
        assert {f.thread for f in stop.backtrace} == {"vcpu0"}


def test_handle_write_runs_on_the_main_loop_with_ioeventfd():
    m, stop = _stop_at("virtio_blk_handle_write", ioeventfd=True)
    with m:
        assert stop.thread == "main"
        assert _frames(stop)[3:8] == [("virtio_queue_notify_vq", "hw/virtio/virtio.c:720"),
                                      ("virtio_queue_host_notifier_read", "hw/virtio/virtio.c:1116"),
                                      # the fd_read call through the handler pointer, not the definition
                                      ("qemu_iohandler_poll", "iohandler.c:143"),
                                      ("main_loop_wait", "main-loop.c:466"),
                                      ("main_loop", "vl.c:2089")]
        names = [f.function for f in stop.backtrace]
        assert names[-2:] == ["main_loop", "main"] and "cpu_outw" not in names and "kvm_cpu_exec" not in names


@pytest.mark.parametrize("ioeventfd,thread", [(False, "vcpu0"), (True, "main")])
def test_multiwrite_is_submitted_from_the_thread_that_took_the_kick(ioeventfd, thread):
    m, stop = _stop_at("bdrv_aio_multiwrite", ioeventfd=ioeventfd)
    with m:
        assert stop.thread == thread
        assert _frames(stop)[:3] == [("bdrv_aio_multiwrite", "block.c:3533"),
                                     ("virtio_submit_multiwrite", "hw/block/virtio-blk.c:261"),
                                     ("virtio_blk_handle_output", "hw/block/virtio-blk.c:416")]


@pytest.mark.parametrize("ioeventfd", [False, True])
def test_completion_notifies_from_the_main_loop(ioeventfd):
    m, stop = _stop_at("virtio_notify", ioeventfd=ioeventfd)
    with m:
        assert stop.thread == "main"  # the bottom half of the finished write, either way
        assert _frames(stop)[:5] == [("virtio_notify", "hw/virtio/virtio.c:815"),
                                     ("virtio_blk_req_complete", "hw/block/virtio-blk.c:51"),
                                     ("virtio_blk_rw_complete", "hw/block/virtio-blk.c:85"),
                                     ("multiwrite_user_cb", "block.c:3411"),
                                     ("multiwrite_cb", "block.c:3431")]
        assert [f.function for f in stop.backtrace[-2:]] == ["main_loop", "main"]


def _entries(m, name):
    tp_names = {i: tp for i, tp in enumerate(REGISTRY)}
    out = []
    for e in m.trace.events:
        if e.kind == 0 and tp_names[e.what].name == name:
            out.append(dict(zip(tp_names[e.what].argnames, e.payload)))
    return out


@pytest.mark.parametrize("depth,writevs", [(4, [64]), (1, [16, 16, 16, 16])])
def test_multiwrite_merges_the_requests_of_one_kick(depth, writevs):
    # 4 requests of 16 sectors each. Published together (one kick), bdrv_aio_multiwrite merges them into
    # one 64-sector write; one per kick, each goes down alone.
    with Machine(disk="virtio", op="write", sectors=64, per_request=16, depth=depth, ioeventfd=False,
                 record=True) as m:
        m.run()
        assert m.image_changes() == list(range(64))
        assert len(_entries(m, "virtio_blk_handle_write")) == 4
        assert [a["num_reqs"] for a in _entries(m, "bdrv_aio_multiwrite")] == [4 // len(writevs)] * len(writevs)
        assert [a["nb_sectors"] for a in _entries(m, "bdrv_aio_writev")] == writevs
        assert [a["nb_sectors"] for a in _entries(m, "paio_submit")] == writevs
        assert len(_entries(m, "virtio_blk_req_complete")) == 4  # every request still gets its own status
        assert m.guest_result()["requests"] == 4


def test_the_virtqueue_view_shows_the_chain_and_who_owns_it():
    with Machine(disk="virtio", op="write", sectors=64, per_request=16, depth=4, ioeventfd=False) as m:
        dbg = m.debugger()
        dbg.break_at("virtio_blk_handle_write")
        dbg.cont()
        v = m.virtio.vdev.vq_blk.view()
        assert (v["num"], v["pa"], v["desc"], v["avail"], v["used"]) == (128, 0x50000, 0x50000, 0x50800, 0x51000)
        assert v["avail_ring"]["idx"] == 4 and v["avail_ring"]["ring"] == [0, 3, 6, 9]
        assert v["used_ring"]["idx"] == 0 and v["last_avail_idx"] == 1 and v["in_flight"] == [0]
        first = next(c for c in v["chains"] if c["head"] == 0)
        assert [(d["i"], d["addr"], d["len"], d["flags"], d["next"]) for d in first["descriptors"]] == [
            (0, 0x54000, 16, 1, 1), (1, 0x10000, 16 * 512, 1, 2), (2, 0x55000, 1, 2, 0)]
        assert [v["owner"][i] for i in range(3)] == ["device: in flight"] * 3
        assert {v["owner"][i] for i in range(3, 12)} == {"device: available"}
        assert v["owner"][12] == "driver"
        dbg.clear()
        dbg.cont()
        v = m.virtio.vdev.vq_blk.view()
        assert v["used_ring"]["idx"] == 4 and v["in_flight"] == []
        assert [(u["id"], u["len"]) for u in v["used_ring"]["ring"]] == [(0, 8193), (3, 8193), (6, 8193), (9, 8193)]
        assert {v["owner"][i] for i in range(12)} == {"driver: used"}


@pytest.mark.parametrize("ioeventfd", [False, True])
def test_same_seed_same_trace(ioeventfd):
    def run(seed):
        with Machine(disk="virtio", op="both", sectors=6, per_request=2, seed=seed, record=True,
                     ioeventfd=ioeventfd) as m:
            m.run()
            return m.trace.fingerprint(), [e.key() for e in m.exits], m.image_bytes(0, 6)
    a, b, c = run(4), run(4), run(5)
    assert a == b and len(a[0]) > 1000  # every event, thread and recorded argument, and every exit
    assert c[2] != a[2]  # another seed writes other bytes


@pytest.mark.parametrize("engine", ["unicorn", "kvm"])
@pytest.mark.parametrize("ioeventfd,thread", [(False, "vcpu0"), (True, "main")])
def test_time_travel_on_the_virtio_path(ioeventfd, thread, engine):
    if engine == "kvm":
        require_kvm()
    with Machine(disk="virtio", op="write", sectors=8, per_request=4, depth=2, ioeventfd=ioeventfd,
                 engine=engine) as m:
        dbg = m.debugger()
        dbg.break_at("virtio_blk_handle_write")
        first = dbg.cont()
        second = dbg.cont()
        assert second.index > first.index and second.function == "virtio_blk_handle_write"
        assert dbg.back().function == "virtio_blk_handle_request"  # one step back: its caller's entry
        again = dbg.goto(first.index)  # rebuilt by replay: the same moment, the same thread, the same ring
        assert (again.function, again.thread) == ("virtio_blk_handle_write", thread)
        assert m.virtio.vdev.vq_blk.view()["in_flight"] == [0]
        dbg.clear()
        dbg.cont()
        assert m.guest_result()["done"] and m.image_changes() == list(range(8))


@pytest.mark.parametrize("polling,irqs,vectors", [(False, 1, 1), (True, 0, 0)])
def test_event_idx_suppresses_interrupts_for_a_batch(polling, irqs, vectors):
    # The interrupt-driven driver takes VIRTIO_RING_F_EVENT_IDX (as Linux 3.7): four requests complete
    # back to back, but used_event only asks for the first, so virtio_notify raises INTx once
    # (vring_notify -> vring_need_event says no for the others). The polling driver takes no ring
    # feature and sets VRING_AVAIL_F_NO_INTERRUPT: no interrupt at all.
    with Machine(disk="virtio", op="write", sectors=64, per_request=16, depth=4, polling=polling,
                 record=True) as m:
        m.run()
        r = m.guest_result()
        assert bool(r["features"] & (1 << 29))  # offered by QEMU 1.6.1
        assert (r["requests"], r["kicks"], r["irqs"]) == (4, 1, irqs)
        assert len(_entries(m, "virtio_notify")) == 4
        notifies = [a for a in _entries(m, "virtio_notify_vector")]
        assert len(notifies) - 1 == vectors  # (one more from the driver's reset)
        assert len(_entries(m, "vring_need_event")) == (0 if polling else 3)


def test_the_view_opens_indirect_tables():
    with Machine(disk="virtio", op="write", sectors=8, per_request=4, depth=2, indirect=True,
                 ioeventfd=False) as m:
        dbg = m.debugger()
        dbg.break_at("virtio_blk_handle_write")
        dbg.cont()
        v = m.virtio.vdev.vq_blk.view()
        assert v["avail_ring"]["ring"] == [0, 1]  # one ring descriptor per request
        head0 = next(c for c in v["chains"] if c["head"] == 0)
        (d,) = head0["descriptors"]
        assert (d["flags"], d["len"], d["addr"]) == (4, 48, 0x56000)  # VRING_DESC_F_INDIRECT, 3 entries
        assert [(t["i"], t["len"], t["flags"], t["next"]) for t in d["table"]] == [
            (0, 16, 1, 1), (1, 4 * 512, 1, 2), (2, 1, 2, 0)]
        assert d["owner"] == "device: in flight" and v["owner"][1] == "device: available"


def test_the_status_byte_prints_by_name():
    from vmio_edu.trace.argfmt import format_args
    assert format_args({"req": "0x1", "status": 1}, "virtio_blk_req_complete") == "req=0x1, status=VIRTIO_BLK_S_IOERR"
    assert format_args({"status": 0x58}, "ide_set_status_like") == "status=0x58"  # other functions: hex


def test_a_breakpoint_on_a_function_this_machine_never_runs_says_why():
    from vmio_edu.errors import VmioError
    with Machine(disk="ide", op="write") as m:  # the IDE board has no virtio device
        with pytest.raises(VmioError, match=r"'virtio_notify' .*hw/virtio/virtio.c.*disk='virtio'"):
            m.debugger().break_at("virtio_notify")


def test_a_breakpoint_in_the_kernel_on_the_real_engine_says_why():
    from vmio_edu.errors import VmioError
    require_kvm()
    with Machine(disk="virtio", engine="kvm", op="write") as m:  # KVM's ioeventfd_write runs in the host
        with pytest.raises(VmioError, match=r"'ioeventfd_write' .*virt/kvm/eventfd.c.*engine='unicorn'"):
            m.debugger().break_at("ioeventfd_write")


def test_the_debugger_has_a_virtqueue_view():
    # issue 14 item 5: stop.views (and so the panel) show the ring, the chains and who owns each descriptor
    with Machine(disk="virtio", op="write", sectors=4, per_request=2, depth=2) as m:
        dbg = m.debugger()
        dbg.break_at("virtio_blk_handle_write")
        (v,) = dbg.cont().views["virtqueue"]["queues"]
        assert v["device"]["in_flight"] == [0] and v["avail"]["idx"] == 2 and v["used"]["idx"] == 0
        heads = {c["head"]: (c["owner"], c["state"]) for c in v["chains"]}
        assert heads == {0: ("device", "in flight"), 3: ("device", "available")}
        assert [d["len"] for d in next(c for c in v["chains"] if c["head"] == 0)["descriptors"]] == [16, 1024, 1]
    with Machine(disk="ide", op="write") as m:
        v = m.debugger().cont().views["virtqueue"]
        assert v["present"] is False and 'disk="virtio"' in v["note"]


def test_pwritev_of_merged_requests_shows_handle_aiocb_rw_vector():
    # two 1-sector requests in one kick are merged into one two-iovec write: pwritev from
    # handle_aiocb_rw_vector (raw-posix.c:542), called by handle_aiocb_rw at :616
    m = Machine(disk="virtio", op="write", sectors=2, per_request=1, depth=2)
    with m:
        dbg = m.debugger()
        dbg.break_at("sys_pwritev")
        stop = dbg.cont()
        assert stop.reason == "breakpoint" and stop.thread.startswith("worker")
        assert _frames(stop)[1:3] == [("handle_aiocb_rw_vector", "block/raw-posix.c:542"),
                                      ("handle_aiocb_rw", "block/raw-posix.c:616")]


def test_the_ring_is_read_in_place_not_through_address_space_rw():
    # 1.6.1's lduw_phys/ldl_phys/ldq_phys (and stores) touch RAM through qemu_get_ram_ptr: a virtqueue
    # walk has no address_space_rw stage under virtqueue_pop, vring_notify, virtqueue_fill/flush
    m = Machine(disk="virtio", op="both", sectors=2, record=True)
    parents = []

    def on_enter(tp, args, ctx):
        if tp.name == "address_space_rw" and len(ctx.stack) >= 2:
            parents.append(ctx.stack[-2].tp.name)

    m.trace.on_enter = on_enter
    with m:
        m.run()
        assert m.guest_result().get("error", 0) == 0
    assert parents  # the guest's port I/O still goes through it (cpu_outw → address_space_write → ...)
    assert not [p for p in parents if p.startswith(("virtqueue", "vring", "virtio"))], sorted(set(parents))


def test_the_virtqueue_has_one_address_with_ioeventfd_on_and_off():
    # the same device, the same queue: notebook 10 prints the two backtraces side by side
    vqs = []
    for ioeventfd in (False, True):
        m, stop = _stop_at("virtio_blk_handle_output", ioeventfd=ioeventfd)
        with m:
            vqs.append((stop.backtrace[0].args["vdev"], stop.backtrace[0].args["vq"]))
    assert vqs[0] == vqs[1]
