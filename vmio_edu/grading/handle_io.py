"""Exercise: write QEMU's `kvm_handle_io` (kvm-all.c:1495-1530) and run the whole machine on it.

Two kinds of checks:
* unit: the student's function runs on a fake vCPU (a bytearray standing for the mmap) with the
  `cpu_in*`/`cpu_out*` port functions replaced by recorders, so feedback can name the exact call
  that is wrong;
* model: the student's function replaces `vmio_edu.qemu.kvm_all.kvm_handle_io` for one `Machine` run of
  the default guest (write, then write + read back), and the image bytes and the exits are checked.
"""
from __future__ import annotations

from typing import Any

from ..linux.arch.x86.include.asm.kvm_host import KVM_PIO_PAGE_OFFSET
from ..linux.arch.x86.include.asm.page_types import PAGE_SIZE
from ..linux.include.uapi.linux import kvm as K
from .base import Exercise, Part, PartResult, StudentError, capture, fail_all, not_callable, rng, verdict
from .model import from_summary, image_problems, probe, run_default_guest, summarize
from .standins import PORT_FUNCS, FakeCPU, PortRecorder

NAME = "handle_io"
DATA_OFFSET = KVM_PIO_PAGE_OFFSET * PAGE_SIZE


def random_unit_case(r, direction: str | None = None) -> dict:
    direction = direction or r.choice(("out", "in"))
    size = r.choice((1, 2, 2, 4))
    count = r.choice((1, 1, 2, 3, r.randrange(4, 12)))
    port = r.choice((0x1F0, 0x1F7, 0x80, 0x3F8, 0x70, r.randrange(0x10000)))
    c = {"direction": direction, "size": size, "count": count, "port": port}
    if direction == "out":
        c["data"] = r.randbytes(size * count).hex()
    else:
        c["answers"] = [r.getrandbits(8 * size) for _ in range(count)]
    return c


def make(seed: int) -> dict:
    r = rng(NAME, seed)
    unit = [random_unit_case(r, "out"), random_unit_case(r, "in"), random_unit_case(r)]
    unit[0].update(size=2, count=r.randrange(2, 6))
    unit[0]["data"] = r.randbytes(2 * unit[0]["count"]).hex()
    return {"seed": seed, "unit": unit,
            "write": {"lba": r.randrange(1, 1900), "sectors": r.choice((1, 2)), "pattern": r.randrange(1 << 16)},
            "read": {"lba": r.randrange(1, 1900), "sectors": 1, "pattern": r.randrange(1 << 16)}}


def problem(p: dict) -> str:
    u = p["unit"]
    lines = []
    for c in u:
        lines.append(f"* {c['direction'].upper()}, size {c['size']}, count {c['count']}, port `{c['port']:#x}`")
    w, rd = p["write"], p["read"]
    return f"""**Your checks** (seed {p['seed']}):

1. On its own, with fake ports, your function must handle these exits (data at `data_offset` = 4096):
{chr(10).join(lines)}
2. Plugged into the model, the default guest writes {w['sectors']} sector(s) at LBA {w['lba']}:
   {256 * w['sectors']} `rep outsw` exits of count 1 must land exactly those bytes in the raw image.
3. Then a write + read back of LBA {rd['lba']}: the `rep insw` exit has count 256, and your function must
   fill the PIO page with all 256 words the IDE device answers."""


INTRO = """`kvm_cpu_exec` (kvm-all.c:1620-1700) calls `kvm_handle_io(cpu, port, data_offset, direction, size,
count)` for every `KVM_EXIT_IO` (kvm-all.c:1495-1530; semantics.md (e)). It does `count` accesses on the
same port, each of `size` bytes, element `i` at `data_offset + i*size` in the vCPU mmap:

* OUT (`direction == KVM_EXIT_IO_OUT`): read the element (little-endian) and call `cpu_outb/w/l(port, value)`
  by size;
* IN (`KVM_EXIT_IO_IN`): call `cpu_inb/w/l(port)` and store the result back into the element.

`cpu.kvm_run_mem` is the vCPU mmap (a writable `memoryview`): `struct kvm_run` in page 0, the PIO page at
`data_offset`. Every element takes the whole memory-API chain (`cpu_outw` → `address_space_write` → ...
→ `ide_data_writew`) separately. Your function replaces `vmio_edu.qemu.kvm_all.kvm_handle_io` while the
checks run the machine."""

TEMPLATE = '''from vmio_edu.linux.include.uapi.linux.kvm import KVM_EXIT_IO_IN, KVM_EXIT_IO_OUT
from vmio_edu.qemu.ioport import cpu_inb, cpu_inl, cpu_inw, cpu_outb, cpu_outl, cpu_outw


def kvm_handle_io(cpu, port: int, data_offset: int, direction: int, size: int, count: int) -> None:
    """Replay one KVM_EXIT_IO: `count` accesses of `size` bytes on `port` (kvm-all.c:1495)."""
    # YOUR CODE HERE
    raise NotImplementedError()
'''

PARTS = (
    Part("out", 1, "OUT exits on fake ports: one cpu_out* per element, right size, value and order"),
    Part("in", 1, "IN exits on fake ports: one cpu_in* per element, answers stored in the PIO page"),
    Part("model_write", 2, "plugged into the model: the guest's write lands in the image"),
    Part("model_read", 1, "plugged into the model: the guest reads the sector back"),
)


def _with_fake_ports(student: Any, rec: PortRecorder):
    """Put recorders where the student's function will look up the port functions: its globals, and the
    ioport module (for students who call `ioport.cpu_outw`)."""
    import vmio_edu.qemu.ioport as ioport
    table = rec.table()
    fn = getattr(student, "__wrapped_student__", student)
    targets = [getattr(fn, "__globals__", {}), vars(ioport)]
    saved = [(g, {k: g[k] for k in table if k in g}) for g in targets]
    for g in targets:
        for k in table:
            if k in g or g is vars(ioport):
                g[k] = table[k]
    return saved


def _restore(saved) -> None:
    for g, old in saved:
        for k in PORT_FUNCS.values():
            if k in old:
                g[k] = old[k]
            else:
                g.pop(k, None)


def capture_unit(student: Any, c: dict) -> dict:
    """Sandbox side: run one exit on a fake vCPU with recording ports; what was called, and the mmap after."""
    mem = bytearray(2 * PAGE_SIZE)
    if c["direction"] == "out":
        data = bytes.fromhex(c["data"])
        mem[DATA_OFFSET:DATA_OFFSET + len(data)] = data
    d = K.KVM_EXIT_IO_OUT if c["direction"] == "out" else K.KVM_EXIT_IO_IN
    rec = PortRecorder(c.get("answers", []))
    saved = _with_fake_ports(student, rec)
    try:
        student(FakeCPU(memoryview(mem)), c["port"], DATA_OFFSET, d, c["size"], c["count"])
    finally:
        _restore(saved)
    return {"calls": rec.calls[:5000], "mem": bytes(mem)}


def capture_model(student: Any, w: dict) -> dict:
    """Sandbox side: the default guest on the model with the student's kvm_handle_io plugged in."""
    import vmio_edu.qemu.kvm_all as kvm_all
    run = run_default_guest(w["op"], w["lba"], w["sectors"], seed=w["pattern"],
                            patches=[(kvm_all, "kvm_handle_io", student)])
    return summarize(run)


def run_unit(answer: Any, c: dict) -> str | None:
    """None if the student's function handled the exit right, else what went wrong."""
    size, count, port = c["size"], c["count"], c["port"]
    before = bytearray(2 * PAGE_SIZE)
    if c["direction"] == "out":
        data = bytes.fromhex(c["data"])
        before[DATA_OFFSET:DATA_OFFSET + len(data)] = data
    before = bytes(before)
    try:
        got_raw = capture(answer, "unit", c, CAPTURES)
    except StudentError as e:
        return f"your function raised {e}"
    if not (isinstance(got_raw, dict) and isinstance(got_raw.get("calls"), list)
            and isinstance(got_raw.get("mem"), bytes) and len(got_raw["mem"]) == len(before)):
        return "the sandbox sent back something that is not a record of the port calls"
    mem = got_raw["mem"]
    got = [tuple(x) if isinstance(x, list) and len(x) == 3 else ("?", None, None) for x in got_raw["calls"]]
    fname = PORT_FUNCS[(c["direction"], size)]
    if c["direction"] == "out":
        want = [(fname, port, int.from_bytes(data[i * size:(i + 1) * size], "little")) for i in range(count)]
    else:
        want = [(fname, port, None) for _ in range(count)]
    if len(got) != len(want):
        used = sorted({g[0] for g in got}) or ["no port function"]
        return (f"expected {count} call(s) of {fname}, one per element, your function made {len(got)} "
                f"({', '.join(used)})" + ("; count is the number of elements, not bytes" if len(got) == count * size
                                         and size > 1 else ""))
    for i, (g, w) in enumerate(zip(got, want)):
        if g[0] != w[0]:
            return f"element {i}: size {size} needs {w[0]}, your function called {g[0]}"
        if g[1] != w[1]:
            return f"element {i}: every access goes to port {w[1]:#x}, your function used {g[1]:#x}"
        if w[2] is not None and g[2] != w[2]:
            raw = data[i * size:(i + 1) * size]
            hint = ("read it little-endian" if int.from_bytes(raw, "big") == g[2] else
                    f"element i is at data_offset + i*size = {DATA_OFFSET + i * size:#x}")
            return f"element {i}: {w[0]}({port:#x}, {w[2]:#x}) expected, your function sent {g[2]!r}; {hint}"
    if c["direction"] == "in":
        answers = c["answers"]
        for i, v in enumerate(answers):
            off = DATA_OFFSET + i * size
            stored = bytes(mem[off:off + size])
            if stored != v.to_bytes(size, "little"):
                return (f"element {i}: {fname} answered {v:#x}, so bytes {off:#x}..{off + size - 1:#x} of the "
                        f"mmap should hold {v.to_bytes(size, 'little').hex()}, they hold {stored.hex()}")
        end = DATA_OFFSET + count * size
        if mem[:DATA_OFFSET] != before[:DATA_OFFSET] or mem[end:] != before[end:]:
            return "your function wrote outside the count*size bytes at data_offset"
    elif bytes(mem) != before:
        return "an OUT must not change the mmap"
    return None


def _model_part(part: Part, answer: Any, p: dict, op: str) -> PartResult:
    w = p["write"] if op == "write" else p["read"]
    lba, sectors = w["lba"], w["sectors"]
    why = probe()
    if why is not None:
        return PartResult(part.name, 0, part.points, f"not graded: the model cannot run here ({why})")
    try:
        run = from_summary(capture(answer, "model", dict(w, op=op), CAPTURES), op, lba, sectors, w["pattern"])
    except StudentError as e:
        return PartResult(part.name, 0, part.points, f"op={op}, LBA {lba}: {e}")
    problems = []
    if not run.ok:
        problems.append(f"the machine did not finish: {run.error}")
    else:
        problems += image_problems(run, lba, sectors)
    outs = [x for x in run.exits if x.reason == "IO" and x.port == 0x1F0 and x.direction == "out"]
    if run.ok and len(outs) != 256 * sectors:
        problems.append(f"the guest needed {len(outs)} data-port OUT exits, expected {256 * sectors}")
    if op == "both" and run.ok:
        back = run.guest.get("read_back", b"")
        back = back[:512 * sectors] if isinstance(back, bytes) else b""
        want = run.expected.get(lba, b"")
        if back != want:
            from .model import first_difference
            i = first_difference(back, want)
            problems.append(f"the guest read back different bytes than the image holds, first at byte {i} "
                            f"(word {i // 2}): guest got {back[i:i + 4].hex()}, image has {want[i:i + 4].hex()}; "
                            "an IN must store every element cpu_inw returns")
        ins = [x.count for x in run.exits if x.reason == "IO" and x.port == 0x1F0 and x.direction == "in"]
        if ins != [256] * sectors:
            problems.append(f"rep insw exits had counts {ins[:4]}, expected [256]")
    if run.ok and run.guest.get("error"):
        problems.append(f"the guest saw an ATA error: status={run.guest.get('status', 0):#x} "
                        f"error={run.guest.get('error', 0):#x}")
    what = f"op={op}, LBA {lba}, {sectors} sector(s)"
    if problems:
        return PartResult(part.name, 0, part.points, f"{what}:\n- " + "\n- ".join(problems[:4]))
    return PartResult(part.name, part.points, part.points,
                      f"{what}: the image holds exactly the guest's bytes ({len(run.exits)} exits)")


def check(answer: Any, params: dict, parts: list[str] | None = None, hidden: list | None = None) -> list[PartResult]:
    problem_ = not_callable(answer, EXERCISE.answer)
    if problem_:
        return fail_all(EXERCISE, parts, problem_)
    out = []
    cases = list(params["unit"]) + list(hidden or [])
    for part in PARTS:
        if parts is not None and part.name not in parts:
            continue
        if part.name in ("out", "in"):
            mine = [c for c in cases if c["direction"] == part.name]
            fails = []
            for c in mine:
                why = run_unit(answer, c)
                if why:
                    fails.append(f"{c['direction'].upper()} size {c['size']} count {c['count']} port "
                                 f"{c['port']:#x}: {why}")
            out.append(verdict(part, fails, len(mine)))
        elif part.name == "model_write":
            out.append(_model_part(part, answer, params, "write"))
        else:
            out.append(_model_part(part, answer, params, "both"))
    return out


CAPTURES = {"unit": capture_unit, "model": capture_model}

EXERCISE = Exercise(
    name=NAME, title="Implement kvm_handle_io",
    goal="Write QEMU's `kvm_handle_io`, the loop that turns one `KVM_EXIT_IO` into `count` port accesses, "
         "and see the whole machine (IDE, block layer, thread pool, pwrite) work, or break, on your code.",
    answer="kvm_handle_io", parts=PARTS, make=make, problem=problem, check=check, template=TEMPLATE,
    intro=INTRO, uses_model=True, originals=(("vmio_edu.qemu.kvm_all", "kvm_handle_io"),),
    captures=CAPTURES)
