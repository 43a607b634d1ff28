WRONG = [
    ("ignores count (one element per exit)", "in", [("for _ in range(count):", "for _ in range(min(count, 1)):")]),
    ("OUT data big-endian", "out", [('value = int.from_bytes(cpu.kvm_run_mem[ptr:ptr + size], "little")',
                                     'value = int.from_bytes(cpu.kvm_run_mem[ptr:ptr + size], "big")')]),
    ("IN results not stored", "in", [('cpu.kvm_run_mem[ptr:ptr + size] = value.to_bytes(size, "little")', "pass")]),
    ("pointer not moved", "in", [("ptr += size", "pass")]),
    ("stride of two bytes", "out", [("ptr += size", "ptr += 2")]),
    ("count taken as bytes", "out", [("for _ in range(count):", "for _ in range(count * size):")]),
    ("every access a word", "out", [("{1: cpu_outb, 2: cpu_outw, 4: cpu_outl}[size](port, value)",
                                     "cpu_outw(port, value & 0xFFFF)")]),
    ("direction inverted", "out", [("if direction == KVM_EXIT_IO_IN:", "if direction == KVM_EXIT_IO_OUT:")]),
]
