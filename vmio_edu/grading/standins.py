"""Stand-ins handed to a student's function during a check: fake vCPUs, recording port functions, a
recording end-of-transfer function. They run inside the student's call (in the sandbox), so the sandbox's
watch allows this file; they compute no answer, they only record what the student's code did."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PORT_FUNCS = {("out", 1): "cpu_outb", ("out", 2): "cpu_outw", ("out", 4): "cpu_outl",
              ("in", 1): "cpu_inb", ("in", 2): "cpu_inw", ("in", 4): "cpu_inl"}


@dataclass
class FakeCPU:
    """What kvm_handle_io uses of CPUState: the vCPU mmap."""

    kvm_run_mem: memoryview
    cpu_index: int = 0


class PortRecorder:
    """cpu_in*/cpu_out* that record each call (name, port, value) and answer INs from a list."""

    def __init__(self, answers: list[int]):
        self.calls: list[list] = []
        self.answers = list(answers)

    def out(self, name: str):
        def recorded_port_out(port: int, val: int) -> None:
            self.calls.append([name, port, val])
        recorded_port_out.__name__ = name
        return recorded_port_out

    def inp(self, name: str):
        def recorded_port_in(port: int) -> int:
            self.calls.append([name, port, None])
            return self.answers.pop(0) if self.answers else 0
        recorded_port_in.__name__ = name
        return recorded_port_in

    def table(self) -> dict:
        return {name: self.out(name) if d == "out" else self.inp(name) for (d, _s), name in PORT_FUNCS.items()}


class EndRecorder:
    """Stands for a PIO window's end function. It records the state it is handed at the moment it is
    called (what the real ide_sector_write would read: data_ptr, the window's bytes), then closes the
    window as ide_sector_write does (ide_transfer_stop: data_ptr = data_end = 0, DRQ off; BSY set)."""

    def __init__(self, name: str, start: int = 0, size: int = 512):
        self.__name__ = name
        self.start, self.size = start, size
        self.calls: list[dict] = []

    def __call__(self, s: Any) -> None:
        self.calls.append({"data_ptr": s.data_ptr, "data_end": s.data_end,
                           "window": bytes(s.io_buffer[self.start:self.start + self.size])})
        s.data_ptr = 0
        s.data_end = 0
        s.status = 0xD0
