WRONG = [
    ("rep outs: RCX before the element", "rcx", [("rcx -= 1\n            exits.append((1, rcx))",
                                                 "exits.append((1, rcx))\n            rcx -= 1")]),
    ("rep ins ignores the page boundary", "counts", [("min(in_page, 1024)", "1024")]),
    ("rep ins ignores the 1024-byte read-ahead", "counts", [("min(in_page, 1024)", "in_page")]),
    ("rep ins one element per exit", "counts", [("n = max(1, min(min(in_page, 1024) // size, rcx))", "n = 1")]),
    ("rep ins: RCX after the batch", "rcx", [("exits.append((n, rcx))\n            rdi += n * size\n"
                                              "            rcx -= n",
                                              "rdi += n * size\n            rcx -= n\n"
                                              "            exits.append((n, rcx))")]),
    ("every element is a word", "counts", [('size = {"b": 1, "w": 2, "d": 4}.get(insn[-1], 2)', "size = 2")]),
    ("RCX = 0 still exits once", "exits", [("    exits = []\n", "    exits = [] if rcx else [(1, 0)]\n")]),
    ("RDI does not move between batches", "counts", [("rdi += n * size", "pass")]),
    ("page offset from the element index", "counts", [("in_page = 4096 - rdi % 4096", "in_page = 4096")]),
    ("string without REP treated as REP", "exits", [('if not insn.startswith("rep "):', 'if "s" not in insn[1:]:')]),
]
