"""Where userspace can tell Linux 3.7, Linux 6.12 (Intel VMX) and this project's host (`kvm_pvm`) apart.

Each entry names one behaviour on the PIO path, what each kernel does, and where in the sources it comes
from (3.7: `vmio_edu/linux/`, 6.12: `vmio_edu/linux_6_12/`; kvm_pvm: measured on this project's machines, an AMD host
running 6.18, reference README §2 and `vmio_edu.kvm.host_facts`). The tests in
`tests/linux_6_12/test_kvm_pvm_vs_6_12.py` check every entry on the model and on the real device, on the
same guest code, under the entry's `name`.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Difference:
    name: str
    what: str
    linux_3_7: str
    linux_6_12: str
    kvm_pvm: str
    where_6_12: str

    @property
    def kvm_pvm_differs_from_6_12(self) -> bool:
        return self.kvm_pvm != self.linux_6_12


DIFFERENCES: tuple[Difference, ...] = (
    Difference(
        "out_rip", "RIP at the exit of a plain OUT (not a string instruction) that goes to userspace",
        linux_3_7="past the OUT (handle_io skips it, then kvm_fast_pio_out exits; vmx.c:4403)",
        linux_6_12="on the OUT; complete_fast_pio_out skips it on the next KVM_RUN",
        kvm_pvm="past the OUT",
        where_6_12="arch/x86/kvm/x86.c:9317-9340 (kvm_fast_pio_out), 9307-9315 (complete_fast_pio_out)"),
    Difference(
        "out_0x7e_rip", "RIP at the exit of OUT to port 0x7e",
        linux_3_7="past the OUT (as every OUT)",
        linux_6_12="past the OUT: KVM_X86_QUIRK_OUT_7E_INC_RIP, on by default, skips before the exit",
        kvm_pvm="past the OUT",
        where_6_12="arch/x86/kvm/x86.c:9330-9334"),
    Difference(
        "rep_ins_page_batch", "elements in one `rep ins` exit that starts mid-page (256 words at offset 0xf00)",
        linux_3_7="128 + 128: the room to the page end, divided by the size (emulate.c:1286-1296)",
        linux_6_12="256: the room in bytes used as an element count, so the batch runs past the page",
        kvm_pvm="256",
        where_6_12="arch/x86/kvm/emulate.c:1431-1440 (pio_in_emulated)"),
    Difference(
        "rep_ins_read_ahead", "elements in one `rep insw` exit from a page start (600 words)",
        linux_3_7="512 + 88: the 1024-byte read-ahead cache",
        linux_6_12="512 + 88: the same 1024-byte cache (kvm_emulate.h:274-278)",
        kvm_pvm="512 + 88",
        where_6_12="arch/x86/kvm/emulate.c:1438"),
    Difference(
        "in_pio_page", "the PIO data page at an IN exit",
        linux_3_7="left as it was (the last OUT's data stays visible)",
        linux_6_12="zeroed, size × count bytes",
        kvm_pvm="zeroed",
        where_6_12="arch/x86/kvm/x86.c:8169-8170 (emulator_pio_in_out)"),
    Difference(
        "rep_string_rf", "RFLAGS.RF at the exits of an unfinished `rep outs`",
        linux_3_7="0",
        linux_6_12="1: the emulator runs REP string instructions with RF set until they complete",
        kvm_pvm="1",
        where_6_12="arch/x86/kvm/emulate.c:5247-5250, 5381"),
)
BY_NAME = {d.name: d for d in DIFFERENCES}
