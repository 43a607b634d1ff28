"""Smoke tests of `vmio-edu bench`: every measure is there, typed and positive, the ratios are the
quotients they claim to be, and each target's `met` follows from its value. Speed is never asserted.

One quick run (through the CLI, `--format json --quick`) is shared by the whole module.
"""
from __future__ import annotations

import json
import math

import pytest

from vmio_edu import bench, cli
from vmio_edu.errors import VmioError


@pytest.fixture(scope="module")
def result(tmp_path_factory) -> dict:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        rc = cli.main(["bench", "--format", "json", "--quick"])
    assert rc == 0
    return json.loads(out.getvalue())


def positive(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9)


def test_run_metadata(result):
    assert result["quick"] is True
    assert result["engines"] == ["unicorn", "kvm"]
    m = result["machine"]
    for k in ("cpu", "python", "unicorn", "kernel"):
        assert isinstance(m[k], str) and m[k]
    assert isinstance(m["nproc"], int) and m["nproc"] >= 1
    assert result["workload"]["sectors"] == bench.QUICK["sectors"]
    assert result["workload"]["ops"] == ["write", "read"]
    assert positive(result["seconds_total"])


def test_unicorn_limits(result):
    lu = result["limits"]["unicorn"]
    assert lu["status"] == "measured"
    want = bench.QUICK["limit_reps"] * 64 * 256
    for name in ("hook_rep_outsw", "hook_out_loop", "exit_each_out"):
        x = lu[name]
        assert x["count"] == want  # every OUT reached the hook, no more
        assert positive(x["seconds"])
        assert close(x["per_s"], x["count"] / x["seconds"])
    for name in ("hook_rep_outsw", "hook_out_loop", "exit_each_out"):  # sampled before and after each round
        assert len(lu[name]["seconds_samples"]) == bench.QUICK["rounds"] + 1
        assert lu[name]["seconds"] == min(lu[name]["seconds_samples"])
    assert lu["hook_rep_outsw"]["emu_starts"] == 1  # the raw rate never leaves Unicorn
    assert lu["exit_each_out"]["emu_starts"] == want + 1  # one restart per OUT, and the last run to HLT


def test_kvm_measured_or_skipped_with_reason(result):
    lk, ck = result["limits"]["kvm"], result["chain"]["kvm"]
    if bench.kvm_status() is None:  # /dev/kvm opens here: a real engine that fails is a failure, not a skip
        assert lk["status"] == ck["status"] == "measured", f"the real engine failed: {lk.get('reason')}"
    if lk["status"] == "measured":
        assert ck["status"] == "measured"
        assert lk["bare_run"]["count"] == bench.QUICK["limit_reps"] * 64 * 256
        assert close(lk["bare_run"]["per_s"], lk["bare_run"]["count"] / lk["bare_run"]["seconds"])
        assert len(lk["bare_run"]["seconds_samples"]) == bench.QUICK["rounds"] + 1
    else:
        assert lk == ck and lk["status"] == "skipped"
        assert isinstance(lk["reason"], str) and "kvm" in lk["reason"].lower()
        assert bench.kvm_status() in lk["reason"]  # the reason /dev/kvm cannot be used, said as such
        t = result["targets"]["kvm_chain_vs_bare"]
        assert t["value"] is None and t["met"] is None and t["skipped"] == lk["reason"]


def test_without_kvm_the_real_engine_is_skipped_with_the_reason(monkeypatch):
    """As on a machine without /dev/kvm (whatever this one has): skipped, with the reason, everywhere."""
    reason = "/dev/kvm does not exist (test)"
    monkeypatch.setattr(bench, "kvm_status", lambda: reason)
    monkeypatch.setitem(bench.QUICK, "steps", 5)
    monkeypatch.setitem(bench.QUICK, "back", ((100, 1),))
    r = bench.run_bench(quick=True, engines=("kvm",))
    assert r["limits"] == {"kvm": {"status": "skipped", "reason": reason}}
    assert r["chain"] == {"kvm": {"status": "skipped", "reason": reason}}
    for name in ("kvm_chain_vs_bare", "kvm_recording_time"):
        assert r["targets"][name]["met"] is None and r["targets"][name]["skipped"] == reason
    assert "unicorn_chain_vs_hook" not in r["targets"]
    assert r["step"]["engine"] == "unicorn" and r["step"]["n"] == 5  # the debugger measures still ran
    assert "skipped" in bench.format_text(r) and reason in bench.format_markdown(r)
    with pytest.raises(VmioError, match="nothing to plot"):
        bench.plot(r, "unused.png")


def test_chain_cases_and_ratios(result):
    limits = result["limits"]
    measured = [e for e, c in result["chain"].items() if c["status"] == "measured"]
    assert "unicorn" in measured
    for engine in measured:
        c = result["chain"][engine]
        assert set(c["cases"]) == {"nothing", "recording", "debugger"}
        nothing = c["cases"]["nothing"]
        exits = {x["exits"] for x in c["cases"].values()}
        assert len(exits) == 1  # the same guest, the same exits, whatever is attached
        assert c["rounds"] == bench.QUICK["rounds"]
        for case, x in c["cases"].items():
            assert len(x["seconds_samples"]) == c["rounds"] and x["seconds"] == min(x["seconds_samples"])
            assert positive(x["exits"]) and positive(x["seconds"]) and positive(x["exits_per_s"])
            assert x["exits"] == sum(p["exits"] for p in x["per_op"].values())
            assert close(x["seconds"], sum(p["seconds"] for p in x["per_op"].values()))
            assert close(x["exits_per_s"], x["exits"] / x["seconds"])
            assert close(x["time_vs_nothing"], x["seconds"] / nothing["seconds"])
            assert x["cpu_seconds"] == min(x["cpu_seconds_samples"]) and positive(x["cpu_seconds"])
            assert close(x["cpu_vs_nothing"], x["cpu_seconds"] / nothing["cpu_seconds"])
            assert close(x["us_per_exit"], 1e6 * x["seconds"] / x["exits"])
            # a write of N sectors is at least N*256 word OUTs; the read moves N sectors in N exits
            assert x["per_op"]["write"]["exits"] >= c["sectors"] * 256
            assert x["per_op"]["read"]["exits"] >= c["sectors"]
        rec = c["cases"]["recording"]
        assert positive(rec["events"]) and rec["events"] == sum(p["events"] for p in rec["per_op"].values())
        assert close(rec["events_per_exit"], rec["events"] / rec["exits"])
        assert close(rec["extra_ns_per_event"], 1e9 * (rec["seconds"] - nothing["seconds"]) / rec["events"])
        assert rec["events_per_exit"] > 2  # each exit crosses several traced stages (entry + exit each)
        if engine == "unicorn":
            lu = limits["unicorn"]
            pairs = {"unicorn_hook": lu["hook_rep_outsw"]["per_s"],
                     "unicorn_exit_each_out": lu["exit_each_out"]["per_s"]}
        else:
            pairs = {"kvm_bare_run": limits["kvm"]["bare_run"]["per_s"]}
        for x in c["cases"].values():
            assert set(x["vs_limit"]) == set(pairs)
            for name, per_s in pairs.items():
                assert close(x["vs_limit"][name], x["exits_per_s"] / per_s)


def test_latencies(result):
    s = result["step"]
    assert s["n"] == bench.QUICK["steps"]
    for b in [s] + [b for b in result["back"]["at"].values() if b.get("status") != "skipped"]:
        assert positive(b["p50_ms"]) and positive(b["p95_ms"]) and positive(b["max_ms"])
        assert b["p50_ms"] <= b["p95_ms"] <= b["max_ms"]
    at = result["back"]["at"]
    b = at["10000"]
    assert b["n"] == 3 and b["index"] == 10000
    # three back() calls from 10,000 land three entries/exits earlier (point events are skipped)
    assert 0 <= b["landed_at"] <= 10000 - 3
    assert at["100000"] == {"status": "skipped", "reason": "quick"}


def test_memory(result):
    be = result["memory"]["bytes_per_event"]
    for k in ("events", "bytes_per_event", "getsizeof_bytes_per_event"):
        assert positive(be[k])
    assert be["bytes_per_event"] < 10_000  # a sanity bound on the measure, not a speed target
    assert result["memory"]["rss"] == {"status": "skipped", "reason": "quick"}


def test_targets_follow_from_values(result):
    t, ch = result["targets"], result["chain"]
    assert set(t) == {"unicorn_chain_vs_hook", "unicorn_chain_vs_exit_each", "unicorn_recording_time",
                      "unicorn_debugger_overhead", "kvm_chain_vs_bare", "kvm_recording_time",
                      "kvm_debugger_overhead", "kvm_back_p95_ms_at_100000", "step_p95_ms",
                      "back_p95_ms_at_100000", "bytes_per_event"}
    for name, x in t.items():
        assert set(x) >= {"target", "op", "value", "met", "what"}
        assert isinstance(x["what"], str) and x["what"]
        if x["value"] is None:
            assert x["met"] is None and x["skipped"]
        else:
            assert x["met"] is (x["value"] >= x["target"] if x["op"] == ">=" else x["value"] <= x["target"])
    nothing = ch["unicorn"]["cases"]["nothing"]
    assert t["unicorn_chain_vs_hook"]["value"] == nothing["vs_limit"]["unicorn_hook"]
    assert t["unicorn_recording_time"]["value"] == ch["unicorn"]["cases"]["recording"]["cpu_vs_nothing"]
    assert t["unicorn_debugger_overhead"]["value"] == ch["unicorn"]["cases"]["debugger"]["cpu_vs_nothing"]
    assert t["unicorn_chain_vs_exit_each"]["value"] == nothing["vs_limit"]["unicorn_exit_each_out"]
    if ch["kvm"]["status"] == "measured":
        assert t["kvm_debugger_overhead"]["value"] == ch["kvm"]["cases"]["debugger"]["cpu_vs_nothing"]
        assert t["kvm_recording_time"]["value"] == ch["kvm"]["cases"]["recording"]["cpu_vs_nothing"]
    for name in ("unicorn_recording_time", "kvm_recording_time", "unicorn_debugger_overhead",
                 "kvm_debugger_overhead"):
        assert (t[name]["target"], t[name]["op"]) == (1.5, "<=")
    assert (t["unicorn_chain_vs_exit_each"]["target"], t["unicorn_chain_vs_exit_each"]["op"]) == (1 / 20, ">=")
    assert (t["kvm_back_p95_ms_at_100000"]["target"], t["kvm_back_p95_ms_at_100000"]["op"]) == (100.0, "<=")
    assert t["kvm_back_p95_ms_at_100000"]["met"] is None and t["kvm_back_p95_ms_at_100000"]["skipped"]
    assert (t["unicorn_chain_vs_hook"]["target"], t["unicorn_chain_vs_hook"]["op"]) == (0.1, ">=")
    assert (t["kvm_chain_vs_bare"]["target"], t["kvm_chain_vs_bare"]["op"]) == (0.25, ">=")
    assert (t["step_p95_ms"]["target"], t["step_p95_ms"]["op"]) == (5.0, "<=")
    assert (t["back_p95_ms_at_100000"]["target"], t["back_p95_ms_at_100000"]["op"]) == (50.0, "<=")
    assert (t["bytes_per_event"]["target"], t["bytes_per_event"]["op"]) == (16.0, "<=")
    assert t["step_p95_ms"]["value"] == result["step"]["p95_ms"]
    assert t["bytes_per_event"]["value"] == result["memory"]["bytes_per_event"]["bytes_per_event"]
    assert t["back_p95_ms_at_100000"]["met"] is None  # quick mode does not go to 100,000


def test_compute_targets_logic(result):
    """`met` is recomputed from the values: moved across the goal, it flips; at the goal, it holds."""
    import copy

    r = copy.deepcopy(result)
    nothing = r["chain"]["unicorn"]["cases"]["nothing"]
    nothing["vs_limit"]["unicorn_hook"] = 0.1
    r["step"]["p95_ms"] = 5.0
    r["back"]["at"]["100000"] = {"p95_ms": 50.0001}
    r["memory"]["bytes_per_event"]["bytes_per_event"] = 15.9
    t = bench.compute_targets(r)
    assert t["unicorn_chain_vs_hook"]["met"] is True
    assert t["step_p95_ms"]["met"] is True
    assert t["back_p95_ms_at_100000"]["met"] is False and t["back_p95_ms_at_100000"]["value"] == 50.0001
    assert t["bytes_per_event"]["met"] is True
    nothing["vs_limit"]["unicorn_hook"] = 0.0999
    r["step"]["p95_ms"] = 5.01
    assert bench.compute_targets(r)["unicorn_chain_vs_hook"]["met"] is False
    assert bench.compute_targets(r)["step_p95_ms"]["met"] is False
    r["memory"]["bytes_per_event"]["bytes_per_event"] = 16.1
    assert bench.compute_targets(r)["bytes_per_event"]["met"] is False
    with pytest.raises(ValueError):
        bench.target(1.0, 1.0, "==", "x")


def test_percentile():
    assert bench._pct([3.0, 1.0, 2.0], 50) == 2.0
    assert bench._pct([1.0, 2.0], 50) == 1.5
    assert bench._pct([1.0, 2.0, 3.0, 4.0, 5.0], 100) == 5.0
    assert math.isclose(bench._pct(list(map(float, range(1, 101))), 95), 95.05)
    with pytest.raises(ValueError):
        bench._pct([], 50)


def test_renderers(result):
    text = bench.format_text(result)
    md = bench.format_markdown(result)
    for name in result["targets"]:
        assert name in text and name in md
    assert "MISSED" in text or all(x["met"] is not False for x in result["targets"].values())
    assert "| Measure | Value | Notes |" in md
    # the markdown tables are well formed: every row has the header's number of cells
    for block in md.split("\n\n")[1:]:
        lines = block.splitlines()
        assert len({ln.count("|") for ln in lines}) == 1


def test_plot(result, tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "bench.png"
    bench.plot(result, str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_engine_is_a_clear_error():
    with pytest.raises(VmioError, match="engines"):
        bench.run_bench(quick=True, engines=("qemu",))
