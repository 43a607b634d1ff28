"""The thread sequence diagram places each hand-over where the recorded trace has it."""
import matplotlib
import pytest

matplotlib.use("Agg")

from vmio_edu import Machine  # noqa: E402
from vmio_edu.widgets.figures import entry_index, find_arrows, thread_sequence  # noqa: E402

COMPLETION = [("aio_worker", "sys_pwrite64", "pwrite(2)"),
              ("event_notifier_set", "event_notifier_ready", "eventfd"),
              ("qemu_bh_schedule", "bdrv_co_em_bh", "bottom half"),
              ("kvm_set_irq@qemu-cpu", "kvm_vm_ioctl_irq_line", "KVM_IRQ_LINE_STATUS")]


@pytest.fixture(scope="module")
def events():
    with Machine(op="write", lba=4, sectors=1, record=True) as m:
        m.run()
        return list(m.trace.events)


def test_arrows_follow_the_completion_across_threads(events):
    start = next(i for i in range(len(events)) if events[i][0] == 0 and events[i][2].startswith("worker"))
    a = find_arrows(events, COMPLETION, start)
    assert [(x.src_lane, x.dst_lane) for x in a] == [("worker", "kernel"), ("worker", "main loop"),
                                                     ("main loop", "main loop"), ("main loop", "kernel")]
    assert [(x.src_thread, x.dst_thread) for x in a] == [("worker-1", "worker-1"), ("worker-1", "main"),
                                                         ("main", "main"), ("main", "main")]
    assert all(x.src_index < x.dst_index for x in a)
    assert a[0].src_index < a[1].src_index < a[2].src_index < a[3].src_index
    for x in a:
        assert events[x.dst_index][0] == 0


def test_drawing_returns_the_same_arrows_and_missing_ones_are_named(events):
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots()
    drawn = thread_sequence(events, COMPLETION, ax=ax, title="completion")
    assert [x.label for x in drawn] == ["pwrite(2)", "eventfd", "bottom half", "KVM_IRQ_LINE_STATUS"]
    assert {t.get_text() for t in ax.texts} >= {"eventfd", "bottom half"}
    plt.close(fig)
    with pytest.raises(ValueError, match="no entry of 'sys_preadv'"):
        find_arrows(events, [("aio_worker", "sys_preadv", "read")])


def test_entry_index_finds_the_job_before_the_pwrite_across_point_events(events):
    from vmio_edu.trace.tracepoint import REGISTRY
    pw = entry_index(events, "sys_pwrite64")
    job = entry_index(events, "aio_worker", before=pw)
    assert events[pw][0] == 0 and REGISTRY[events[pw][1]].name == "sys_pwrite64"
    assert events[job][0] == 0 and REGISTRY[events[job][1]].name == "aio_worker" and job < pw
    # a point event (paio_rw_linear) sits in between: counting entries would land past aio_worker
    assert any(events[i][0] == 2 for i in range(job, pw))
    assert find_arrows(events, COMPLETION[:1], job)[0].src_index == job
    with pytest.raises(ValueError, match="no entry of 'aio_worker' before index"):
        entry_index(events, "aio_worker", before=job)
