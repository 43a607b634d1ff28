"""`vmio-edu trace --export FILE.json` and vmio_edu.trace.export: the Chrome/Perfetto trace-event format."""
import json

import pytest

from vmio_edu import Machine
from vmio_edu.cli import main
from vmio_edu.trace.export import to_perfetto


def _check_document(doc, exits):
    ev = doc["traceEvents"]
    assert all(e["pid"] == 1 for e in ev)
    names = {e["tid"]: e["args"]["name"] for e in ev if e["ph"] == "M" and e["name"] == "thread_name"}
    assert {"vcpu0", "main", "worker-1"} <= set(names.values())
    assert any(n.startswith("coroutine 1 (bdrv_co_do_rw)") for n in names.values())
    # every B has its E on the same tid, in stack order, and timestamps never go back
    stacks, last_ts = {}, -1
    for e in ev:
        if e["ph"] in ("B", "E", "i"):
            assert e["tid"] in names
            assert e["ts"] >= last_ts
            last_ts = e["ts"]
        if e["ph"] == "B":
            stacks.setdefault(e["tid"], []).append(e)
        elif e["ph"] == "E":
            assert stacks.get(e["tid"]), f"E without B on {names[e['tid']]} at ts {e['ts']}"
            b = stacks[e["tid"]].pop()
            assert b["ts"] <= e["ts"]
    assert all(not st for st in stacks.values())
    slices = [e for e in ev if e["ph"] == "B"]
    assert {"kvm_handle_io", "ide_sector_write", "bdrv_aio_writev", "aio_worker", "sys_pwrite64"} <= \
        {e["name"] for e in slices}
    pw = next(e for e in slices if e["name"] == "sys_pwrite64")
    assert pw["cat"] == "host" and "pos" in pw["args"] and names[pw["tid"]] == "worker-1"
    # VM exits: one instant per machine.exits record, in order, with the same fields
    inst = [e for e in ev if e["ph"] == "i" and e["cat"] == "vm-exit"]
    assert len(inst) == len(exits)
    for e, x in zip(inst, exits):
        a = e["args"]
        assert e["name"] == f"KVM_EXIT_{x.reason}" and a["reason"] == x.reason
        assert (a.get("port"), a.get("size"), a.get("count"), a.get("direction")) == \
            (x.port, x.size, x.count, x.direction)
        assert names[e["tid"]] == "vcpu0"
    return inst


def test_cli_export_writes_perfetto_json(tmp_path, capsys):
    out = tmp_path / "run.json"
    assert main(["trace", "--op", "write", "--lba", "5", "--sectors", "2", "--export", str(out)]) == 0
    assert "trace events" in capsys.readouterr().err
    doc = json.loads(out.read_text())
    with Machine(op="write", lba=5, sectors=2, record=True) as m:
        m.run()
        inst = _check_document(doc, m.exits)
        assert inst[-1]["name"] == "KVM_EXIT_HLT"
        # deterministic: the same run exports the same document
        assert json.loads(json.dumps(to_perfetto(m.trace.events, m.exits, title=doc["traceEvents"][0][
            "args"]["name"]))) == doc


@pytest.mark.kvm
def test_export_real_engine(need_kvm):
    with Machine(op="both", lba=1, sectors=1, engine="kvm", record=True) as m:
        m.run()
        _check_document(to_perfetto(m.trace.events, m.exits), m.exits)


def test_export_without_exit_records_uses_the_trace():
    with Machine(op="write", lba=0, sectors=1, record=True) as m:
        m.run()
        ev = to_perfetto(m.trace.events)["traceEvents"]
        inst = [e for e in ev if e["ph"] == "i" and e["cat"] == "vm-exit"]
        assert len(inst) == len(m.exits) - 1  # all but the final HLT, which has no kvm_run_exit
        assert [(e["args"]["port"], e["args"]["count"]) for e in inst] == \
            [(x.port, x.count) for x in m.exits[:-1]]


def test_export_errors(tmp_path, capsys):
    assert main(["trace", "--export", str(tmp_path / "no" / "such" / "dir.json")]) != 0
    assert "cannot write the trace export" in capsys.readouterr().err
    assert main(["trace", "--break", "ide_sector_write", "--export", str(tmp_path / "x.json")]) != 0
    assert "leave out --break" in capsys.readouterr().err
