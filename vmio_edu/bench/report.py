"""Rendering a benchmark result: text, markdown, and a bar chart."""
from __future__ import annotations


from typing import Any
from .common import CASES


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, float):
        if v == 0:
            return "0"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.{digits}g}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def rows(r: dict) -> list[tuple[str, str, str]]:
    """(measure, value, notes) rows shared by the text and markdown renderers."""
    out: list[tuple[str, str, str]] = []
    lim = r["limits"]
    lu = lim.get("unicorn")
    if lu:
        out.append(("Unicorn OUT hook, rep outsw (limit)", f"{_fmt(lu['hook_rep_outsw']['per_s'])} /s",
                    f"{_fmt(lu['hook_rep_outsw']['count'])} callbacks; the target's limit"))
        out.append(("Unicorn OUT hook, out loop", f"{_fmt(lu['hook_out_loop']['per_s'])} /s", "context"))
        out.append(("Unicorn, every OUT leaves uc_emu_start", f"{_fmt(lu['exit_each_out']['per_s'])} /s",
                    "context: an exit must return to the hypervisor"))
    lk = lim.get("kvm")
    if lk:
        if lk["status"] == "measured":
            out.append(("bare KVM_RUN loop (limit)", f"{_fmt(lk['bare_run']['per_s'])} /s",
                        f"{_fmt(lk['bare_run']['count'])} KVM_EXIT_IO"))
        else:
            out.append(("bare KVM_RUN loop (limit)", "skipped", lk["reason"]))
    for engine, c in r["chain"].items():
        if c["status"] != "measured":
            out.append((f"chain, {engine}", "skipped", c["reason"]))
            continue
        for case, x in c["cases"].items():
            ratios = ", ".join(f"{_fmt(v)} of {k}" for k, v in x["vs_limit"].items())
            extra = ""
            if case == "recording":
                extra = (f"; {_fmt(x['events'])} events ({_fmt(x['events_per_exit'])} per exit), "
                         f"+{_fmt(x['extra_ns_per_event'])} ns per event")
            out.append((f"chain, {engine}, {case}", f"{_fmt(x['exits_per_s'])} exits/s",
                        f"{_fmt(x['exits'])} exits in {_fmt(x['seconds'])} s "
                        f"({_fmt(x['us_per_exit'])} us each); "
                        f"x{_fmt(x['time_vs_nothing'])} the time of nothing attached "
                        f"(CPU time x{_fmt(x['cpu_vs_nothing'])}); {ratios}{extra}"))
    s = r["step"]
    out.append(("dbg.step()", f"p50 {_fmt(s['p50_ms'])} ms, p95 {_fmt(s['p95_ms'])} ms",
                f"{s['n']} steps, max {_fmt(s['max_ms'])} ms, {s['engine']}"))
    kb = r.get("kvm_back") or {"status": "skipped", "reason": "not measured"}
    backs = [(f"dbg.back() at {int(i):,}", b) for i, b in r["back"]["at"].items()]
    if kb.get("status") == "skipped":
        backs.append(("dbg.back() at 100,000, real engine", kb))
    else:
        backs += [(f"dbg.back() at {int(i):,}, real engine", b) for i, b in kb["at"].items()]
    for label, b in backs:
        idx = b.get("index", 0)
        if b.get("status") == "skipped":
            out.append((label, "skipped", b["reason"]))
        else:
            out.append((label,
                        f"p50 {_fmt(b['p50_ms'])} ms, p95 {_fmt(b['p95_ms'])} ms",
                        f"{b['n']} calls, max {_fmt(b['max_ms'])} ms; goto({int(idx):,}) took "
                        f"{_fmt(b['goto_seconds'])} s"))
    be = r["memory"]["bytes_per_event"]
    out.append(("bytes per recorded event", f"{_fmt(be['bytes_per_event'])} B",
                f"tracemalloc over {_fmt(be['events'])} events; getsizeof estimate "
                f"{_fmt(be['getsizeof_bytes_per_event'])} B"))
    rss = r["memory"]["rss"]
    if rss.get("status") == "skipped":
        out.append(("peak RSS, 1,000,000-event recording", "skipped", rss["reason"]))
    else:
        out.append(("peak RSS, 1,000,000-event recording", f"{_fmt(rss['recorded_peak_mb'])} MB",
                    f"{_fmt(rss['events'])} events; unrecorded baseline {_fmt(rss['baseline_peak_mb'])} MB; "
                    f"+{_fmt(rss['difference_mb'])} MB = {_fmt(rss['rss_bytes_per_event'])} B/event"))
    return out


def target_rows(r: dict) -> list[tuple[str, str, str, str]]:
    """(target, goal, value, met) rows."""
    out = []
    for name, t in r["targets"].items():
        met = "skipped: " + t["skipped"] if t["met"] is None else ("met" if t["met"] else "MISSED")
        out.append((f"{name}: {t['what']}", f"{t['op']} {_fmt(t['target'])}", _fmt(t["value"]), met))
    return out


def _header(r: dict) -> str:
    m = r["machine"]
    load = ""
    if m.get("loadavg") and m.get("loadavg_end"):
        load = f"; load average {m['loadavg'][0]:.1f} at the start, {m['loadavg_end'][0]:.1f} at the end"
    return (f"vmio-edu bench{' --quick' if r['quick'] else ''}, {r['date']}, commit {m['commit'] or '?'}: "
            f"{m['cpu']}, {m['nproc']} CPUs, Linux {m['kernel']}, Python {m['python']}, "
            f"unicorn {m['unicorn']}; workload: write then read {r['workload']['sectors']} sectors, "
            + (f"best of {r['workload']['rounds']} interleaved rounds; " if r['workload']['rounds'] > 1
               else "one round; ") +
            f"{r['seconds_total']:.0f} s in all{load}")


def format_text(r: dict) -> str:
    """A plain-text report (what `vmio-edu bench` prints)."""
    out = [_header(r), ""]
    w = max(len(a) for a, _, _ in rows(r))
    for a, b, c in rows(r):
        out.append(f"{a:<{w}}  {b:<28} {c}")
    out += ["", "Targets (each a ratio or a count from this run):"]
    for a, b, c, d in target_rows(r):
        out.append(f"  [{d}] {a}: {c} (target {b})")
    return "\n".join(out)


def format_markdown(r: dict) -> str:
    """The same report as markdown tables, to paste into docs/performance.md."""
    out = [f"_{_header(r)}_", "", "| Measure | Value | Notes |", "|---|---|---|"]
    out += [f"| {a} | {b} | {c} |" for a, b, c in rows(r)]
    out += ["", "| Target | Goal | Value | Result |", "|---|---|---|---|"]
    out += [f"| {a} | {b} | {c} | {'**MISSED**' if d == 'MISSED' else d} |" for a, b, c, d in target_rows(r)]
    return "\n".join(out)


def plot(r: dict, path: str) -> None:
    """A bar chart (log scale) of exits/s: each engine's limit(s) and its three chain cases."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        from ..errors import VmioError
        raise VmioError(f"--plot needs matplotlib (pip install matplotlib): {e}") from None
    labels, values, colors = [], [], []
    goals: list[tuple[int, int, float, str]] = []  # (first bar, last bar, exits/s, label) of each target
    lu, lk = r["limits"].get("unicorn"), r["limits"].get("kvm")
    if lu:
        labels += ["Unicorn\nOUT hook", "Unicorn\nexit per OUT"]
        values += [lu["hook_rep_outsw"]["per_s"], lu["exit_each_out"]["per_s"]]
        colors += ["#888888", "#bbbbbb"]
    for engine, c in r["chain"].items():
        if engine == "kvm" and lk and lk["status"] == "measured":
            labels.append("bare\nKVM_RUN")
            values.append(lk["bare_run"]["per_s"])
            colors.append("#888888")
        if c["status"] != "measured":
            continue
        first = len(labels)
        for case, color in zip(CASES, ("#1f77b4", "#ff7f0e", "#2ca02c")):
            labels.append(f"{engine}\n{case}")
            values.append(c["cases"][case]["exits_per_s"])
            colors.append(color)
        if engine == "unicorn" and lu:
            goals.append((first, first, lu["hook_rep_outsw"]["per_s"] / 10, "target: 1/10 of the hook"))
            goals.append((first, first, lu["exit_each_out"]["per_s"] / 20, "target: 1/20 of exit per OUT"))
        elif engine == "kvm" and lk and lk["status"] == "measured":
            goals.append((first, first, lk["bare_run"]["per_s"] / 4, "target: 1/4 of bare KVM_RUN"))
    if not values:
        from ..errors import VmioError
        raise VmioError("nothing to plot: no limit or chain was measured in this run")
    fig, ax = plt.subplots(figsize=(max(6.0, 1.05 * len(labels)), 4.2))
    bars = ax.bar(range(len(labels)), values, color=colors)
    ax.set_yscale("log")
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_ylabel("exits (or OUT callbacks) per second, log scale")
    ax.set_title(f"vmio-edu bench, {r['date']} ({r['machine']['nproc']}-CPU {r['machine']['cpu'][:40]})",
                 fontsize=9)
    for b, v in zip(bars, values):
        ax.text(b.get_x() + b.get_width() / 2, v * 1.1, f"{v:,.0f}", ha="center", fontsize=7)
    for x0, x1, goal, text in goals:
        ax.hlines(goal, x0 - 0.45, x1 + 0.45, colors="#d62728", linestyles="dashed")
        ax.text(x0 - 0.45, goal * 1.15, text, color="#d62728", fontsize=7)
    ax.grid(axis="y", which="major", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
