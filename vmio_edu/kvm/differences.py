"""Where userspace can tell Linux 3.7, Linux 6.12 (Intel VMX) and this project's host (`kvm_pvm`) apart.

Each entry is one measured fact on the PIO path: a tiny guest (`probe`) that shows it, a function that
reduces the exits the guest took to a value (`observe`: "at"/"past" for where RIP is, a tuple of batch
counts, ...), and the value each kernel gives:

* `linux_3_7`, `linux_6_12`: what the models give (vmio_edu/linux/, vmio_edu/linux_6_12/), each backed by
  the real lines (`why_3_7`, `why_6_12`, `where_6_12`);
* `kvm_pvm`: what this project's machines' /dev/kvm gives (kvm_pvm on an AMD host running 6.18; reference
  README §2 and `vmio_edu.kvm.host_facts`).

The values are compared, never the prose: `kvm_pvm_differs_from_6_12` is `kvm_pvm != linux_6_12`, and
`measure(kernel)` runs the probe again on "linux-3.7", "linux-6.12" or "host" (`vmio_edu.kvm.probe`).
`tests/linux_6_12/test_kvm_pvm_vs_6_12.py` measures every entry on every kernel and checks the table, under
the entry's `name`. The only difference between kvm_pvm and 6.12 VMX found so far is `out_rip`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Union

from ..guest import assemble
from ..linux.include.uapi.linux import kvm as K
from .probe import CODE, DONE, KERNELS, Probe, ProbeExit, run_probe

Value = Union[str, tuple]  # a fact's value: a word ("at", "past", "zeroed", ...) or a tuple of numbers
END = f"mov dx, {DONE:#x}; out dx, al"
RF = 1 << 16  # RFLAGS.RF


@dataclass(frozen=True)
class Fact:
    """A probe and how its exits reduce to a value. `before` + `insn` + `after` is the guest; `insn` is the
    instruction whose exit is looked at (its address: `at`, its length: `length`)."""

    before: str
    insn: str
    after: str
    observe: Callable[["Fact", list[ProbeExit]], Value]

    @property
    def probe(self) -> Probe:
        return Probe(f"{self.before} {self.insn}; {self.after}; {END}")

    @property
    def at(self) -> int:
        return CODE + len(assemble(self.before, mode=16, base=CODE))

    @property
    def length(self) -> int:
        return CODE + len(assemble(f"{self.before} {self.insn}", mode=16, base=CODE)) - self.at


@dataclass(frozen=True)
class Difference:
    """One userspace-visible behaviour, and its value on each kernel (see the module doc)."""

    name: str
    what: str  # the behaviour, and what the value means
    fact: Fact
    linux_3_7: Value
    linux_6_12: Value
    kvm_pvm: Value
    why_3_7: str
    why_6_12: str
    where_6_12: str

    @property
    def kvm_pvm_differs_from_6_12(self) -> bool:
        return self.kvm_pvm != self.linux_6_12

    @property
    def linux_3_7_differs_from_6_12(self) -> bool:
        return self.linux_3_7 != self.linux_6_12

    def expected(self, kernel: str) -> Value:
        """The table's value for `kernel` ("linux-3.7", "linux-6.12" or "host": kvm_pvm)."""
        return {"linux-3.7": self.linux_3_7, "linux-6.12": self.linux_6_12, "host": self.kvm_pvm}[kernel]

    def measure(self, kernel: str) -> Value:
        """Run the probe on `kernel` and reduce its exits to the value."""
        return self.fact.observe(self.fact, run_probe(self.fact.probe, kernel))

    def to_json(self) -> dict:
        def js(v: Value):
            return list(v) if isinstance(v, tuple) else v
        return {"name": self.name, "what": self.what, "linux_3_7": js(self.linux_3_7),
                "linux_6_12": js(self.linux_6_12), "kvm_pvm": js(self.kvm_pvm),
                "kvm_pvm_differs_from_6_12": self.kvm_pvm_differs_from_6_12,
                "why_3_7": self.why_3_7, "why_6_12": self.why_6_12, "where_6_12": self.where_6_12}


# -- reducing a probe's exits to a value ---------------------------------------------------------------------
def _io(exits: list[ProbeExit], port: int, out: bool | None = None) -> list[ProbeExit]:
    return [x for x in exits if x.reason == K.KVM_EXIT_IO and x.port == port and (out is None or x.is_out == out)]


def rip_place(fact: Fact, exits: list[ProbeExit], port: int) -> str:
    """Where RIP is at the first exit on `port`: "at" the instruction, "past" it, or the address."""
    rip = _io(exits, port)[0].rip
    return "at" if rip == fact.at else "past" if rip == fact.at + fact.length else f"{rip:#x}"


def in_counts(port: int) -> Callable[[Fact, list[ProbeExit]], tuple]:
    """The element count of each IN exit on `port`: a rep ins's batches."""
    return lambda fact, exits: tuple(x.count for x in _io(exits, port, out=False))


def pio_page_at_in(fact: Fact, exits: list[ProbeExit]) -> str:
    """The PIO data page at the first IN exit on port 0x300: "zeroed", "kept" (the OUT's data), or hex."""
    out, inn = _io(exits, 0x300, out=True)[0], _io(exits, 0x300, out=False)[0]
    if inn.pio == bytes(len(inn.pio)):
        return "zeroed"
    return "kept" if inn.pio == out.pio[:len(inn.pio)] else inn.pio.hex()


def rf_bits(fact: Fact, exits: list[ProbeExit]) -> tuple:
    """RFLAGS.RF (0 or 1) at each exit of the `rep outsw` to 0x1f0."""
    return tuple(int(bool(x.rflags & RF)) for x in _io(exits, 0x1F0, out=True))


# -- the table ---------------------------------------------------------------------------------------------------
DIFFERENCES: tuple[Difference, ...] = (
    Difference(
        "out_rip", "RIP at the exit of a plain OUT (not a string instruction) that goes to userspace: "
                   "\"at\" the OUT or \"past\" it",
        Fact("mov dx, 0x1f0; mov al, 0x5a;", "out dx, al", "nop", lambda f, x: rip_place(f, x, 0x1F0)),
        linux_3_7="past", linux_6_12="at", kvm_pvm="past",
        why_3_7="handle_io skips the OUT, then kvm_fast_pio_out exits (vmx.c:4403)",
        why_6_12="kvm_fast_pio leaves RIP; complete_fast_pio_out skips the OUT on the next KVM_RUN",
        where_6_12="arch/x86/kvm/x86.c:9317-9340 (kvm_fast_pio_out), 9307-9315 (complete_fast_pio_out)"),
    Difference(
        "out_0x7e_rip", "RIP at the exit of OUT to port 0x7e: \"at\" the OUT or \"past\" it",
        Fact("mov al, 1;", "out 0x7e, al", "nop", lambda f, x: rip_place(f, x, 0x7E)),
        linux_3_7="past", linux_6_12="past", kvm_pvm="past",
        why_3_7="as every OUT",
        why_6_12="KVM_X86_QUIRK_OUT_7E_INC_RIP, on by default, skips the OUT before the exit",
        where_6_12="arch/x86/kvm/x86.c:9330-9334"),
    Difference(
        "rep_ins_page_batch", "the element counts of the exits of a `rep insw` of 256 words starting mid-page "
                              "(offset 0xf00)",
        Fact("cld; mov dx, 0x300; mov cx, 0x100; mov di, 0x4f00;", "rep insw", "nop", in_counts(0x300)),
        linux_3_7=(128, 128), linux_6_12=(256,), kvm_pvm=(256,),
        why_3_7="the room to the page end divided by the size: a batch stops at the page (emulate.c:1286-1296)",
        why_6_12="the room to the page end in bytes is used as an element count, so the batch runs past it",
        where_6_12="arch/x86/kvm/emulate.c:1431-1440 (pio_in_emulated)"),
    Difference(
        "rep_ins_read_ahead", "the element counts of the exits of a `rep insw` of 600 words from a page start",
        Fact("cld; mov dx, 0x300; mov cx, 0x258; mov di, 0x3000;", "rep insw", "nop", in_counts(0x300)),
        linux_3_7=(512, 88), linux_6_12=(512, 88), kvm_pvm=(512, 88),
        why_3_7="the 1024-byte read-ahead cache",
        why_6_12="the same 1024-byte cache (kvm_emulate.h:274-278)",
        where_6_12="arch/x86/kvm/emulate.c:1438"),
    Difference(
        "in_pio_page", "the PIO data page at an IN exit that follows an OUT: \"kept\" (the OUT's data) or "
                       "\"zeroed\"",
        Fact("mov dx, 0x300; mov eax, 0x11223344; out dx, eax;", "in eax, dx", "nop", pio_page_at_in),
        linux_3_7="kept", linux_6_12="zeroed", kvm_pvm="zeroed",
        why_3_7="left as it was",
        why_6_12="emulator_pio_in_out zeroes size × count bytes before the exit",
        where_6_12="arch/x86/kvm/x86.c:8169-8170 (emulator_pio_in_out)"),
    Difference(
        "rep_string_rf", "RFLAGS.RF (1 set, 0 clear) at each exit of a `rep outsw` of 3 words",
        Fact("cld; mov dx, 0x1f0; mov cx, 3; mov si, 0;", "rep outsw", "nop", rf_bits),
        linux_3_7=(0, 0, 0), linux_6_12=(1, 1, 1), kvm_pvm=(1, 1, 1),
        why_3_7="RF is left clear",
        why_6_12="the emulator runs REP string instructions with RF set until they complete",
        where_6_12="arch/x86/kvm/emulate.c:5247-5250, 5381"),
)
BY_NAME = {d.name: d for d in DIFFERENCES}

__all__ = ["BY_NAME", "CODE", "DIFFERENCES", "Difference", "Fact", "KERNELS", "Value"]
