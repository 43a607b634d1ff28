WRONG = [
    ("forgets LBA bits 27:24", "lba", [(' | (regs["select"] & 0x0F) << 24', "")]),
    ("select mask keeps the drive bit", "lba", [('(regs["select"] & 0x0F) << 24', '(regs["select"] & 0x1F) << 24')]),
    ("select mask keeps bits 5 and 4", "lba", [('(regs["select"] & 0x0F) << 24', '(regs["select"] & 0x3F) << 24')]),
    ("LBA bits 27:24 shifted by 20", "lba", [('(regs["select"] & 0x0F) << 24', '(regs["select"] & 0x0F) << 20')]),
    ("nsector 0 is not 256", "requests", [('n = regs["nsector"] or 256', 'n = regs["nsector"]')]),
    ("one request for every sector", "requests", [("requests = [(lba + i, 1) for i in range(n)]",
                                                   "requests = [(lba, n)]")]),
    ("requests start one sector late", "requests", [("requests = [(lba + i, 1) for i in range(n)]",
                                                     "requests = [(lba + i + 1, 1) for i in range(n)]")]),
    ("pwrites in sectors", "pwrites", [("(sector_num * 512, nb * 512)", "(sector_num, nb)")]),
    ("only the first pwrite", "pwrites", [("for sector_num, nb in requests]", "for sector_num, nb in requests[:1]]")]),
]
