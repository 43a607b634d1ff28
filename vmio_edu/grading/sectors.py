"""Exercise: from the ATA task-file registers to the byte offsets `pwrite` gets.

Rules (shared/reference/semantics.md (f), (h)): the 28-bit LBA is sector | lcyl << 8 | hcyl << 16 |
(select & 0x0f) << 24 with bit 6 of select set; a count of 0 means 256; IDE PIO submits one sector per
request (`bdrv_aio_writev(sector_num, nb_sectors=1)`, core.c:794), and raw-posix turns that into
`pwrite(fd, buf, nb_sectors*512, sector_num*512)` (raw-posix.c:795-796); the raw format adds no offset.

The expected values of the student's own cases follow from the encoder (the LBA is drawn first, then split
into bytes); the `model` part compares the student's plan with the `pwrite`s the model really makes (run
by the grader, never in the sandbox). Both drives appear: bit 4 of select (the drive) is not part of the LBA.
"""
from __future__ import annotations

from typing import Any

from .base import Exercise, Part, PartResult, StudentError, call, fail_all, not_callable, rng, verdict
from .model import ModelUnavailable, run_default_guest, spy

NAME = "sectors"
SECTOR = 512


def registers(lba: int, nsector: int, select_base: int = 0xE0) -> dict:
    return {"nsector": nsector & 0xFF, "sector": lba & 0xFF, "lcyl": (lba >> 8) & 0xFF,
            "hcyl": (lba >> 16) & 0xFF, "select": select_base | ((lba >> 24) & 0x0F)}


# select values a driver writes: LBA mode, master (0xe0, 0x40) or slave (0xf0, 0x50)
SELECTS = (0xE0, 0x40, 0xF0, 0x50)


def expected(lba: int, nsector: int) -> dict:
    """What the task file means, spelled out for one case (the rules in INTRO)."""
    n = nsector or 256
    return {"lba": lba, "requests": [[lba + i, 1] for i in range(n)],
            "pwrites": [[(lba + i) * SECTOR, SECTOR] for i in range(n)]}


def new_case(lba: int, nsector: int, select_base: int = 0xE0) -> dict:
    return {"lba": lba, "nsector": nsector, "regs": registers(lba, nsector, select_base),
            "want": expected(lba, nsector)}


def random_case(r) -> dict:
    lba = r.choice((r.randrange(1 << 28), r.randrange(1 << 20), r.randrange(1 << 12)))
    nsector = r.choice((2, 3, 4, 8, r.randrange(2, 256)))
    return new_case(lba, nsector, r.choice(SELECTS))


def make(seed: int) -> dict:
    r = rng(NAME, seed)
    cases = [new_case(r.randrange(1 << 24, 1 << 28), r.randrange(2, 9), 0xE0),  # every register matters
             new_case(r.randrange(1 << 24, 1 << 28), r.randrange(2, 9), 0xF0),  # the slave drive
             random_case(r)]
    model = {"lba": r.randrange(1, 1800), "sectors": r.choice((2, 3)), "pattern": r.randrange(1 << 16)}
    return {"seed": seed, "cases": cases, "model": model}


def _regs_text(g: dict) -> str:
    return ", ".join(f"{k}={v:#04x}" for k, v in g.items())


def problem(p: dict) -> str:
    rows = "\n".join(f"| {i + 1} | {c['regs']['nsector']:#04x} | {c['regs']['sector']:#04x} | {c['regs']['lcyl']:#04x} "
                     f"| {c['regs']['hcyl']:#04x} | {c['regs']['select']:#04x} |" for i, c in enumerate(p["cases"]))
    m = p["model"]
    return f"""**Your writes** (seed {p['seed']}). Before `WRITE SECTORS` (0x30), the guest's driver loaded the
task file:

| # | 0x1f2 nsector | 0x1f3 sector | 0x1f4 lcyl | 0x1f5 hcyl | 0x1f6 select |
|---|---|---|---|---|---|
{rows}

Write `plan_write(regs)` where `regs` is a dict with those five keys. Return a dict with
* `lba`: the first sector (28-bit LBA),
* `requests`: the `(sector_num, nb_sectors)` of every `bdrv_aio_writev` QEMU's IDE device makes, in order,
* `pwrites`: the `(offset, nbytes)` of every `pwrite` on the raw image, in order.

The last part runs the model: the default guest writes {m['sectors']} sector(s) at LBA {m['lba']}, and your plan
for its registers must match the `pwrite`s the model really made."""


INTRO = """* The device register 0x1f6 (`select`): bit 6 = LBA mode, bits 3:0 = LBA bits 27:24 (bits 7 and 5 are
  obsolete, often set; bit 4 picks the drive). 0x1f3, 0x1f4, 0x1f5 hold LBA bits 7:0, 15:8, 23:16
  (`ide_get_sector`, hw/ide/core.c).
* A sector count of 0 means 256 (core.c:926-928).
* For PIO, QEMU 1.6.1 asks for one sector per DRQ block and one block-layer request per sector
  (`req_nb_sectors = 1`; `ide_sector_write`, core.c:778-800).
* The block layer counts in 512-byte sectors (`BDRV_SECTOR_SIZE`, include/block/block.h:80-81);
  `paio_submit` converts to bytes: `aio_offset = sector_num * 512`, `aio_nbytes = nb_sectors * 512`
  (block/raw-posix.c:795-796). The raw format adds no offset (block/raw.c:54)."""

TEMPLATE = '''def plan_write(regs: dict) -> dict:
    """The LBA, the block-layer requests and the pwrites of one PIO WRITE SECTORS."""
    # YOUR CODE HERE
    raise NotImplementedError()
'''

PARTS = (
    Part("lba", 1, "the 28-bit LBA from sector/lcyl/hcyl/select"),
    Part("requests", 1, "one bdrv_aio_writev per sector, count 0 = 256"),
    Part("pwrites", 1, "pwrite offsets and sizes in bytes"),
    Part("model", 1, "the plan matches the pwrites the model really makes"),
)


def _pairs(v: Any) -> list[tuple[int, int]] | None:
    if not isinstance(v, (list, tuple)):
        return None
    try:
        return [(int(a), int(b)) for a, b in v]
    except (TypeError, ValueError):
        return None


def _short(v: list) -> str:
    return "[" + ", ".join(f"({a}, {b})" for a, b in v[:3]) + (f", ... ({len(v)} in all)]" if len(v) > 3 else "]")


def _compare(got: dict, want: dict, fails: dict, label: str, regs: dict) -> None:
    if got.get("lba") != want["lba"]:
        parts = (f"sector {regs['sector']:#x} | lcyl {regs['lcyl']:#x} << 8 | hcyl {regs['hcyl']:#x} << 16 | "
                 f"(select {regs['select']:#x} & 0x0f) << 24")
        fails["lba"].append(f"{label}: lba should be {want['lba']} ({want['lba']:#x}) = {parts}, "
                            f"you returned {got.get('lba')!r}")
    for key, why in (("requests", "one request of 1 sector per sector, starting at the LBA; nsector 0 means 256"),
                     ("pwrites", "offset = sector_num * 512 and nbytes = nb_sectors * 512")):
        g = _pairs(got.get(key))
        if g is None:
            fails[key].append(f"{label}: {key} should be a list of pairs, got {got.get(key)!r:.60}")
        elif g != [tuple(x) for x in want[key]]:
            fails[key].append(f"{label}: {key} should be {_short([tuple(x) for x in want[key]])}, you returned "
                              f"{_short(g)}; {why}")


def model_pwrites(m: dict) -> list[tuple[int, int]] | str:
    """The pwrites the model really makes for the default guest's write (run by the grader itself)."""
    import vmio_edu.qemu.block.raw_posix as raw_posix
    seen: list[tuple[int, int, int]] = []

    def record(aiocb: Any, *_a: Any, **_k: Any) -> None:
        seen.append((aiocb.aio_type, aiocb.aio_offset, aiocb.aio_nbytes))

    with spy(raw_posix, "handle_aiocb_rw", record):
        run = run_default_guest("write", m["lba"], m["sectors"], seed=m["pattern"])
    if not run.ok:
        return f"the model run failed on its own: {run.error}"
    return [(off, n) for typ, off, n in seen if typ & 2]  # QEMU_AIO_WRITE


def _model(part: Part, answer: Any, m: dict) -> PartResult:
    regs = registers(m["lba"], m["sectors"], 0xF0 if m["lba"] % 2 else 0xE0)
    try:
        got = call(answer, dict(regs))
    except StudentError as e:
        return PartResult(part.name, 0, part.points, f"your function raised {e}")
    try:
        real = model_pwrites(m)
    except ModelUnavailable as e:
        return PartResult(part.name, 0, part.points, f"not graded: the model cannot run here ({e})")
    if isinstance(real, str):
        return PartResult(part.name, 0, part.points, real)
    mine = _pairs(got.get("pwrites")) if isinstance(got, dict) else None
    label = f"the model wrote {m['sectors']} sector(s) at LBA {m['lba']} (registers {_regs_text(regs)})"
    if mine != real:
        return PartResult(part.name, 0, part.points,
                          f"{label}: its pwrites were {_short(real)}, your plan says {_short(mine or [])}")
    return PartResult(part.name, part.points, part.points, f"{label}: your plan matches its pwrites {_short(real)}")


def check(answer: Any, params: dict, parts: list[str] | None = None, hidden: list | None = None) -> list[PartResult]:
    problem_ = not_callable(answer, EXERCISE.answer)
    if problem_:
        return fail_all(EXERCISE, parts, problem_)
    cases = list(params["cases"]) + list(hidden or [])
    fails: dict[str, list[str]] = {"lba": [], "requests": [], "pwrites": []}
    if parts is None or set(parts) & set(fails):
        for c in cases:
            label = f"registers {_regs_text(c['regs'])}"
            try:
                got = call(answer, dict(c["regs"]))
            except StudentError as e:
                got = f"your function raised {e}"
            if not isinstance(got, dict):
                for k in fails:
                    why = got if isinstance(got, str) else f"expected a dict, got {type(got).__name__}"
                    fails[k].append(f"{label}: {why}")
                continue
            _compare(got, c["want"], fails, label, c["regs"])
    out = []
    for p in PARTS:
        if parts is not None and p.name not in parts:
            continue
        out.append(_model(p, answer, params["model"]) if p.name == "model" else verdict(p, fails[p.name], len(cases)))
    return out


EXERCISE = Exercise(
    name=NAME, title="From task-file registers to pwrite offsets",
    goal="Follow a write's address through the layers: ATA registers → 28-bit LBA → the block layer's "
         "512-byte `sector_num` → the byte offset `pwrite` gets on the raw image.",
    answer="plan_write", parts=PARTS, make=make, problem=problem, check=check, template=TEMPLATE,
    intro=INTRO, uses_model=True, pure=True)
