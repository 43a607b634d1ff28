"""Exercise: decode the exit qualification of an I/O VM exit (reason 30).

The oracle is the encoder: `make` draws the fields of each instruction and packs them into the
qualification (Intel SDM Vol. 3C, "Exit Qualification for I/O Instructions"; used by Linux 3.7
arch/x86/kvm/vmx.c:4392-4402), so the expected fields are known by construction.
"""
from __future__ import annotations

from typing import Any

from .base import Exercise, Part, PartResult, StudentError, call, fail_all, hexs, not_callable, rng, verdict

NAME = "exit_qual"
SIZES = {1: "b", 2: "w", 4: "d"}
REGS = {1: "al", 2: "ax", 4: "eax"}
# Ports a learner meets on a PC, plus random ones.
PORTS = (0x1F0, 0x1F7, 0x3F6, 0x80, 0x60, 0x64, 0x70, 0x71, 0x3F8, 0x20, 0xA0, 0xCF8, 0xCFC, 0x40)


def encode(size: int, direction: str, string: bool, rep: bool, imm: bool, port: int) -> int:
    return ((size - 1) | (direction == "in") << 3 | string << 4 | rep << 5 | imm << 6 | port << 16)


def instruction_text(f: dict) -> str:
    """The instruction that would give these fields, in Intel syntax."""
    if f["string"]:
        op = ("ins" if f["direction"] == "in" else "outs") + SIZES[f["size"]]
        return ("rep " if f["rep"] else "") + op
    reg = REGS[f["size"]]
    port = f"{f['port']:#x}" if f["operand"] == "imm8" else "dx"
    return f"in {reg}, {port}" if f["direction"] == "in" else f"out {port}, {reg}"


def random_case(r) -> dict:
    size = r.choice((1, 2, 4))
    direction = r.choice(("in", "out"))
    string = r.random() < 0.5
    rep = string and r.random() < 0.7
    imm = not string and r.random() < 0.4
    if imm:
        port = r.choice((0x80, 0x60, 0x64, 0x70, 0x71, 0x40, r.randrange(256)))
    else:
        port = r.choice(PORTS + (r.randrange(0x10000),) * 4)
    f = {"size": size, "direction": direction, "string": string, "rep": rep,
         "operand": "imm8" if imm else "dx", "port": port}
    f["q"] = encode(size, direction, string, rep, imm, port)
    f["insn"] = instruction_text(f)
    return f


def make(seed: int) -> dict:
    r = rng(NAME, seed)
    cases = [random_case(r) for _ in range(4)]
    # at least one string and one non-string instruction, so every field matters
    if all(c["string"] for c in cases) or not any(c["string"] for c in cases):
        cases[0] = _flip_string(cases[0], r)
    return {"seed": seed, "cases": cases}


def _flip_string(c: dict, r) -> dict:
    string = not c["string"]
    rep = string and r.random() < 0.7
    f = dict(c, string=string, rep=rep, operand="dx")
    f["q"] = encode(f["size"], f["direction"], string, rep, False, f["port"])
    f["insn"] = instruction_text(f)
    return f


def problem(p: dict) -> str:
    rows = "\n".join(f"| {i + 1} | `{c['q']:#010x}` |" for i, c in enumerate(p["cases"]))
    return f"""**Your exits** (seed {p['seed']}): a guest ran four port-I/O instructions, and each one left
EXIT_REASON_IO_INSTRUCTION (30) with this exit qualification in the VMCS:

| # | exit qualification |
|---|---|
{rows}

Write `decode_exit_qualification(q)` returning a dict with the keys
`size` (bytes: 1, 2 or 4), `direction` (`"in"` or `"out"`), `string` (bool), `rep` (bool),
`operand` (`"dx"` or `"imm8"`) and `port` (int). Then say, for yourself, which instruction each one was."""


INTRO = """Intel SDM Vol. 3C, table "Exit Qualification for I/O Instructions", as Linux 3.7 reads it in
`handle_io` (arch/x86/kvm/vmx.c:4392-4402):

| bits | meaning |
|---|---|
| 2:0 | size of access - 1 (0 = 1 byte, 1 = 2 bytes, 3 = 4 bytes) |
| 3 | direction: 0 = OUT, 1 = IN |
| 4 | string instruction (INS/OUTS) |
| 5 | REP prefix |
| 6 | operand encoding: 0 = DX, 1 = immediate |
| 15:7 | reserved (0) |
| 31:16 | port number |

KVM itself reads only size, direction, string and port: `string = q & 16`, `in = q & 8`,
`port = q >> 16`, `size = (q & 7) + 1`."""

TEMPLATE = '''def decode_exit_qualification(q: int) -> dict:
    """The fields of an I/O exit qualification (exit reason 30)."""
    # YOUR CODE HERE
    raise NotImplementedError()
'''

PARTS = (
    Part("size", 1, "size of the access, from bits 2:0 (size - 1)"),
    Part("direction", 1, "IN or OUT, from bit 3"),
    Part("string_rep", 1, "string instruction (bit 4) and REP prefix (bit 5)"),
    Part("port", 1, "the port (bits 31:16) and how it was given (bit 6: DX or imm8)"),
)
WHY = {
    "size": lambda c: f"bits 2:0 are {c['q'] & 7}, which encode size - 1",
    "direction": lambda c: f"bit 3 is {(c['q'] >> 3) & 1} (1 = IN, 0 = OUT)",
    "string": lambda c: f"bit 4 is {(c['q'] >> 4) & 1}",
    "rep": lambda c: f"bit 5 is {(c['q'] >> 5) & 1}",
    "operand": lambda c: f"bit 6 is {(c['q'] >> 6) & 1} (1 = imm8, 0 = DX)",
    "port": lambda c: f"bits 31:16 are {c['q'] >> 16:#06x}",
}
PART_FIELDS = {"size": ("size",), "direction": ("direction",), "string_rep": ("string", "rep"),
               "port": ("port", "operand")}


def _same(field: str, got: Any, want: Any) -> bool:
    if field in ("string", "rep"):
        return isinstance(got, (bool, int)) and bool(got) == want
    if field in ("direction", "operand"):
        return isinstance(got, str) and got.strip().lower() == want
    return isinstance(got, int) and not isinstance(got, bool) and got == want


def check(answer: Any, params: dict, parts: list[str] | None = None, hidden: list | None = None) -> list[PartResult]:
    problem_ = not_callable(answer, EXERCISE.answer)
    if problem_:
        return fail_all(EXERCISE, parts, problem_)
    cases = list(params["cases"]) + list(hidden or [])
    failures: dict[str, list[str]] = {p.name: [] for p in PARTS}
    for c in cases:
        label = f"q={c['q']:#010x} ({c['insn']})"
        try:
            got = call(answer, c["q"])
        except StudentError as e:
            for k in failures:
                failures[k].append(f"{label}: your function raised {e}")
            continue
        if not isinstance(got, dict):
            for k in failures:
                failures[k].append(f"{label}: expected a dict of fields, got {type(got).__name__} {got!r:.60}")
            continue
        for part, fields in PART_FIELDS.items():
            for f in fields:
                if f not in got:
                    failures[part].append(f"{label}: the dict has no key {f!r}")
                elif not _same(f, got[f], c[f]):
                    failures[part].append(f"{label}: {f} should be {hexs(c[f]) if f == 'port' else repr(c[f])}, "
                                          f"you returned {hexs(got[f])}; {WHY[f](c)}")
    return [verdict(p, failures[p.name], len(cases)) for p in PARTS if parts is None or p.name in parts]


EXERCISE = Exercise(
    name=NAME, title="Decode an I/O exit qualification",
    goal="Read the VMCS exit qualification of an I/O exit the way `handle_io` does, and tell from its bits "
         "which instruction trapped: its size, direction, port, and whether it was a (REP) string instruction.",
    answer="decode_exit_qualification", parts=PARTS, make=make, problem=problem, check=check,
    template=TEMPLATE, intro=INTRO, pure=True)
