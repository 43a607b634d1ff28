WRONG = [
    ("size off by one", "size", [('"size": (q & 7) + 1', '"size": q & 7')]),
    ("size as a power of two", "size", [('"size": (q & 7) + 1', '"size": 1 << (q & 7)')]),
    ("direction bit inverted", "direction", [('"in" if q & 8 else "out"', '"out" if q & 8 else "in"')]),
    ("REP read from the string bit", "string_rep", [('"rep": bool(q & 32)', '"rep": bool(q & 16)')]),
    ("string read from the REP bit", "string_rep", [('"string": bool(q & 16)', '"string": bool(q & 32)')]),
    ("port shifted by 15", "port", [("(q >> 16) & 0xFFFF", "(q >> 15) & 0xFFFF")]),
    ("port as one byte", "port", [("(q >> 16) & 0xFFFF", "(q >> 16) & 0xFF")]),
    ("port signed 16 bits", "port", [("(q >> 16) & 0xFFFF", "((q >> 16) & 0xFFFF) - (q >> 31 << 16)")]),
    ("operand bit wrong", "port", [('"imm8" if q & 64', '"imm8" if q & 128')]),
    ("every string instruction has REP", "string_rep", [('"rep": bool(q & 32)', '"rep": bool(q & 16)')]),
]
