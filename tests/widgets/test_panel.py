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


def test_next_steps_over_callees(panel):
    panel.dbg.break_at("ide_sector_write")
    panel.buttons["continue"].click()
    i0, depth = panel.stop.index, panel.stop.depth
    panel.buttons["next"].click()
    # ide_sector_write's callees (ide_get_sector, bdrv_aio_writev, ...) are deeper: skipped
    assert panel.stop.index > i0 + 2
    assert panel.stop.depth <= depth and panel.stop.thread == "vcpu0"
    skipped = [panel.dbg.events[i] for i in range(i0 + 1, panel.stop.index)]
    assert any(e[0] == 0 and e[3] > depth for e in skipped)
    assert frames_shown(panel)[0] == panel.stop.function


def test_finish_returns_from_the_function(panel):
    panel.dbg.break_at("bdrv_aio_writev")
    panel.buttons["continue"].click()
    panel.buttons["finish"].click()
    assert panel.stop.kind == "leave" and panel.stop.function == "bdrv_aio_writev"
    assert "returning from" in panel.status.value
    assert frames_shown(panel)[:2] == ["bdrv_aio_writev", "ide_sector_write"]


def test_continue_to_the_halt_and_errors_are_shown(panel):
    panel.buttons["continue"].click()
    assert panel.stop.reason == "halted"
    assert "halted" in panel.status.value and "the run is over" in panel.backtrace.value
    panel.goto(10 ** 9)
    assert "out of range" in panel.message.value and panel.stop.reason == "halted"
    panel.buttons["back"].click()
    assert panel.message.value == "" and panel.stop.function is not None


def test_timeline_click_goes_there(panel):
    panel.dbg.break_at("bdrv_aio_writev")
    panel.buttons["continue"].click()
    target = panel.stop.index
    panel.buttons["step"].click()
    panel.buttons["step"].click()
    assert panel.timeline.index == panel.stop.index != target
    # the comm message the browser sends when the timeline is clicked, through ipywidgets' own dispatch
    # (Widget._handle_msg(msg)): an override with another signature made every click a TypeError
    comm_msg(panel.timeline, {"event": "goto", "index": target})
    assert panel.stop.index == target and panel.stop.function == "bdrv_aio_writev"
    assert panel.timeline.index == target
    assert panel.slider.value == target
    lanes = [ln["thread"] for ln in panel.timeline.data["lanes"]]
    assert lanes[0] == "guest" and "vcpu0" in lanes and "main" in lanes
    assert "qemu-block" in {la["layer"] for la in panel.timeline.data["layers"]}
    assert target in [d[1] for d in panel.timeline.detail]
    # a malformed message is ignored, not an exception in the kernel
    comm_msg(panel.timeline, {"event": "goto", "index": "nowhere"})
    assert panel.stop.index == target


def comm_msg(widget, content):
    """Deliver a custom comm message to a widget as ipykernel does (Widget._handle_msg(msg))."""
    widget._handle_msg({"content": {"data": {"method": "custom", "content": content}}, "buffers": []})


def test_slider_goes_there_and_first_last(panel):
    panel.dbg.break_at("ide_sector_write")
    panel.buttons["continue"].click()
    target = panel.stop.index - 7
    panel.slider.value = target  # what dragging the slider does
    assert panel.stop.index == target and panel.stop.reason == "goto"
    panel.buttons["first"].click()
    assert panel.stop.index == -1 and "not started" in panel.status.value
    panel.dbg.clear()
    panel.buttons["continue"].click()
    assert panel.stop.reason == "halted"
    assert "vmio-halted" in panel.status.value and "finished" in panel.status.value
    assert "halted normally" in panel.status.value and "wrote 1 sector" in panel.status.value
    panel.buttons["step"].click()  # past the end: it says so
    assert "the run is over" in panel.message.value and panel.stop.reason == "halted"
    panel.buttons["back"].click()
    panel.buttons["last"].click()
    assert panel.stop.reason == "halted" and panel.slider.value == panel.stop.index == panel.slider.max


def test_source_pane_shows_the_model_and_links_to_the_real_line(panel):
    panel.dbg.break_at("ide_data_writew")
    panel.buttons["continue"].click()
    src = panel.source.value
    assert 'data-function="ide_data_writew"' in src and "vmio-current" in src
    assert "https://github.com/qemu/qemu/blob/v1.6.1/hw/ide/core.c#L" in src
    assert "def ide_data_writew" in src
    # a caller frame: the line that calls the frame above it is the one marked
    panel.source_frame.value = 1
    src = panel.source.value
    assert 'data-function="portio_write"' in src
    import re
    current = re.search(r'vmio-current">(.*?)</span><span', src, re.S).group(1)
    assert "ide_data_writew" in current or "write(" in current
    # KVM frames link to Linux v3.7
    panel.dbg.break_at("handle_io")
    panel.buttons["continue"].click()
    assert 'data-function="handle_io"' in panel.source.value
    assert "https://github.com/torvalds/linux/blob/v3.7/arch/x86/kvm/vmx.c#L" in panel.source.value
    # the guest: its assembly, labels and the instruction at RIP
    panel.source_frame.value = -1
    g = panel.source.value
    assert "vmio-asm-label" in g and "=>" in g and "outsw" in g


def test_views_mark_what_changed(panel):
    panel.dbg.break_at("ide_data_writew")
    panel.buttons["continue"].click()
    panel.buttons["continue"].click()  # the next word
    regs = panel.view_panes["registers"].value
    assert "changed since the previous stop" in regs and 'class="vmio-changed"' in regs
    assert "rcx" in regs.split("changed since the previous stop")[1][:400]  # the rep count went down
    assert "changed since the previous stop" in panel.view_panes["ide"].value
    assert panel.byte_hex["ide"].regions and panel.byte_hex["ide"].regions[0]["changed"]
    threads = panel.view_panes["threads"].value
    assert threads.count('class="vmio-card ') == 2 and "baton" not in threads


def test_clicking_a_byte_asks_for_its_journey(panel):
    panel.dbg.break_at("sys_pwrite64")
    panel.buttons["continue"].click()
    panel.buttons["finish"].click()
    assert panel.byte_hex["disk"].regions, "the written sector is shown as bytes"
    region = panel.byte_hex["disk"].regions[0]
    assert region["source"] == "disk" and region["base"] == 4 * 512
    comm_msg(panel.byte_hex["disk"], {"event": "byte", "source": "disk", "offset": 4 * 512 + 10})
    if hasattr(panel.dbg, "provenance"):
        hops = [b.description for b in panel.hops.children]
        assert len(hops) >= 5 and "image_offset=0x80a" in panel.hops_title.value
        first = panel.hops.children[0]
        first.click()
        assert panel.stop.index == int(hops[0].split()[0][1:])
    else:  # before the debugger has provenance(): the panel says so instead of failing
        assert "provenance" in panel.hops_title.value and "vmio-error" in panel.hops_title.value


def test_views_are_shown_as_tabs(panel):
    from vmio_edu.trace.views import VIEW_NAMES
    from vmio_edu.widgets.render import view_title

    panel.dbg.break_at("bdrv_aio_writev")
    panel.buttons["continue"].click()
    assert panel.view_pick.options == tuple(view_title(n) for n in VIEW_NAMES) + ("Then and now",)
    assert "kvm_run" in panel.view_pick.options and "IDE" in panel.view_pick.options
    regions = panel.kvm_run_hex.regions
    assert {f["name"]: f["value"] for f in regions[0]["fields"]}["exit_reason"] == "2"
    assert "vmio-ide-status" in panel.view_panes["ide"].value
    assert "0 sectors changed" in panel.view_panes["disk"].value
    assert "rep outsw" in panel.view_panes["registers"].value
    assert "vmio-error" not in "".join(p.value for p in panel.view_panes.values())
    # after the pwrite has returned, the Disk tab shows the sector's diff
    panel.dbg.break_at("sys_pwrite64")
    panel.buttons["continue"].click()
    panel.buttons["finish"].click()
    assert "1 sector changed: 4" in panel.view_panes["disk"].value


def test_deleting_a_breakpoint_from_the_list(panel):
    pick(panel, "qemu-ide", "ide_sector_write")
    panel.add_function_bp.click()
    pick(panel, "host")
    panel.add_layer_bp.click()
    assert [label for label, _ in panel.bp_list.options] == ["1: ide_sector_write layer=qemu-ide", "2: layer=host"]
    panel.bp_list.value = panel.bp_list.options[0][1]
    panel.del_bp.click()
    assert [label for label, _ in panel.bp_list.options] == ["2: layer=host"]
    panel.buttons["continue"].click()
    assert panel.stop.function == "sys_pwrite64"  # ide_sector_write no longer stops it


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


def test_a_click_from_a_subshell_thread_runs_on_the_kernel_thread():
    """JupyterLab 4.6 + ipykernel 7 deliver widget messages on a subshell thread: the panel must hand the
    command to the kernel's event loop and update the widgets there."""
    import asyncio

    m = Machine(op="write", lba=4, sectors=1)
    ran_on = []

    async def kernel():
        p = DebuggerPanel(m.debugger())  # created inside the running loop, as in a notebook cell
        p.dbg.break_at("bdrv_aio_writev")
        original = p._command

        def spy(call):
            ran_on.append(threading.get_ident())
            return original(call)

        p._command = spy
        t = threading.Thread(target=p.buttons["continue"].click)  # the subshell delivering the click
        t.start()
        t.join()
        assert p.stop is None or p.stop.function != "bdrv_aio_writev"  # not run on the subshell thread
        for _ in range(200):
            await asyncio.sleep(0.01)
            if ran_on:
                break
        return p

    p = asyncio.run(kernel())
    try:
        assert ran_on == [threading.get_ident()]
        assert p.stop.function == "bdrv_aio_writev"
        assert 'data-function="bdrv_aio_writev"' in p.backtrace.value
    finally:
        p.close()
        m.close()


@pytest.mark.kvm
def test_panel_on_the_real_kvm_engine(need_kvm):
    m = Machine(op="write", lba=4, sectors=1, engine="kvm")
    p = DebuggerPanel(m.debugger())
    try:
        pick(p, "qemu-block", "bdrv_aio_writev")
        p.add_function_bp.click()
        p.buttons["continue"].click()
        assert frames_shown(p)[:2] == ["bdrv_aio_writev", "ide_sector_write"]
        assert "real KVM" in p.view_panes["vmcs"].value  # the VMCS is opaque: derived from kvm_run
        assert "vmio-error" not in "".join(x.value for x in p.view_panes.values())
        i0 = p.stop.index
        p.buttons["step"].click()
        p.buttons["back"].click()
        assert p.stop.index == i0 and frames_shown(p)[0] == "bdrv_aio_writev"
    finally:
        p.close()
        m.close()


def test_debugger_panel_shortcut():
    from vmio_edu import Machine
    from vmio_edu.widgets import DebuggerPanel
    with Machine(op="write") as m:
        p = m.debugger().panel()
        assert isinstance(p, DebuggerPanel)


def test_a_pio_page_byte_is_followed_from_the_exit_it_came_in(panel):
    """The PIO page shown at a stop holds the element of the current exit: its journey passes through
    that exit's kvm_run hop, not an earlier or later one (also before the run has reached the disk)."""
    panel.dbg.break_at("ide_data_writew")
    for _ in range(20):
        panel.buttons["continue"].click()
    here = panel.stop.index
    exits = [i for i in range(here + 1) if panel.dbg.events[i][0] == 2 and panel.dbg.events[i][1] == "kvm_run_exit"]
    region = next(r for r in panel.kvm_run_hex.regions if r.get("source") == "pio")
    comm_msg(panel.kvm_run_hex, {"event": "byte", "source": "pio", "offset": region["base"] + 1})
    # the run has not written the sector yet: the panel offers to record the rest, then comes back
    more = panel.hops.children[0]
    assert "Record the rest" in more.description
    more.click()
    assert panel.stop.index == here
    hops = {b.description.split()[1].rstrip(":"): int(b.description.split()[0][1:]) for b in panel.hops.children}
    assert exits[-1] - 60 < hops["kvm_run"] <= here  # this exit's page
    assert hops["guest"] < hops["vmx"] < hops["kvm_run"] < hops["qemu-ide"] < hops["host"] <= hops["disk"]


def test_guest_breakpoint_from_the_bar_and_stepi(panel):
    panel.guest_pick.value = "ata_pio_outsw"  # the driver's rep outsw
    panel.add_guest_bp.click()
    assert any("ata_pio_outsw" in label for label, _ in panel.bp_list.options)
    assert "1 set" in panel.bp_bar.get_title(0)
    panel.buttons["continue"].click()
    assert panel.stop.kind == "guest" and panel.stop.function == "ata_pio_outsw"
    # the source pane opens on the guest's assembly, the rep outsw marked under its label
    assert panel.source_frame.value == -1
    src = panel.source.value
    assert "ata_pio_outsw:" in src
    import re
    assert "rep outsw" in re.search(r'vmio-current">(.*?)</span></span>', src, re.S).group(1)
    rcx = panel.stop.guest["regs"]["rcx"]
    panel.buttons["stepi"].click()  # one element of the rep: still there, one fewer to go
    assert panel.stop.kind == "guest" and panel.stop.guest["regs"]["rcx"] == rcx - 1
    assert "ata_pio_outsw" in panel.status.value
