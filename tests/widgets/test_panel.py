"""The panel driven from Python, as the buttons drive it: no browser, the click handlers called directly."""
import threading

import pytest

from vmio_edu import Machine
from vmio_edu.widgets import DebuggerPanel


@pytest.fixture
def panel():
    m = Machine(op="write", lba=4, sectors=1)
    p = DebuggerPanel(m.debugger())
    yield p
    p.close()
    m.close()


def frames_shown(p):
    import re
    return re.findall(r'data-function="([^"]+)"', p.backtrace.value)


def pick(p, layer, function=None):
    p.layer_pick.value = layer
    if function is not None:
        p.function_pick.value = function


def test_breakpoint_from_the_picker_stops_there(panel):
    pick(panel, "qemu-block", "bdrv_aio_writev")
    panel.add_function_bp.click()
    assert any("bdrv_aio_writev" in label for label, _ in panel.bp_list.options)
    panel.buttons["continue"].click()
    assert panel.stop.function == "bdrv_aio_writev"
    shown = frames_shown(panel)
    assert shown[0] == "bdrv_aio_writev" and "ide_sector_write" in shown and shown[-1] == "qemu_kvm_cpu_thread_fn"
    assert "bdrv_aio_writev" in panel.status.value and "vcpu0" in panel.status.value


def test_layer_breakpoint_from_the_picker(panel):
    pick(panel, "host")
    panel.add_layer_bp.click()
    panel.buttons["continue"].click()
    assert panel.stop.layer == "host" and panel.stop.function == "sys_pwrite64"
    assert panel.stop.thread.startswith("worker")
    assert frames_shown(panel)[0] == "sys_pwrite64" and "aio_worker" in frames_shown(panel)


def test_step_changes_the_backtrace_and_back_goes_back(panel):
    panel.dbg.break_at("bdrv_aio_writev")
    panel.buttons["continue"].click()
    first, first_html, i0 = panel.stop.function, panel.backtrace.value, panel.stop.index
    panel.buttons["step"].click()
    assert panel.stop.index > i0
    assert panel.backtrace.value != first_html
    assert frames_shown(panel)[0] == panel.stop.function
    assert frames_shown(panel)[0] == "bdrv_co_aio_rw_vector"  # bdrv_aio_writev's first callee
    panel.buttons["step"].click()
    panel.buttons["back"].click()
    panel.buttons["back"].click()
    assert panel.stop.index == i0 and panel.stop.function == first
    assert frames_shown(panel) == [f.function for f in panel.stop.backtrace]
    assert frames_shown(panel)[0] == "bdrv_aio_writev"


def test_next_and_finish(panel):
    panel.dbg.break_at("ide_sector_write")
    panel.buttons["continue"].click()
    depth = len(panel.stop.backtrace)
    panel.buttons["next"].click()  # over ide_get_sector etc., stays in ide_sector_write's level or above
    assert len(panel.stop.backtrace) <= depth
    panel.buttons["finish"].click()
    assert len(panel.stop.backtrace) < depth or panel.stop.function != "ide_sector_write"


def test_timeline_click_goes_there(panel):
    panel.dbg.break_at("bdrv_aio_writev")
    panel.buttons["continue"].click()
    target = panel.stop.index
    panel.buttons["step"].click()
    panel.buttons["step"].click()
    assert panel.timeline.index == panel.stop.index != target
    # what the browser sends when the timeline is clicked
    panel.timeline._handle_msg(panel.timeline, {"event": "goto", "index": target}, [])
    assert panel.stop.index == target and panel.stop.function == "bdrv_aio_writev"
    assert panel.timeline.index == target
    lanes = {(ln["layer"], ln["thread"]) for ln in panel.timeline.data["lanes"]}
    assert ("qemu-block", "vcpu0") in lanes
    assert target in [d[1] for d in panel.timeline.detail]


def test_views_are_shown_as_tabs(panel):
    panel.dbg.break_at("bdrv_aio_writev")
    panel.buttons["continue"].click()
    titles = panel.views.titles
    assert len(titles) == len(panel.stop.views) > 0
    assert "kvm_run" in titles and "IDE" in titles
    regions = panel.kvm_run_hex.regions
    assert regions and any(f["name"] == "exit_reason" for f in regions[0]["fields"])
    ide = panel.views.children[titles.index("IDE")].value
    assert "vmio-ide-status" in ide


def test_errors_are_shown_not_raised(panel):
    panel.function_pick.value = None
    panel.add_function_bp.click()
    assert "pick a function" in panel.message.value


def test_only_the_kernel_thread_updates(panel):
    caught = []

    def other():
        try:
            panel.refresh()
        except RuntimeError as e:
            caught.append(str(e))

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert caught and "kernel thread" in caught[0]


def test_refresh_reads_only(panel):
    panel.dbg.break_at("bdrv_aio_writev")
    panel.buttons["continue"].click()
    stop = panel.stop
    n = len(panel.timeline.data["segments"])
    panel.refresh()
    panel.refresh()
    assert panel.stop is stop and panel.stop.index == stop.index
    assert len(panel.timeline.data["segments"]) == n
