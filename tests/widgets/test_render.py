"""The browser-free rendering: backtraces, the breakpoint picker, the timeline data and the views."""
import re

import pytest

from vmio_edu import Machine
from vmio_edu.trace.backtrace import backtrace
from vmio_edu.trace.tracepoint import LAYERS, REGISTRY
from vmio_edu.widgets import render as R


@pytest.fixture(scope="module")
def run():
    """A one-sector write stopped at bdrv_aio_writev: the machine, the stop and the trace so far."""
    m = Machine(op="write", lba=4, sectors=1)
    dbg = m.debugger()
    dbg.break_at("bdrv_aio_writev")
    stop = dbg.cont()
    yield m, dbg, stop
    m.close()


def test_backtrace_html_lists_frames_innermost_first_with_real_lines(run):
    _, _, stop = run
    bt = stop.backtrace
    page = R.backtrace_html(bt)
    names = re.findall(r'data-function="([^"]+)"', page)
    assert names == [f.function for f in bt]
    assert names[0] == "bdrv_aio_writev" and "ide_sector_write" in names
    assert "hw/ide/core.c:798" in page  # ide_sector_write's call into bdrv_aio_writev
    assert names.index("ide_sector_write") < names.index("kvm_cpu_exec")


def test_backtrace_html_escapes_and_handles_no_frames():
    assert "no frames" in R.backtrace_html([])
    assert "&lt;b&gt;" in R.esc("<b>")


def test_breakpoint_choices_group_real_names_by_layer_in_path_order():
    groups = R.breakpoint_choices(R.all_tracepoints())
    assert list(groups) == [la for la in LAYERS if la in groups]
    block = dict((name, label) for label, name in groups["qemu-block"])
    assert "bdrv_aio_writev" in block and block["bdrv_aio_writev"].endswith("block.c:" + str(
        next(tp for tp in REGISTRY if tp.name == "bdrv_aio_writev").source.line))
    assert "sys_pwrite64" in [n for _, n in groups["host"]]
    assert "ide_set_irq" in [n for _, n in groups["qemu-ide"]]
    for layer, items in groups.items():
        names = [n for _, n in items]
        assert names == sorted(names)
        assert all(tp.layer == layer for n in names for tp in REGISTRY if tp.name == n and tp.layer == layer)
    # every registered trace point is offered under its own layer
    offered = {(layer, n) for layer, items in groups.items() for _, n in items}
    assert offered == {(tp.layer, tp.name) for tp in REGISTRY}


@pytest.fixture(scope="module")
def full_trace():
    """The whole recorded run of a one-sector write, to its halt."""
    with Machine(op="write", lba=4, sectors=1, record=True) as m:
        m.run()
        return list(m.trace.events)


def test_timeline_lanes_are_threads_coloured_by_layer_with_a_guest_lane(full_trace):
    events = full_trace
    d = R.timeline_data(events, REGISTRY, 100)
    entries = [(i, REGISTRY[e[1]].layer, e[2]) for i, e in enumerate(events) if e[0] == 0]
    lanes = [ln["thread"] for ln in d["lanes"]]
    assert lanes[0] == "guest" and lanes[1:] == ["vcpu0", "main", "worker-1"]  # vCPUs, main, workers
    thread_segs = [s for s in d["segments"] if s[0] > 0]
    assert sum(s[4] for s in thread_segs) == len(entries)  # every entry is in one segment
    assert len(d["segments"]) <= 3 * R.OVERVIEW_BINS + len(d["exits"])  # bounded, whatever the length
    # the single pwrite on the worker is not drowned: its cell takes the rarest layer, host
    assert any(s[5] == "host" and lanes[s[0]] == "worker-1" for s in thread_segs)
    # the event loop has its own layer (main_loop_wait, aio_poll), on the main thread
    assert any(s[5] == "qemu-event-loop" and lanes[s[0]] == "main" for s in thread_segs)
    for lane, start, end, fn, n, layer, go in thread_segs:
        assert start <= go <= end and events[start][2] == lanes[lane]
        assert events[go][0] == 0 and REGISTRY[events[go][1]].layer == layer and REGISTRY[events[go][1]].name == fn
        assert layer in {la for i, la, th in entries if start <= i <= end and th == lanes[lane]}
    # the guest lane: stretches the guest ran, each ending at a VM exit; the exits with RIP and reason
    exits = [i for i, e in enumerate(events) if e[0] == 2 and e[1] == "kvm_exit"]
    assert [x[0] for x in d["exits"]] == exits  # read from the entries alone, they fall on the kvm_exit events
    assert d["exits"][0][1] == "VM exit \u2192 handle_io"  # the handler vmx_handle_exit picked
    assert {x[1] for x in d["exits"]} >= {"VM exit \u2192 handle_io", "VM exit \u2192 handle_halt"}
    guest = [s for s in d["segments"] if s[0] == 0]
    assert guest and all(s[2] in exits and s[5] == "guest" for s in guest)
    # a columnar trace's entries() gives the same picture as reading every event
    class Columnar(list):
        def entries(self):
            return ((i, e[1], e[2]) for i, e in enumerate(self) if e[0] == 0)
    assert R.timeline_data(Columnar(events), REGISTRY, 100) == d
    assert {la["layer"] for la in d["layers"]} >= {"guest", "vmx", "kvm", "qemu-ide", "host", "qemu-event-loop"}
    assert d["length"] == len(events) and d["index"] == 100


def test_timeline_detail_is_the_window_around_the_position(run):
    _, dbg, stop = run
    events = dbg.events
    i0 = stop.index
    d = R.timeline_data(events, REGISTRY, i0)
    det = R.timeline_detail(events, REGISTRY, i0, d["lanes"], window=20)
    idx = [x[1] for x in det]
    assert i0 in idx and all(abs(i - i0) <= 20 for i in idx)
    assert [x[2] for x in det if x[1] == i0] == ["bdrv_aio_writev"]
    assert [x[4] for x in det if x[1] == i0] == ["qemu-block"]
    expected = [i for i in range(i0 - 20, min(len(events), i0 + 21))
                if events[i][0] == 0 or (events[i][0] == 2 and events[i][1] == "kvm_exit")]
    assert idx == expected
    lanes = [ln["thread"] for ln in d["lanes"]]
    assert all(lanes[x[0]] == events[x[1]][2] for x in det if x[4] != "guest")
    assert R.timeline_detail(events, REGISTRY, -1, d["lanes"]) == []
    # at a return, the current event is in the strip, labelled as one
    leave = next(i for i in range(i0 - 20, i0) if events[i][0] == 1)
    det = R.timeline_detail(events, REGISTRY, leave, d["lanes"], window=5)
    assert [x[2] for x in det if x[1] == leave] == [REGISTRY[events[leave][1]].name + " (return)"]


@pytest.mark.parametrize("status, on", [
    (0x58, {"DRDY", "DSC", "DRQ"}),       # after WRITE SECTORS: ready for data
    (0xD0, {"BSY", "DRDY", "DSC"}),       # the write is in flight
    (0x41, {"DRDY", "ERR"}),              # an aborted command
    (0x00, set()),
])
def test_ide_status_bits_decode(status, on):
    bits = R.ide_status_bits(status)
    assert [n for n, _ in bits] == ["BSY", "DRDY", "DF", "DSC", "DRQ", "CORR", "IDX", "ERR"]
    assert {n for n, s in bits if s} == on
    page = R.ide_status_html(status)
    assert f"0x{status:02x}" in page
    assert set(re.findall(r'vmio-bit on"[^>]*>(\w+)<', page)) == on


def test_sector_diff_finds_exactly_the_changed_bytes():
    before = bytes(512)
    after = bytearray(512)
    after[3], after[17], after[511] = 0xAA, 0x01, 0xFF
    rows = R.sector_diff_rows(before, bytes(after))
    assert [(r["offset"], r["changed"]) for r in rows] == [(0, [3]), (16, [1]), (496, [15])]
    page = R.sector_diff_html(7, before, bytes(after))
    assert "sector 7</b>: 3 bytes changed" in page
    assert f"{7 * 512 + 16:07x}" in page
    assert "unchanged" in R.sector_diff_html(1, before, before)


def test_hex_region_fields_overlay_kvm_run_layout():
    from vmio_edu.linux.include.uapi.linux.kvm import KVM_RUN_FIELDS
    raw = bytearray(48)
    raw[8] = 2                      # KVM_EXIT_IO
    raw[32], raw[33] = 1, 2         # out, 2 bytes
    raw[34:36] = (0x1F0).to_bytes(2, "little")
    raw[36] = 1
    raw[40:48] = (4096).to_bytes(8, "little")
    fields = [(n, o, s, int.from_bytes(raw[o:o + s], "little")) for n, o, s in KVM_RUN_FIELDS]
    reg = R.hex_region("kvm_run", bytes(raw), 0, fields)
    assert reg["hex"] == bytes(raw).hex()
    assert [R.field_at(reg, o) for o in (8, 11, 12, 32, 34, 35, 40, 47)] == [
        "exit_reason", "exit_reason", "ready_for_interrupt_injection", "io.direction", "io.port", "io.port",
        "io.data_offset", "io.data_offset"]
    assert R.field_at(reg, 4) is None  # padding
    vals = {f["name"]: f["value"] for f in reg["fields"]}
    assert vals["io.port"] == "496 (0x1f0)" and vals["exit_reason"] == "2"


def test_kvm_run_regions_from_the_real_view(run):
    _, _, stop = run
    view = stop.views["kvm_run"]
    head, pio = R.kvm_run_regions(view)
    fields = {f["name"]: f for f in head["fields"]}
    assert fields["exit_reason"]["value"] == "2"  # KVM_EXIT_IO: the guest's last outw
    assert fields["io.port"]["value"] == "496 (0x1f0)" and fields["io.direction"]["value"] == "1"
    assert bytes.fromhex(head["hex"])[34:36] == (0x1F0).to_bytes(2, "little")
    assert pio["base"] == 4096 and [f["name"] for f in pio["fields"]] == ["data[0]"]
    # the PIO page holds the word the guest sent last: the sector's last two bytes
    m = run[0]
    assert bytes.fromhex(pio["hex"]) == m.expected_sectors()[4][-2:]
    page = R.view_html("kvm_run", view)
    assert "exit_reason <b>IO</b>" in page and "PIO data page" in page


def test_register_and_vmcs_views(run):
    _, _, stop = run
    regs = R.view_html("registers", stop.views["registers"])
    current = [ln for ln in R.disassembly_text(stop.views["registers"]["disassembly"]).splitlines()
               if ln.startswith("=>")]
    assert len(current) == 1 and "rep outsw" in current[0]  # the guest is parked on its rep outsw
    assert "rep outsw" in regs and "rip" in regs
    vmcs = R.view_html("vmcs", stop.views["vmcs"])
    assert "EXIT_REASON_IO_INSTRUCTION" in vmcs and "string instruction" in vmcs and "port number" in vmcs


def test_ide_view_shows_status_bits_and_buffer_position(run):
    _, _, stop = run
    view = stop.views["ide"]
    page = R.view_html("ide", view)
    on = set(re.findall(r'vmio-bit on"[^>]*>(\w+)<', page))
    assert on == {n for n, v in view["status_bits"].items() if v}
    assert on == {"BSY", "DRDY", "DSC"}  # the sector is full and handed to the block layer
    assert "WIN_WRITE" in page and "io_buffer position 512 of 512" in page


def test_buffer_position_html():
    page = R.buffer_position_html(128, 512, 512)
    assert "position 128 of 512 (384 bytes to go)" in page
    assert "width:25.0%" in page and "width:75.0%" in page


def test_disk_view_diff_after_the_write():
    m = Machine(op="write", lba=4, sectors=1)
    dbg = m.debugger()
    dbg.break_at("sys_pwrite64")
    stop = dbg.cont()
    assert "0 sectors changed" in R.view_html("disk", stop.views["disk"])
    stop = dbg.finish()  # the pwrite returns
    page = R.view_html("disk", stop.views["disk"])
    m.close()
    assert "1 sector changed: 4" in page and "<b>sector 4</b>" in page
    assert f"{4 * 512:07x}" in page


def test_value_html_tables_and_hexdump():
    page = R.value_html({"regs": {"rip": 0x1125}, "iov": [{"base": 0x10, "len": 512}, {"base": 0x20, "len": 8}]})
    assert "rip" in page and "0x1125" in page and "4389" not in page  # rip in hex, as gdb and the sources write it
    assert page.count("<tr>") >= 3 and ">base</th>" in page
    dump = R.hexdump(bytes(range(32)), base=4096)
    assert dump.splitlines()[1].startswith("01010  10 11 12")
    assert "00000  00 01 02" in R.value_html({"bytes": bytes(range(40)).hex()})
    plain = R.value_html({"name": "ab" * 20})  # only byte-ish keys become dumps
    assert "ab" * 20 in plain and "<pre" not in plain


def test_stop_header_for_start_enter_leave_and_halt(run):
    from vmio_edu.trace.debugger import Stop

    _, dbg, stop = run
    page = R.stop_header(stop)
    assert f"#{stop.index} <b" in page and "bdrv_aio_writev" in page and "(breakpoint 1)" in page
    assert "block.c:" in page and "on thread <b>vcpu0</b>" in page
    assert "not started" in R.stop_header(None) and "not started" in R.stop_header(Stop("start", -1))
    leave = R.stop_header(Stop("finish", 7, "leave", "bdrv_aio_writev", "qemu-block", "vcpu0"))
    assert "#7 returning from <b" in leave and "(finish)" in leave
    halted = R.stop_header(Stop("halted", 99, message="the guest halted"))
    # the normal end is a success, not an error
    assert "vmio-halted" in halted and "#99" in halted and "halted normally" in halted
    assert "vmio-bad" not in halted and "vmio-error" not in halted
    failed = R.stop_header(Stop("error", 5, message="VmioError: boom"))
    assert "vmio-bad" in failed and "boom" in failed


def test_qiov_view_is_cards_and_one_hex_region_per_buffer():
    with Machine(op="write", lba=4, sectors=1) as m:
        dbg = m.debugger()
        dbg.break_at("sys_pwrite64")
        view = dbg.cont().views["qiov"]
        page = R.view_html("qiov", view)
        assert page.count('class="vmio-card"') == 2  # the IDE request and the thread pool's
        assert "aio_worker(aio_type=QEMU_AIO_WRITE" in page and "aio_offset=0x800" in page
        assert "<table" not in page  # no nested tables (they were 2,000 px wide)
        regions = R.qiov_regions(view)
        assert len(regions) == 1 and regions[0]["source"] == "qiov"  # the shared io_buffer, once
        assert "also thread pool request" in regions[0]["title"]
        written = bytes.fromhex(view["requests"][0]["iov"][0]["bytes"])
        assert regions[0]["hex"] == written[:256].hex() and regions[0]["more"] == "… 256 more bytes"
        assert regions[0]["changed"] == []  # nothing to compare with
        again = R.qiov_regions(view, {"requests": [{"iov": [dict(view["requests"][0]["iov"][0],
                                                                 bytes="00" * 512)]}]})
        assert again[0]["changed"] == [i for i in range(256) if written[i] != 0]


def test_ide_marks_the_status_bits_and_registers_that_changed():
    html = R.ide_status_html(0x58, 0x50)  # WRITE SECTORS accepted: DRQ comes up
    marked = re.findall(r'class="vmio-bit (on|off) vmio-changed"[^>]*>(\w+)<', html)
    assert marked == [("on", "DRQ")]
    assert "vmio-changed" not in R.ide_status_html(0x58, 0x58) and "vmio-changed" not in R.ide_status_html(0x58)
    row = R.row_table({"nsector": 1, "sector": 4}, {"nsector": 1, "sector": 3})
    assert row.count("vmio-changed") == 1 and re.search(r'vmio-changed">0x4<', row)
