"""The browser-free rendering: backtraces, the breakpoint picker, the timeline data and the views."""
import re

import pytest

from vmio_edu import Machine
from vmio_edu.trace.backtrace import backtrace
from vmio_edu.trace.tracepoint import LAYERS, REGISTRY
from vmio_edu.widgets import render as R
from vmio_edu.widgets.panel import _load_all_tracepoints


@pytest.fixture(scope="module")
def run():
    """A recorded one-sector write, with the backtrace seen at bdrv_aio_writev."""
    m = Machine(op="write", lba=4, sectors=1, record=True)
    hit = {}

    def on_enter(tp, args, ctx):
        if tp.name == "bdrv_aio_writev" and not hit:
            hit["bt"] = backtrace(ctx.stack, ctx.name)
            hit["index"] = len(m.trace.events) - 1

    m.trace.on_enter = on_enter
    m.run()
    yield m, hit
    m.close()


def test_backtrace_html_lists_frames_innermost_first_with_real_lines(run):
    _, hit = run
    bt = hit["bt"]
    page = R.backtrace_html(bt)
    names = re.findall(r'data-function="([^"]+)"', page)
    assert names == [f.function for f in bt]
    assert names[0] == "bdrv_aio_writev" and "ide_sector_write" in names
    assert "hw/ide/core.c:798" in page  # ide_sector_write's call into bdrv_aio_writev
    assert names.index("ide_sector_write") < names.index("kvm_cpu_exec")


def test_backtrace_text_is_gdb_like(run):
    _, hit = run
    text = R.backtrace_text(hit["bt"]).splitlines()
    assert text[0].startswith("#0  bdrv_aio_writev (sector_num=4")
    assert text[1].startswith("#1  ide_sector_write") and text[1].endswith("at hw/ide/core.c:798")


def test_backtrace_html_escapes_and_handles_no_frames():
    assert "no frames" in R.backtrace_html([])
    assert "&lt;b&gt;" in R.esc("<b>")


def test_breakpoint_choices_group_real_names_by_layer_in_path_order():
    _load_all_tracepoints()
    groups = R.breakpoint_choices(REGISTRY)
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


def test_breakpoint_label_reads_objects_dicts_and_strings():
    class BP:
        number, function, layer, condition = 2, "ide_set_irq", None, None

    def only_lba_4(stop):
        return True

    assert R.breakpoint_label(BP()) == "2: ide_set_irq"
    assert R.breakpoint_label({"layer": "host", "condition": only_lba_4}) == "layer=host if only_lba_4"
    assert R.breakpoint_label("bdrv_aio_writev") == "bdrv_aio_writev"


def test_timeline_lanes_and_segments_cover_every_entry(run):
    m, hit = run
    events = m.trace.events
    d = R.timeline_data(events, REGISTRY, hit["index"])
    entries = [(i, REGISTRY[e[1]].layer, e[2]) for i, e in enumerate(events) if e[0] == 0]
    lanes = [(ln["layer"], ln["thread"]) for ln in d["lanes"]]
    assert set(lanes) == {(la, th) for _, la, th in entries}
    assert ("host", "worker-1") in lanes and ("qemu-block", "vcpu0") in lanes
    ranks = [LAYERS.index(la) for la, _ in lanes]
    assert ranks == sorted(ranks)
    assert sum(s[4] for s in d["segments"]) == len(entries)
    assert len(d["segments"]) < len(entries)  # merged
    # segments are in trace order, and each one's first entry is in its lane with its name
    starts = [s[1] for s in d["segments"]]
    assert starts == sorted(starts)
    for lane, start, end, fn, n in d["segments"]:
        ev = events[start]
        assert ev[0] == 0 and (REGISTRY[ev[1]].layer, ev[2]) == lanes[lane] and REGISTRY[ev[1]].name == fn
        assert start <= end
    assert d["length"] == len(events) and d["index"] == hit["index"]


def test_timeline_detail_is_the_window_around_the_position(run):
    m, hit = run
    events = m.trace.events
    d = R.timeline_data(events, REGISTRY, hit["index"])
    det = R.timeline_detail(events, REGISTRY, hit["index"], d["lanes"], window=20)
    idx = [x[1] for x in det]
    assert hit["index"] in idx and all(abs(i - hit["index"]) <= 20 for i in idx)
    assert [x[2] for x in det if x[1] == hit["index"]] == ["bdrv_aio_writev"]
    expected = [i for i in range(hit["index"] - 20, hit["index"] + 21) if events[i][0] == 0]
    assert idx == expected
    assert R.timeline_detail(events, REGISTRY, None, d["lanes"]) == []


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


def test_value_html_tables_and_hexdump():
    page = R.value_html({"regs": {"rip": 0x1125}, "iov": [{"base": 0x10, "len": 512}, {"base": 0x20, "len": 8}]})
    assert "rip" in page and "4389 (0x1125)" in page
    assert page.count("<tr>") >= 3 and "<th>base</th>" in page
    dump = R.hexdump(bytes(range(32)), base=4096)
    assert dump.splitlines()[1].startswith("01010  10 11 12")
