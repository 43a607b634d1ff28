"""Exercise: predict the VM exits QEMU sees for one port-I/O instruction under Linux 3.7.

Rules (shared/reference/semantics.md (b), (c)):
* `out`/`in` (and a string instruction without REP): one exit, count 1.
* `rep outs`: the emulator sends one element per exit (em_out always passes count 1, emulate.c:3274-3281)
  and restarts the instruction: N elements → N exits of count 1; RCX is already decremented at each
  exit (N-1 ... 0). RCX = 0: no exit at all (emulate.c:4439-4444).
* `rep ins`: pio_in_emulated (emulate.c:1280-1313) reads ahead n = min(min(bytes to the page end from
  RDI, 1024) / size, RCX) elements, at least 1, in one exit; RCX at the exit still holds the value before
  the batch.

The oracle is instructor material (`instructor/`). For the self-check, the expected exits of the
student's own cases come from running each instruction on the model's emulated engine (`simulate`).
"""
from __future__ import annotations

from typing import Any

from .base import Exercise, Part, PartResult, StudentError, call, fail_all, not_callable, rng, verdict

NAME = "pio_exits"
PAGE = 4096
READ_AHEAD = 1024  # u8 data[1024] in struct read_cache (kvm_emulate.h:248-252)
SIZE_OF = {"b": 1, "w": 2, "d": 4}
INSNS = ("out", "in") + tuple(f"{rep}{op}{s}" for rep in ("", "rep ") for op in ("outs", "ins") for s in "bwd")


def element_size(insn: str) -> int:
    return SIZE_OF[insn[-1]] if insn.rstrip("bwd") != insn else 2


GUEST_BUF = 0x60000  # where the simulated guest's buffer starts: only RDI's offset in its page matters
ASM = {"out": "out dx, al", "in": "in al, dx"}


def simulate(insn: str, rcx: int, rdi: int) -> list[tuple[int, int]]:
    """The exits the model's emulated engine (Linux 3.7's rules) gives for one instruction: what the
    self-check compares with. Running the simulator to see an answer is allowed: that is learning."""
    from ..guest import assemble
    from ..machine import Machine
    if insn not in INSNS:
        raise ValueError(f"unknown instruction {insn!r}")
    reg = "rsi" if "outs" in insn else "rdi"
    buf = GUEST_BUF + rdi % PAGE
    code = assemble(f"mov {reg}, {buf:#x}\nmov rcx, {rcx}\nmov dx, 0x510\n{ASM.get(insn, insn)}\nhlt", 64)
    with Machine(code, mode=64, engine="unicorn") as m:
        m.run()
        return [(x.count, x.rcx) for x in m.exits if x.reason == "IO"]


def _rdi(r, size: int) -> int:
    base = r.choice((0x10000, 0x20000, 0x7000, 0x100000))
    kind = r.random()
    if kind < 0.35:
        off = r.randrange(0, PAGE, size)
    elif kind < 0.7:
        off = PAGE - size * r.randrange(1, 300)  # close to the page end: the batch gets cut
    else:
        off = r.choice((0, 0x800, 0xC00, 0xE00))
    return base + max(0, off)


def random_case(r) -> dict:
    kind = r.random()
    if kind < 0.45:
        insn = r.choice(("rep insw", "rep insw", "rep insb", "rep insd"))
        size = element_size(insn)
        rcx = r.choice((r.randrange(100, 1600), r.randrange(1, 300), 256, 512 * r.randrange(1, 4)))
    elif kind < 0.75:
        insn = r.choice(("rep outsw", "rep outsb", "rep outsd"))
        size = element_size(insn)
        rcx = r.randrange(1, 12)
    else:
        insn = r.choice(("out", "in", "insw", "outsb"))
        size = element_size(insn)
        rcx = r.randrange(0, 1000)
    return {"insn": insn, "rcx": rcx, "rdi": _rdi(r, size)}


def make(seed: int) -> dict:
    r = rng(NAME, seed)
    cases = [dict(random_case(r), insn=i) for i in ("rep insw", "rep outsw")]
    cases[0]["rcx"] = r.randrange(300, 1500)
    cases[0]["rdi"] = 0x10000 + PAGE - 2 * r.randrange(50, 400)  # this one crosses a page
    cases[1]["rcx"] = r.randrange(2, 12)  # more than one element: RCX moves
    cases += [random_case(r) for _ in range(2)]
    return {"seed": seed, "cases": cases}


def problem(p: dict) -> str:
    rows = "\n".join(f"| {i + 1} | `{c['insn']}` | {c['rcx']} | `{c['rdi']:#x}` |" for i, c in enumerate(p["cases"]))
    return f"""**Your transfers** (seed {p['seed']}). A 64-bit guest, direction flag clear, executes each instruction
once with these registers; the port (in DX) has no in-kernel device, so every access goes to QEMU:

| # | instruction | RCX | RDI |
|---|---|---|---|
{rows}

How many times does KVM_RUN return to QEMU for each, with which `io.count`, and what does QEMU read in RCX
(`KVM_GET_REGS`) at each of those exits? Write `predict_exits(insn, rcx, rdi)` returning the list of
`(io.count, rcx_at_exit)` pairs, one per exit, for any of the instructions `out`, `in`, `outsb/w/d`,
`insb/w/d` and their `rep` forms."""


INTRO = """How Linux 3.7 handles port I/O (semantics.md (b), (c)):

* A plain `out` takes the fast path; an `in` or any string instruction goes through the x86 emulator.
  Either way a single element is one exit with `count = 1`.
* `rep outs`: `em_out` always sends **one** element (emulate.c:3274-3281). The emulator advances RSI,
  subtracts 1 from RCX, commits the registers and restarts the instruction, so the guest traps again.
  N elements give N exits, and RCX at each exit already shows the element just sent.
* `rep ins`: `pio_in_emulated` (emulate.c:1280-1313) reads ahead into a 1024-byte cache:
  `n = min(min(in_page, 1024) / size, RCX)` elements, at least 1, where `in_page` is the number of bytes
  from RDI to the end of its 4 KiB page. One exit brings `n` elements; on the next KVM_RUN they are all
  stored, RDI and RCX move by `n`, and if RCX is still non-zero the guest traps again. At the exit RCX
  still holds the value from before the batch.
* With RCX = 0 a `rep` instruction does nothing and never exits."""

TEMPLATE = '''def predict_exits(insn: str, rcx: int, rdi: int) -> list:
    """(io.count, RCX at the exit) for every exit to QEMU while `insn` runs once (Linux 3.7, DF = 0)."""
    # YOUR CODE HERE
    raise NotImplementedError()
'''

PARTS = (
    Part("exits", 1, "how many times KVM_RUN returns to QEMU"),
    Part("counts", 2, "io.count of each exit (1 for OUTS; read-ahead batches for INS)"),
    Part("rcx", 1, "RCX at each exit (after the element for OUTS, before the batch for INS)"),
)


def _norm(got: Any) -> list[tuple[int, int]] | str:
    if not isinstance(got, (list, tuple)):
        return f"expected a list of (count, rcx) pairs, got {type(got).__name__}"
    out = []
    for e in got:
        if isinstance(e, int):
            return "return (count, rcx) pairs, not bare counts: e.g. [(1, 2), (1, 1), (1, 0)]"
        if not (isinstance(e, (list, tuple)) and len(e) == 2 and all(isinstance(x, int) for x in e)):
            return f"every exit should be a pair (count, rcx) of ints, got {e!r:.40}"
        out.append((int(e[0]), int(e[1])))
    return out


def _why(c: dict) -> str:
    insn = c["insn"]
    if not insn.startswith("rep "):
        return "a single element is one exit of count 1"
    if "outs" in insn:
        return "rep outs sends one element per exit"
    size = element_size(insn)
    in_page = PAGE - c["rdi"] % PAGE
    return (f"the first batch is min(min({in_page} bytes to the page end, 1024) / {size}, RCX={c['rcx']}) "
            f"= {max(1, min(min(in_page, READ_AHEAD) // size, c['rcx'])) if c['rcx'] else 0} elements")


def _short(seq: list) -> str:
    s = ", ".join(str(x) for x in seq[:8])
    return f"[{s}{', ...' if len(seq) > 8 else ''}] ({len(seq)} exits)"


def check(answer: Any, params: dict, parts: list[str] | None = None, hidden: list | None = None) -> list[PartResult]:
    problem_ = not_callable(answer, EXERCISE.answer)
    if problem_:
        return fail_all(EXERCISE, parts, problem_)
    cases = list(params["cases"]) + list(hidden or [])
    fails: dict[str, list[str]] = {p.name: [] for p in PARTS}
    for c in cases:
        label = f"`{c['insn']}` with RCX={c['rcx']}, RDI={c['rdi']:#x}"
        want = [tuple(e) for e in c["exits"]] if "exits" in c else simulate(c["insn"], c["rcx"], c["rdi"])
        try:
            got = _norm(call(answer, c["insn"], c["rcx"], c["rdi"]))
        except StudentError as e:
            got = f"your function raised {e}"
        if isinstance(got, str):
            for k in fails:
                fails[k].append(f"{label}: {got}")
            continue
        if len(got) != len(want):
            fails["exits"].append(f"{label}: {len(want)} exits, you predicted {len(got)}; {_why(c)}")
        wc, gc = [e[0] for e in want], [e[0] for e in got]
        if wc != gc:
            i = next((k for k, (a, b) in enumerate(zip(wc, gc)) if a != b), min(len(wc), len(gc)))
            fails["counts"].append(f"{label}: io.count per exit should be {_short(wc)}, you gave {_short(gc)}; "
                                   f"first difference at exit {i + 1}; {_why(c)}")
        wr, gr = [e[1] for e in want], [e[1] for e in got]
        if wr != gr:
            i = next((k for k, (a, b) in enumerate(zip(wr, gr)) if a != b), min(len(wr), len(gr)))
            what = ("RCX is decremented before each exit" if "outs" in c["insn"] and c["insn"].startswith("rep")
                    else "RCX only moves when the batch is stored, on the next KVM_RUN"
                    if c["insn"].startswith("rep") else "nothing changes RCX")
            fails["rcx"].append(f"{label}: RCX at the exits should be {_short(wr)}, you gave {_short(gr)}; "
                                f"first difference at exit {i + 1}: {what}")
    return [verdict(p, fails[p.name], len(cases)) for p in PARTS if parts is None or p.name in parts]


EXERCISE = Exercise(
    name=NAME, title="Predict the VM exits of a port-I/O transfer",
    goal="Predict, from the Linux 3.7 emulator's rules, how many times a `rep outsw`/`rep insw`/`out`/`in` "
         "comes back to QEMU, with what `io.count`, and what the guest's RCX shows at each exit; see why "
         "writing a sector costs 256 exits but reading it costs one (or two, across a page).",
    answer="predict_exits", parts=PARTS, make=make, problem=problem, check=check, template=TEMPLATE,
    intro=INTRO, pure=True)
