"""pio_exits: the Linux 3.7 emulator's exit rule, stepped element by element (the oracle), and hidden
transfers: RCX 0, page-end batches, unaligned buffers, multi-element OUTS, the 1024-byte read-ahead."""
from vmio_edu.grading.pio_exits import INSNS, PAGE, READ_AHEAD, element_size, random_case

BODY = '''    size = {"b": 1, "w": 2, "d": 4}.get(insn[-1], 2)
    if not insn.startswith("rep "):
        return [(1, rcx)]
    exits = []
    while rcx > 0:
        if "outs" in insn:
            rcx -= 1
            exits.append((1, rcx))
        else:
            in_page = 4096 - rdi % 4096
            n = max(1, min(min(in_page, 1024) // size, rcx))
            exits.append((n, rcx))
            rdi += n * size
            rcx -= n
    return exits
'''


def oracle(insn: str, rcx: int, rdi: int) -> list[tuple[int, int]]:
    """Step the Linux 3.7 emulator one guest-visible element at a time and record every userspace exit."""
    if insn not in INSNS:
        raise ValueError(f"unknown instruction {insn!r}")
    if not insn.startswith("rep "):
        return [(1, rcx)]  # a single element: one exit, no register moves before it
    size = element_size(insn)
    exits: list[tuple[int, int]] = []
    cache_left = 0  # elements still in the read-ahead cache
    while rcx > 0:
        if "outs" in insn:
            rcx -= 1  # committed before the exit, then EMULATION_RESTART
            exits.append((1, rcx))
            continue
        if cache_left == 0:
            in_page = PAGE - (rdi % PAGE)
            n = max(1, min(min(in_page, READ_AHEAD) // size, rcx))
            exits.append((n, rcx))
            cache_left = n
        rdi += size
        rcx -= 1
        cache_left -= 1
    return exits


def complete(params: dict) -> dict:
    for c in params["cases"]:
        c["exits"] = [list(e) for e in oracle(c["insn"], c["rcx"], c["rdi"])]
    return params


def hidden(r, params: dict) -> list:
    base = r.choice((0x10000, 0x7000, 0x200000))
    cases = [{"insn": "rep insw", "rcx": 0, "rdi": base}, {"insn": "rep outsw", "rcx": 0, "rdi": base},
             {"insn": "rep insw", "rcx": 256, "rdi": base + 0xF00}, {"insn": "rep insw", "rcx": 600, "rdi": base},
             {"insn": "rep insd", "rcx": 7, "rdi": base}, {"insn": "rep insw", "rcx": 3, "rdi": base + 0xFFF},
             {"insn": "rep insb", "rcx": 3000, "rdi": base + 0x10}, {"insn": "rep insw", "rcx": 512, "rdi": base + 0xC00},
             {"insn": "in", "rcx": 5, "rdi": 0}, {"insn": "rep outsd", "rcx": 3, "rdi": base + 0xFFE},
             {"insn": "rep outsb", "rcx": r.randrange(2, 9), "rdi": base + 1},
             {"insn": "rep insw", "rcx": r.randrange(513, 2000), "rdi": base + 2 * r.randrange(1, 2000)},
             {"insn": "rep insd", "rcx": r.randrange(300, 900), "rdi": base + 4 * r.randrange(1, 1000) + 2},
             {"insn": "out", "rcx": r.randrange(1, 50), "rdi": base},
             {"insn": "insw", "rcx": r.randrange(2, 50), "rdi": base + 0xFFE}]
    cases += [random_case(r) for _ in range(25)]
    for c in cases:
        c["exits"] = [list(e) for e in oracle(c["insn"], c["rcx"], c["rdi"])]
    return cases
