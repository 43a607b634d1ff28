"""exit_qual: the decoder, and hidden exits (fixed edge cases, then random ones)."""
from vmio_edu.grading.exit_qual import encode, instruction_text, random_case

BODY = '''    return {
        "size": (q & 7) + 1,
        "direction": "in" if q & 8 else "out",
        "string": bool(q & 16),
        "rep": bool(q & 32),
        "operand": "imm8" if q & 64 else "dx",
        "port": (q >> 16) & 0xFFFF,
    }
'''


def hidden(r, params: dict) -> list:
    edge = [dict(size=4, direction="in", string=False, rep=False, operand="dx", port=0xFFFF),
            dict(size=1, direction="out", string=False, rep=False, operand="imm8", port=0x80),
            dict(size=2, direction="out", string=True, rep=True, operand="dx", port=0x1F0),
            dict(size=2, direction="in", string=True, rep=True, operand="dx", port=0x1F0),
            dict(size=1, direction="out", string=True, rep=False, operand="dx", port=0),
            dict(size=4, direction="out", string=True, rep=False, operand="dx", port=0x8000 | r.randrange(0x8000)),
            dict(size=1, direction="in", string=False, rep=False, operand="imm8", port=0xFF)]
    for f in edge:
        f["q"] = encode(f["size"], f["direction"], f["string"], f["rep"], f["operand"] == "imm8", f["port"])
        f["insn"] = instruction_text(f)
    return edge + [random_case(r) for _ in range(30)]
