"""The emulated engine against exit streams recorded on a real /dev/kvm (tests/fixtures/kvm_streams.json).

These run on every machine, with or without /dev/kvm: the recorded stream stands for the real thing. Where
/dev/kvm is usable, the streams are recorded again and compared with the fixture; a difference there is
named as a property of this host (its kernel, its KVM module), detected by `probe_host_facts`, never
assumed. Cases, recording and host facts: tests/kvm_streams.py.
"""
import pytest

import kvm_streams as S
from kvm_policy import require_kvm

DOC = S.load()
CASES = S.cases()
MODEL_FACTS = {"plain_out_rip": "past", "rep_ins_page_batch": "page-end"}  # Linux 3.7 on VMX


def _normalise(stream: list[dict], facts: dict, case: dict) -> list[dict]:
    """The stream with the fields a host fact decides taken out, for the facts where the two sides differ:
    plain OUT RIPs (`plain_out_rip`), and a mid-page `rep ins` folded into one exit per instruction with
    the batch counts, RIP and RCX dropped (`rep_ins_page_batch`; checked on their own below)."""
    out = []
    for x in stream:
        x = dict(x)
        if facts.get("plain_out_rip") == "differs" and x.get("direction") == "out" and x.get("count") == 1 \
                and x["reason"] == "IO":
            x.pop("rip", None)
        out.append(x)
    if facts.get("rep_ins_page_batch") == "differs" and case.get("page_split"):
        batch = [x for x in out if x.get("port") == 0x300]
        rest = [x for x in out if x.get("port") != 0x300]
        folded = {"reason": "IO", "direction": "in", "port": 0x300, "size": batch[0]["size"],
                  "count": sum(x["count"] for x in batch), "data": "".join(x.get("data", "") for x in batch)}
        out = [folded] + rest
    return out


def _differing(a: dict, b: dict) -> dict:
    return {k: "differs" for k in a if a.get(k) != b.get(k)}


def test_the_fixture_says_where_and_how_it_was_recorded():
    rec = DOC["recorded"]
    assert rec["kernel"] and rec["kvm_module"] and rec["cpu_vendor"] and rec["date"]
    assert "record_kvm_streams.py" in DOC["_how"]
    assert set(DOC["facts"]) == set(MODEL_FACTS)
    assert set(DOC["cases"]) == set(CASES)
    # string I/O in each size, at page and batch boundaries; the device cases; MMIO
    assert {"write_read", "identify", "unknown_command", "mmio", "misaligned_pio"} <= set(CASES)
    assert {n for n in CASES if n.startswith("rep_")} == {
        f"rep_{k}{s}_{w}" for s in "bwd" for k, w in (("ins", "batches"), ("outs", "page"), ("ins", "page_split"))}


def test_the_emulated_engine_has_linux_3_7_facts():
    assert S.probe_host_facts("unicorn") == MODEL_FACTS


@pytest.mark.parametrize("name", sorted(CASES))
def test_emulated_engine_matches_the_recorded_real_kvm_stream(name):
    case = CASES[name]
    emu = S.run_case(case, "unicorn")
    real = DOC["cases"][name]
    facts = _differing(MODEL_FACTS, DOC["facts"])
    diff = S.first_difference(_normalise(emu, facts, case), _normalise(real, facts, case))
    assert diff is None, (f"{name}: the emulated engine differs from the stream recorded on "
                          f"{DOC['recorded']['kernel']} ({DOC['recorded']['kvm_module']}) at {diff}")
    if case.get("page_split"):  # the batches themselves: Linux 3.7's in the model, the host's in the fixture
        assert [x["count"] for x in emu if x.get("port") == 0x300] == S.page_end_split(case)


@pytest.mark.parametrize("name", sorted(CASES))
def test_real_kvm_records_the_same_stream_again(name, host_facts):
    """Recorded afresh on this machine. Equal to the fixture where this host's facts are the recording
    host's; where they differ, the difference is this host's property and only those fields may differ."""
    case = CASES[name]
    now = S.run_case(case, "kvm")
    facts = _differing(host_facts, DOC["facts"])
    diff = S.first_difference(_normalise(now, facts, case), _normalise(DOC["cases"][name], facts, case))
    assert diff is None, (f"{name}: real KVM on this host ({S.host_identity()}, facts {host_facts}) differs "
                          f"from the recording ({DOC['recorded']}, facts {DOC['facts']}) at {diff}")
    if facts:
        print(f"host property: this host's {sorted(facts)} differ from the recording host's "
              f"({host_facts} here, {DOC['facts']} there)")


@pytest.fixture(scope="module")
def host_facts():
    require_kvm()
    return S.probe_host_facts("kvm")


def test_misaligned_wide_port_writes_reach_the_data_port_whole():
    """An outw to 0x1f1 and an outl to 0x1f2 exit as one access each (real KVM, recorded) and, as in 1.6.1,
    go whole to the data-port handlers, which drop them (no DRQ): the error, sector-count and sector
    registers read back their reset values, not bytes of the written values."""
    real = DOC["cases"]["misaligned_pio"]
    io = [(x["direction"], x["port"], x["size"], x["count"]) for x in real if x["reason"] == "IO"]
    assert io[:2] == [("out", 0x1F1, 2, 1), ("out", 0x1F2, 4, 1)]
    emu = S.run_case(CASES["misaligned_pio"], "unicorn")
    reads = [bytes.fromhex(x["data"])[0] for x in emu if x["reason"] == "IO" and x["direction"] == "in"]
    assert reads == [0x00, 0x01, 0x01]  # error, nsector, sector as ide_reset left them (bytes would give 0x78, 0x56)


def test_host_properties_name_only_the_facts_that_differ_from_the_model(monkeypatch):
    from vmio_edu.kvm import host_facts as H
    assert H.host_properties("unicorn") == {}
    monkeypatch.setattr(H, "host_facts", lambda engine="kvm": (("plain_out_rip", "past"),
                                                                ("rep_ins_page_batch", "bytes-as-elements")))
    assert list(H.host_properties()) == ["rep_ins_page_batch"]
    assert "page end" in H.host_properties()["rep_ins_page_batch"]
