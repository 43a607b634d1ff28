"""Known-wrong answers are rejected: the right part scores zero, the others keep their points, and the
feedback says what is wrong and why."""
from __future__ import annotations

import pytest

from conftest import answer_from, graded, variant
from vmio_edu.grading import exercise

SEEDS = (2, 31)

# (exercise, what is wrong, replacements on the reference, parts that must be zero, parts that must stay
#  full, a phrase the feedback of the first zero part must contain)
PURE_CASES = [
    ("exit_qual", "size off by one", [('"size": (q & 7) + 1', '"size": q & 7')],
     ["size"], ["direction", "string_rep", "port"], "encode size - 1"),
    ("exit_qual", "direction bit inverted", [('"in" if q & 8 else "out"', '"out" if q & 8 else "in"')],
     ["direction"], ["size", "string_rep", "port"], "bit 3 is"),
    ("exit_qual", "REP read from the string bit", [('"rep": bool(q & 32)', '"rep": bool(q & 16)')],
     ["string_rep"], ["size", "direction", "port"], "bit 5 is"),
    ("exit_qual", "port shifted by 15", [("(q >> 16) & 0xFFFF", "(q >> 15) & 0xFFFF")],
     ["port"], ["size", "direction", "string_rep"], "bits 31:16"),
    ("exit_qual", "operand bit wrong", [('"imm8" if q & 64', '"imm8" if q & 128')],
     ["port"], ["size", "direction", "string_rep"], "bit 6 is"),
    ("pio_exits", "rep outs: RCX before the element", [("rcx -= 1\n            exits.append((1, rcx))",
                                                        "exits.append((1, rcx))\n            rcx -= 1")],
     ["rcx"], ["exits", "counts"], "decremented before each exit"),
    ("pio_exits", "rep ins ignores the page boundary", [("min(in_page, 1024)", "1024")],
     ["counts"], [], "bytes to the page end"),
    ("pio_exits", "rep ins one element per exit", [("n = max(1, min(min(in_page, 1024) // size, rcx))", "n = 1")],
     ["exits", "counts"], [], "io.count per exit"),
    ("pio_exits", "rep ins: RCX after the batch", [("exits.append((n, rcx))\n            rdi += n * size\n"
                                                    "            rcx -= n",
                                                    "rdi += n * size\n            rcx -= n\n"
                                                    "            exits.append((n, rcx))")],
     ["rcx"], ["exits", "counts"], "only moves when the batch is stored"),
    ("kvm_run", "exit_reason at offset 0", [('unpack_from("<I", mem, 8)', 'unpack_from("<I", mem, 0)')],
     ["exit_reason"], [], "u32 at offset 8"),
    ("kvm_run", "port read as a u8", [('"<BBHIQ", mem, 32)', '"<BBBxIQ", mem, 32)')],
     ["io"], ["exit_reason", "mmio"], "u16 at offset 34"),
    ("kvm_run", "OUT data big-endian", [('size], "little")\n            for i in range(count)]',
                                         'size], "big")\n            for i in range(count)]')],
     ["values"], ["exit_reason", "io", "mmio"], "little-endian"),
    ("kvm_run", "mmio len at the wrong offset", [('"<IB", mem, 48)', '"<IB", mem, 44)')],
     ["mmio"], ["exit_reason", "io"], "u32 at offset 48"),
    ("sectors", "forgets LBA bits 27:24", [(" | (regs[\"select\"] & 0x0F) << 24", "")],
     ["lba"], [], "select"),
    ("sectors", "select mask keeps the drive bit", [('(regs["select"] & 0x0F) << 24', '(regs["select"] & 0x1F) << 24')],
     ["lba", "requests", "pwrites"], [], "& 0x0f"),
    ("kvm_run", "phys_addr as 32 bits", [('phys_addr, = struct.unpack_from("<Q", mem, 32)',
                                          'phys_addr, = struct.unpack_from("<I", mem, 32)')],
     ["mmio"], ["exit_reason", "io", "values"], "u64 at offset 32"),
    ("sectors", "nsector 0 is not 256", [('n = regs["nsector"] or 256', 'n = regs["nsector"]')],
     ["requests", "pwrites"], ["lba"], "nsector 0 means 256"),
    ("sectors", "one request for every sector", [("requests = [(lba + i, 1) for i in range(n)]",
                                                   "requests = [(lba, n)]")],
     ["requests", "pwrites"], ["lba"], "one request of 1 sector per sector"),
]


def _check(name, code, seed, hidden=True, parts=None):
    return graded(name, answer_from(name, code), seed, parts=parts, hidden=hidden)


@pytest.mark.parametrize("name,what,repl,zero,full,phrase", PURE_CASES, ids=[f"{c[0]}: {c[1]}" for c in PURE_CASES])
def test_known_wrong_pure_answers(name, what, repl, zero, full, phrase):
    code = variant(name, *repl)
    for seed in SEEDS:
        res = _check(name, code, seed)
        for z in zero:
            assert res[z].points == 0, (what, z, res[z].feedback)
        for f in full:
            assert res[f].full, (what, f, res[f].feedback)
        assert phrase in " ".join(res[z].feedback for z in zero), [res[z].feedback for z in zero]


def test_self_check_sees_the_students_own_cases_only():
    # nsector 0 only appears among the hidden cases: the self-check passes, grading does not
    code = variant("sectors", ('n = regs["nsector"] or 256', 'n = regs["nsector"]'))
    assert _check("sectors", code, 2, hidden=False, parts=["requests"])["requests"].full
    assert _check("sectors", code, 2, hidden=True, parts=["requests"])["requests"].points == 0


@pytest.mark.parametrize("name", ["exit_qual", "pio_exits", "kvm_run", "sectors", "virtio_chain", "virtio_exits"])
def test_an_answer_that_raises_scores_zero_with_the_error_named(name):
    code = f"def {exercise(name).answer}(*args):\n    return {{}}['no such key']\n"
    res = _check(name, code, 3, parts=[p for p in exercise(name).part_names if p != "model"])
    for r in res.values():
        assert r.points == 0
        assert "KeyError" in r.feedback and "no such key" in r.feedback


def test_the_empty_template_is_named():
    code = "def decode_exit_qualification(q):\n    # YOUR CODE HERE\n    raise NotImplementedError()\n"
    for r in _check("exit_qual", code, 1).values():
        assert r.points == 0 and "empty template" in r.feedback


def test_missing_or_wrong_kind_of_answer():
    ex = exercise("exit_qual")
    for answer, phrase in ((None, "not defined"), (42, "should be a function")):
        for r in ex.check(answer, ex.make(1)):
            assert r.points == 0 and phrase in r.feedback
    # a dict subclass that claims to hold and equal everything is read as the plain (empty) dict it is
    liar = ("class Liar(dict):\n    def __eq__(self, o):\n        return True\n    def __contains__(self, k):\n"
            "        return True\n    def __getitem__(self, k):\n        return True\n"
            "class Int(int):\n    def __eq__(self, o):\n        return True\n"
            "def decode_exit_qualification(q):\n    return Liar(size=Int(0), port=Int(0))\n")
    res = _check("exit_qual", liar, 1)
    assert all(r.points == 0 for r in res.values())
    assert all(r.points == 0 and "expected a dict" in r.feedback
               for r in ex.check(lambda q: [q], ex.make(1)))


# -- answers plugged into the model ------------------------------------------------------------------------
HANDLE_IO_CASES = [
    ("ignores count (one element per exit)", [("for _ in range(count):", "for _ in range(min(count, 1)):")],
     ["in", "model_read"], ["model_write"], "256"),
    ("OUT data big-endian", [('value = int.from_bytes(cpu.kvm_run_mem[ptr:ptr + size], "little")',
                              'value = int.from_bytes(cpu.kvm_run_mem[ptr:ptr + size], "big")')],
     ["out", "model_write"], ["in"], "little-endian"),
    # the guest's driver polls the status port with IN: without IN results it never even starts writing
    ("IN results not stored", [('cpu.kvm_run_mem[ptr:ptr + size] = value.to_bytes(size, "little")', "pass")],
     ["in", "model_read", "model_write"], ["out"], "should hold"),
    # writes exit with count 1, so only multi-element exits (rep insw: 256) notice
    ("pointer not moved", [("ptr += size", "pass")], ["out", "in", "model_read"], ["model_write"], "element 1"),
]


@pytest.mark.parametrize("what,repl,zero,full,phrase", HANDLE_IO_CASES, ids=[c[0] for c in HANDLE_IO_CASES])
def test_wrong_kvm_handle_io_breaks_the_machine(what, repl, zero, full, phrase, model):
    res = _check("handle_io", variant("handle_io", *repl), 5)
    for z in zero:
        assert res[z].points == 0, (what, z, res[z].feedback)
    for f in full:
        assert res[f].full, (what, f, res[f].feedback)
    assert phrase in " ".join(res[z].feedback for z in zero), [res[z].feedback for z in zero]


def test_a_raising_kvm_handle_io_is_reported_from_inside_the_model(model):
    code = variant("handle_io", ("ptr = data_offset", "ptr = data_offset\n    if count > 1:\n"
                                                      "        raise ValueError('too many')"))
    res = _check("handle_io", code, 5, parts=["model_read", "model_write"])
    assert res["model_write"].full  # writes exit with count 1
    assert res["model_read"].points == 0 and "ValueError: too many" in res["model_read"].feedback


def test_the_model_really_runs_the_students_kvm_handle_io(model):
    """Not just the unit checks: a kvm_handle_io that drops every 100th word only shows up in the image."""
    import vmio_edu.qemu.kvm_all as kvm_all
    from vmio_edu.grading.model import run_default_guest
    calls = []
    original = kvm_all.kvm_handle_io

    def lossy(cpu, port, data_offset, direction, size, count):
        calls.append(port)
        if direction == 1 and port == 0x1F0 and len(calls) % 100 == 0:
            return  # a lost word
        return original(cpu, port, data_offset, direction, size, count)

    run = run_default_guest("write", 3, 1, patches=[(kvm_all, "kvm_handle_io", lossy)])
    assert kvm_all.kvm_handle_io is original  # restored afterwards
    assert len(calls) >= 256
    assert run.image[3] != run.expected[3]
    res = exercise("handle_io").check(lossy, exercise("handle_io").make(1), parts=["model_write"])
    assert res[0].points == 0 and "differs from what the guest wrote" in res[0].feedback


IDE_CASES = [
    ("end function before the last word is stored",
     [("    p = s.data_ptr\n    s.io_buffer[p:p + 2] = (val & 0xFFFF).to_bytes(2, \"little\")\n    p += 2\n"
       "    s.data_ptr = p\n    if p >= s.data_end:\n        s.end_transfer_func(s)\n",
       "    p = s.data_ptr\n    if p + 2 >= s.data_end:\n        s.data_ptr = p + 2\n        s.end_transfer_func(s)\n"
       "    s.io_buffer[p:p + 2] = (val & 0xFFFF).to_bytes(2, \"little\")\n    if p + 2 < s.data_end:\n"
       "        s.data_ptr = p + 2\n")], ["end"], ["guard"], "did not hold all"),
    ("data_ptr moved after the end function",
     [("    s.data_ptr = p\n    if p >= s.data_end:\n        s.end_transfer_func(s)\n",
       "    if p >= s.data_end:\n        s.end_transfer_func(s)\n    s.data_ptr = p\n")],
     ["end"], ["guard"], "move data_ptr before the hand-off"),
    ("no DRQ guard", [("if not (s.status & DRQ_STAT) or ide_is_pio_out(s):\n        return", "pass")],
     ["guard"], ["store", "end", "model"], "must be ignored"),
    ("big-endian word", [('to_bytes(2, "little")', 'to_bytes(2, "big")')], ["store", "model"], ["guard"],
     "little-endian"),
    ("pointer moves one byte", [("p += 2", "p += 1")], ["store", "end", "model"], ["guard"], "data_ptr"),
    ("end function one word late", [("if p >= s.data_end:", "if p > s.data_end:")], ["end", "model"],
     ["store", "guard"], "when data_ptr reaches data_end"),
]


@pytest.mark.parametrize("what,repl,zero,full,phrase", IDE_CASES, ids=[c[0] for c in IDE_CASES])
def test_wrong_ide_data_writew(what, repl, zero, full, phrase, model):
    res = _check("ide_write", variant("ide_write", *repl), 8)
    for z in zero:
        assert res[z].points == 0, (what, z, res[z].feedback)
    for f in full:
        assert res[f].full, (what, f, res[f].feedback)
    assert phrase in " ".join(res[z].feedback for z in zero)


def test_wrong_pwrite_units_fail_against_the_model(model):
    code = variant("sectors", ("(sector_num * 512, nb * 512)", "(sector_num, nb)"))
    res = _check("sectors", code, 4)
    assert res["pwrites"].points == 0 and res["model"].points == 0
    assert res["lba"].full and res["requests"].full
    assert "pwrites were" in res["model"].feedback


def test_wrong_threads(model):
    code = "def thread_of(function):\n    return 'worker' if 'cb' in function else 'vcpu0'\n"
    res = _check("threads", code, 6)
    assert res["on_main"].points == 0 and "runs on main in the recorded trace" in res["on_main"].feedback
    assert res["on_vcpu"].full
    code = "def thread_of(function):\n    return 'cpu1'\n"
    res = _check("threads", code, 6, parts=["on_vcpu"])
    assert res["on_vcpu"].points == 0 and "not a thread name" in res["on_vcpu"].feedback


@pytest.mark.parametrize("bug,zero,full,phrase", [
    ("early", ["after_io"], ["bottom_half", "once", "reads"], "before its pwrite"),
    ("direct", ["bottom_half"], ["after_io", "once", "reads"], "inside the submitting call"),
    ("double", ["once", "bottom_half"], [], "exactly once"),
])
def test_each_buggy_completion_order_is_caught(bug, zero, full, phrase, model):
    from vmio_edu.grading import completion
    imports = variant("completion").split("def bdrv_co_do_rw")[0]
    code = imports + completion.BUGGY[bug]
    res = _check("completion", code, 9)
    for z in zero:
        assert res[z].points == 0, (bug, z, res[z].feedback)
    for f in full:
        assert res[f].full, (bug, f, res[f].feedback)
    assert phrase in " ".join(res[z].feedback for z in zero)


def test_completion_seeds_hand_out_every_bug():
    from vmio_edu.grading import completion
    assert {completion.make(s)["variant"] for s in range(30)} == set(completion.BUGGY)


def test_completion_needs_a_coroutine():
    code = "def bdrv_co_do_rw(acb):\n    return None\n"
    res = _check("completion", code, 1)
    assert all(r.points == 0 and "generator" in r.feedback for r in res.values())
