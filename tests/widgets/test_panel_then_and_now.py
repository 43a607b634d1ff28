"""The panel's "Then and now" page (issue 15 item 5: the side-by-side comparison as a view in the panel):
the stop's function beside the other stack, the aligned diff-paths row and the other stack's backtrace at
the matching call; filled only while open, after a stop, on the kernel thread, reading the machine only."""
import asyncio
import threading

from vmio_edu import Machine
from vmio_edu.trace.thenandnow import _frames_at
from vmio_edu.widgets import DebuggerPanel
from vmio_edu.widgets.panel import THEN_NOW_TITLE


def _panel(stack, function, calls=1, **kw):
    m = Machine(op=kw.pop("op", "write"), lba=2, sectors=1, stack=stack, **kw)
    p = DebuggerPanel(m.debugger())
    p.dbg.break_at(function)
    for _ in range(calls):
        p.buttons["continue"].click()
    return m, p


def _open(p):
    p.view_pick.index = p.view_pick.options.index(THEN_NOW_TITLE)  # as the browser syncs a click
    return p.then_now_data


def test_closed_it_computes_nothing_open_it_shows_the_renamed_stage():
    m, p = _panel("10.2", "blk_aio_pwritev")
    with m:
        assert p.stop.function == "blk_aio_pwritev"
        assert p.then_now_data is None and "Stop in a function" in p.then_now.value
        d = _open(p)
        assert d["row"]["kind"] == "RENAMED" and d["row"]["old"]["name"] == "bdrv_aio_writev"
        assert (d["stack"], d["other_stack"], d["other_function"]) == ("10.2", "1.6.1", "bdrv_aio_writev")
        bt = d["other_backtrace"]
        assert bt["thread"] == "vcpu0"
        assert (bt["frames"][0]["function"], bt["frames"][0]["file"], bt["frames"][0]["line"]) == \
            ("bdrv_aio_writev", "block.c", 3388)
        assert bt["frames"][1]["function"] == "ide_sector_write" and bt["frames"][0]["stack"] == "1.6.1"
        html = p.then_now.value
        assert "RENAMED" in html and "bdrv_aio_writev" in html and "github.com/qemu/qemu/blob/v1.6.1" in html
        # the next stop refreshes it: the page follows the debugger
        p.buttons["step"].click()
        assert p.then_now_data["function"] == p.stop.function != "blk_aio_pwritev"
        p.buttons["back"].click()
        assert p.then_now_data["function"] == "blk_aio_pwritev"


def test_the_same_call_on_the_other_stack():
    """The 3rd ide_data_writew on 1.6.1 is set beside the 3rd on 10.2 (both make 256 + 7 calls)."""
    m, p = _panel("1.6.1", "ide_data_writew", calls=3)
    with m:
        d = _open(p)
        assert d["row"]["kind"] == "SAME" and (d["occurrence"], d["other_occurrence"]) == (3, 3)
        names = [f["function"] for f in d["other_backtrace"]["frames"]]
        assert names[0] == "ide_data_writew" and "flatview_write_continue_step" in names
        first = _frames_at("10.2", "ide_data_writew", 1, "write", 2, 1, 0, "unicorn")
        assert d["other_backtrace"]["index"] > first["index"]
        assert "call 3 of ide_data_writew on 10.2" in d["note"]


def test_a_stage_only_one_stack_has_is_matched_at_its_caller():
    m, p = _panel("1.6.1", "cpu_outw")
    with m:
        d = _open(p)
        assert d["row"]["kind"] == "REMOVED" and d["row"]["new"] is None
        assert (d["matched_at"], d["other_function"]) == ("kvm_handle_io", "kvm_handle_io")
        assert d["other_backtrace"]["frames"][0]["function"] == "kvm_handle_io"
        assert "cpu_outw is only on 1.6.1's path" in d["note"]
    m, p = _panel("10.2", "bdrv_aligned_pwritev")
    with m:
        d = _open(p)
        assert d["row"]["kind"] == "ADDED" and d["other_function"] == "bdrv_co_do_writev"
        assert [f["function"] for f in d["other_backtrace"]["frames"]][-1] == "coroutine_trampoline"


def test_no_comparison_where_there_is_none():
    m, p = _panel("1.6.1", "ide_sector_write", disk="virtio")
    with m:
        assert "IDE path" in _open(p)["error"]
    m = Machine(op="write", stack="10.2")
    with m:
        p = DebuggerPanel(m.debugger())
        assert "modelled function" in _open(p)["error"]  # not started: no stop in a function


def test_it_reads_the_machine_only():
    """The debugged run is the same with the page open at two stops as without it."""
    def run(peek):
        m, p = _panel("10.2", "blk_aio_pwritev", op="both")
        with m:
            if peek:
                _open(p)
            p.dbg.break_at("handle_aiocb_rw")
            p.buttons["continue"].click()
            for b in list(p.dbg.breakpoints):
                p.dbg.delete(b)
            p.buttons["continue"].click()
            return p.stop.reason, len(p.dbg.events), [tuple(e) for e in p.dbg.events][-50:], m.guest_result()
    a, b = run(False), run(True)
    assert a[0] == "halted" and a == b


def test_only_on_the_kernel_thread():
    m, p = _panel("10.2", "blk_aio_pwritev")
    with m:
        caught = []

        def other():
            try:
                p._show_then_now()
            except RuntimeError as e:
                caught.append(str(e))
        t = threading.Thread(target=other)
        t.start()
        t.join()
        assert caught and "kernel thread" in caught[0]
        assert p.then_now_data is None


def test_opened_from_a_subshell_thread_it_fills_on_the_kernel_thread():
    m = Machine(op="write", lba=2, sectors=1, stack="10.2")

    async def kernel():
        p = DebuggerPanel(m.debugger())
        p.dbg.break_at("blk_aio_pwritev")
        p.buttons["continue"].click()
        t = threading.Thread(target=lambda: setattr(p.view_pick, "index", len(p.view_pick.options) - 1))
        t.start()
        t.join()
        assert p.then_now_data is None  # not on the subshell thread
        for _ in range(500):
            await asyncio.sleep(0.01)
            if p.then_now_data is not None:
                break
        return p

    with m:
        p = asyncio.run(kernel())
        assert p.then_now_data["other_function"] == "bdrv_aio_writev"


def test_a_write_then_read_machine_is_compared_in_the_phase_it_is_in():
    """op="both": at the read's blk_aio_preadv the comparison is of a read (bdrv_aio_readv on 1.6.1)."""
    m, p = _panel("10.2", "blk_aio_preadv", op="both")
    with m:
        d = _open(p)
        assert (d["op"], d["other_function"]) == ("read", "bdrv_aio_readv")
        assert d["other_backtrace"]["frames"][0]["function"] == "bdrv_aio_readv"
        assert "in a read alone" in d["note"]
