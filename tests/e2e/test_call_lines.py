"""Every caller frame a backtrace can show on the paths learners step has its call line: gdb prints a
caller at the line that makes the call, so a (caller, callee) pair the source maps cannot place would show
the caller at its definition line instead. Walks every pair the IDE, virtio and QEMU 10.2 runs make."""
import pytest

from vmio_edu import Machine
from vmio_edu.trace.sources import call_site

RUNS = {
    "ide-1.6.1": dict(op="both", sectors=2),
    "ide-10.2": dict(op="both", sectors=2, stack="10.2"),
    "virtio-ioeventfd": dict(op="both", disk="virtio", sectors=2, ioeventfd=True),
    "virtio-merged-no-ioeventfd": dict(op="both", disk="virtio", sectors=4, per_request=1, depth=2,
                                       ioeventfd=False),
    "virtio-polling": dict(op="both", disk="virtio", sectors=2, polling=True),
}


@pytest.mark.parametrize("kw", RUNS.values(), ids=list(RUNS))
def test_every_caller_frame_has_its_call_line(kw):
    unplaced = set()

    def on_enter(tp, args, ctx):
        if len(ctx.stack) >= 2:
            caller = ctx.stack[-2].tp
            if call_site(caller.side, caller.name, tp.name, caller.stack) is None:
                unplaced.add(f"{caller.stack} {caller.name} → {tp.name}")

    m = Machine(record=True, **kw)
    m.trace.on_enter = on_enter
    with m:
        m.run()
    assert not unplaced, sorted(unplaced)
