"""Runaway code (loops, memory hogs, crashes, stray threads) costs only the part it touches, with feedback
naming the case and the cell; a submission never vanishes without feedback."""
from __future__ import annotations

import time

import pytest

from conftest import solution_code
from sandbox_helpers import grade, parts, submit

LOOP = "def decode_exit_qualification(q):\n    while True:\n        pass\n"


def test_an_endless_loop_costs_the_part_and_names_the_case_and_cell(tmp_path, capsys):
    r = grade(submit(tmp_path, "exit_qual", LOOP), "--timeout", "1", "--part", "size", "--part", "port",
              capsys=capsys)
    assert [p["name"] for p in r["parts"]] == ["size", "port"] and r["total"] == 0
    for p in r["parts"]:
        assert "time limit" in p["feedback"] and "q=0x" in p["feedback"] and "cell 4" in p["feedback"], p


def test_a_loop_in_one_branch_spares_the_other_parts(tmp_path, capsys):
    code = solution_code("kvm_run").replace(
        "    elif out[\"exit_reason\"] == 6:  # KVM_EXIT_MMIO\n",
        "    elif out[\"exit_reason\"] == 6:  # KVM_EXIT_MMIO\n        while True:\n            pass\n")
    r = grade(submit(tmp_path, "kvm_run", code), "--timeout", "1", capsys=capsys)
    p = parts(r)
    for looping in ("exit_reason", "values", "mmio"):  # these try the MMIO exits too
        assert p[looping]["points"] == 0 and "time limit" in p[looping]["feedback"]
    assert p["io"]["points"] == 2  # graded after the others timed out: the grader went on


def test_a_looping_scratch_cell_is_skipped_and_named(tmp_path, capsys):
    r = grade(submit(tmp_path, "exit_qual", solution_code("exit_qual"), extra=("while True:\n    pass\n",)),
              "--cell-timeout", "2", capsys=capsys)
    assert r["total"] == 4
    assert any("cell 5" in n and "did not finish" in n and "skipped" in n for n in r["notes"]), r["notes"]


def test_a_looping_answer_cell_scores_zero_and_says_so(tmp_path, capsys):
    r = grade(submit(tmp_path, "exit_qual", "while True:\n    pass\n"), "--cell-timeout", "2", "--part", "size",
              capsys=capsys)
    assert r["total"] == 0 and "not defined" in r["parts"][0]["feedback"]
    assert any("cell 4" in n for n in r["notes"]), r["notes"]


@pytest.mark.parametrize("body,phrase", [
    ("import os\n    os._exit(3)", "exited with status 3"),
    ("import ctypes\n    return ctypes.string_at(0)", "SIGSEGV"),
    ("raise SystemExit(1)", "SystemExit"),
    ("return bytearray(1 << 33)", "MemoryError"),
    ("import threading\n    threading.Thread(target=lambda: [0 for _ in iter(int, 1)], daemon=True).start()\n"
     "    return {'size': (q & 7) + 1}", "threads running"),
])
def test_crashes_hogs_and_stray_threads_cost_the_part(tmp_path, capsys, body, phrase):
    code = f"def decode_exit_qualification(q):\n    {body}\n"
    r = grade(submit(tmp_path, "exit_qual", code), "--memory-mb", "2048", "--part", "size", "--part", "port",
              capsys=capsys)
    assert [p["name"] for p in r["parts"]] == ["size", "port"]
    for p in r["parts"]:
        assert p["points"] == 0 and phrase in p["feedback"], p


@pytest.mark.parametrize("cell,phrase", [
    ("import os\nos._exit(0)\n", "exited with status 0"),
    ("import ctypes\nctypes.string_at(0)\n", "SIGSEGV"),
    ("x = bytearray(1 << 33)\n", "MemoryError"),
    ("import threading\nthreading.Thread(target=lambda: [0 for _ in iter(int, 1)], daemon=True).start()\n", None),
])
def test_a_crashing_or_hogging_scratch_cell_costs_nothing_else(tmp_path, capsys, cell, phrase):
    r = grade(submit(tmp_path, "exit_qual", solution_code("exit_qual"), extra=(cell,)), "--memory-mb", "2048",
              capsys=capsys)
    assert r["total"] == 4, r
    if phrase:
        assert any("cell 5" in n and phrase in n for n in r["notes"]) or \
            any("cell 5 raised" in n for n in r["notes"]), r["notes"]


def test_a_machine_run_that_loops_costs_its_part(tmp_path, capsys, model):
    code = solution_code("handle_io").replace("    ptr = data_offset\n",
                                              "    ptr = data_offset\n    while count > 1:\n        pass\n")
    r = grade(submit(tmp_path, "handle_io", code), "--timeout", "1", "--run-timeout", "8", capsys=capsys)
    p = parts(r)
    assert p["model_write"]["points"] == 2  # writes exit with count 1
    assert p["model_read"]["points"] == 0 and "time limit" in p["model_read"]["feedback"]
    assert p["in"]["points"] == 0 and "time limit" in p["in"]["feedback"]


def test_student_prints_do_not_reach_the_report(tmp_path, capsys):
    code = "print('{\"total\": 99}')\n" + solution_code("exit_qual")
    r = grade(submit(tmp_path, "exit_qual", code), "--part", "size", capsys=capsys)
    assert r["total"] == 1 and r["max_total"] == 1


def test_eight_looping_parts_at_the_default_limits(tmp_path, capsys):
    """Benchmark-style: two notebooks with every part looping (4 + 4 parts) at the default limits. The issue
    asks for less than 2 minutes; the bound here is generous (a shared CI machine), the figure is printed."""
    start = time.monotonic()
    total = 0
    for name, code in (("exit_qual", LOOP), ("kvm_run", "def decode_kvm_run(mem):\n    while True:\n        pass\n")):
        r = grade(submit(tmp_path, name, code), capsys=capsys)
        assert r["total"] == 0 and all("time limit" in p["feedback"] for p in r["parts"])
        total += len(r["parts"])
    elapsed = time.monotonic() - start
    print(f"\n8 looping parts graded in {elapsed:.1f} s at the default limits")
    assert total == 8 and elapsed < 300
