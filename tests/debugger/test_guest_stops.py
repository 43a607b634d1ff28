"""Guest stops: breakpoints on guest instructions (by label or address) and stepi, on both engines; a guest
stop is a proper Stop and time travel (and its reference) comes back to it."""
import errno

import pytest

from vmio_edu import Machine  # noqa: F401 - references name it
from vmio_edu.errors import VmioError
from vmio_edu.guest.programs import BUFFER_ADDR, default_guest
from vmio_edu.guest.symbols import symbols

SYMS = symbols(default_guest())
SOURCE = default_guest().source.split("\n")
OUTSW = SYMS.labels["ata_pio_outsw"]
AFTER_OUTSW = [a for a, _ in SYMS.lines if a > OUTSW][:2]  # the `inc` and the `ret` after it


def _line(stop):
    return SOURCE[stop.backtrace[0].line - 1].strip()


def test_break_at_a_guest_label(make, engine):
    m, dbg = make(op="write", lba=3, sectors=2)
    bp = dbg.break_at(guest_label="ata_pio_outsw")
    assert bp.addr == OUTSW and bp in dbg.breakpoints
    stop = dbg.cont()
    assert (stop.reason, stop.kind, stop.layer, stop.function) == ("breakpoint", "guest", "guest", "ata_pio_outsw")
    assert stop.breakpoint is bp and bp.hits == 1
    g = stop.guest
    assert g["rip"] == OUTSW and g["insn"].startswith("rep outsw")
    assert g["regs"]["rcx"] == 256 and g["regs"]["rsi"] == BUFFER_ADDR  # nothing sent yet
    # the backtrace: the guest frame on top of the vCPU thread's frames
    top = stop.backtrace[0]
    assert top.layer == "guest" and top.file.endswith("default_guest.s") and _line(stop) == "rep outsw"
    host = [f.function for f in stop.backtrace[1:]]
    assert ("vmx_vcpu_run" if engine == "unicorn" else "kvm_vcpu_ioctl") == host[0]
    assert host[-1] == "qemu_kvm_cpu_thread_fn" and [f.level for f in stop.backtrace] == \
        list(range(len(stop.backtrace)))
    # the views work at a guest stop: the device has its write window open, nothing written yet
    ide = stop.views["ide"]
    assert ide is not None and stop.to_json(views=["ide", "kvm_run"])["views"]
    assert m.exits[-1].port == 0x1F7  # the last exit was the WRITE SECTORS command
    assert stop.index == len(dbg.trace.events) - 1


def test_guest_addr_and_bad_input(make):
    m, dbg = make(op="write")
    bp = dbg.break_at(guest_addr=OUTSW)
    assert bp.label == "ata_pio_outsw"
    with pytest.raises(VmioError, match="no label 'ata_pio_outs'.*did you mean ata_pio_outsw"):
        dbg.break_at(guest_label="ata_pio_outs")
    with pytest.raises(VmioError, match="one of guest_label"):
        dbg._guest.break_at(None, None)
    with pytest.raises(VmioError, match="alone"):
        dbg.break_at("ide_sector_write", guest_addr=OUTSW)
    with pytest.raises(VmioError, match="non-negative int"):
        dbg.break_at(guest_addr=-5)
    dbg.delete(bp)
    assert dbg.cont().reason == "halted"


def test_raw_code_guest_has_no_labels(engine):
    with Machine(b"\xf4", mode=64, engine=engine) as m:
        with pytest.raises(VmioError, match="raw machine code.*guest_addr"):
            m.debugger().break_at(guest_label="start")


def test_stepi_follows_the_guest_code(make, engine):
    m, dbg = make(op="write", lba=1, sectors=1)
    inc, ret = AFTER_OUTSW
    dbg.break_at(guest_addr=inc)
    s = dbg.cont()
    assert s.guest["rip"] == inc and _line(s).startswith("inc")
    s = dbg.stepi()
    assert (s.reason, s.kind, s.guest["rip"]) == ("stepi", "guest", ret) and _line(s) == "ret"
    s = dbg.stepi()  # back in the caller, after its call
    assert s.function.startswith("ata_pio_write") and s.guest["rip"] not in (inc, ret)


def test_stepi_from_a_trace_point_enters_the_guest(make):
    m, dbg = make(op="write")
    dbg.break_at("ide_sector_write")
    t = dbg.cont()
    resume_at = t.views["registers"]["regs"]["rip"]  # where the guest goes on after this exit
    s = dbg.stepi()
    assert s.kind == "guest" and s.index > t.index and s.layer == "guest"
    assert s.guest["rip"] == resume_at == OUTSW  # (the rep outsw, for its next word)
    assert s.guest["label"] and s.backtrace[0].layer == "guest"


def test_time_travel_and_reference_land_on_a_guest_stop(make):
    m, dbg = make(op="write", lba=2, sectors=1)
    dbg.break_at(guest_addr=AFTER_OUTSW[0])
    stop = dbg.cont()
    step = dbg.stepi()
    assert dbg.cont().reason == "halted"
    again = dbg.goto(step.index, guest=step.guest["position"])
    assert (again.index, again.kind, again.guest["rip"], again.guest["regs"]) == \
        (step.index, "guest", step.guest["rip"], step.guest["regs"])
    assert [f.to_json() for f in again.backtrace] == [f.to_json() for f in step.backtrace]
    back = dbg.goto(stop.index, guest=stop.guest["position"])
    assert back.guest["rip"] == stop.guest["rip"] and back.guest["regs"] == stop.guest["regs"]
    # the reference reaches it in a fresh machine
    ref = step.reference
    rip, hit, steps = step.guest["position"]
    assert ref.endswith(f".goto({step.index}, guest=({rip:#x}, {hit}, {steps}))")
    machine_src, rest = ref.split(".debugger()")
    other_m = eval(machine_src)
    try:
        other = eval("other_m.debugger()" + rest)
        assert (other.index, other.kind, other.function, other.thread) == \
            (step.index, "guest", step.function, step.thread)
        assert [f.to_json() for f in other.backtrace] == [f.to_json() for f in step.backtrace]
        assert other.guest["regs"] == step.guest["regs"]
    finally:
        other_m.close()
    with pytest.raises(VmioError, match="did not reach"):
        dbg.goto(stop.index, guest=(0x9999, 1, 0))


def test_guest_breakpoints_do_not_change_the_trace(make):
    m, dbg = make(op="write", lba=4, sectors=2)
    dbg.break_at(guest_label="ata_pio_outsw")
    stops = 0
    while dbg.cont().reason != "halted":
        stops += 1
    assert stops >= 2  # (per sector on real KVM; per VM entry into the rep on the emulated engine)
    with_bp = [e[:4] for e in dbg.events]
    with Machine(op="write", lba=4, sectors=2, engine=m.engine) as plain:
        pd = plain.debugger()  # (the debugger keeps real KVM's kicks in the engine: compare like with like)
        assert pd.cont().reason == "halted"
        assert [e[:4] for e in pd.events] == with_bp
        assert [x.key() for x in plain.exits] == [x.key() for x in m.exits]


@pytest.mark.kvm
def test_real_kvm_without_guest_debug_says_so(need_kvm, monkeypatch):
    from vmio_edu.trace import guest_stops as GS
    with Machine(op="write", engine="kvm") as m:
        dbg = m.debugger()
        vcpu = m.cpu.kvm_fd
        real = vcpu.ioctl

        def refuse(request, arg=0):
            if request == GS.KVM_SET_GUEST_DEBUG:
                raise OSError(errno.EINVAL, "Invalid argument")
            return real(request, arg)
        monkeypatch.setattr(vcpu, "ioctl", refuse)
        with pytest.raises(VmioError, match="refused KVM_SET_GUEST_DEBUG.*emulated engine"):
            dbg.break_at(guest_label="ata_pio_outsw")
        with pytest.raises(VmioError, match="refused KVM_SET_GUEST_DEBUG"):
            dbg.stepi()
        # trace-point debugging, and time travel (a fresh machine's debugger arms nothing), go on working
        dbg.clear()
        dbg.break_at("ide_sector_write")
        assert dbg.cont().function == "ide_sector_write"
        assert dbg.goto(5).index == 5


@pytest.mark.kvm
def test_real_kvm_has_four_hardware_breakpoints(need_kvm):
    with Machine(op="write", engine="kvm") as m:
        dbg = m.debugger()
        for a in list(SYMS.labels.values())[:4]:
            dbg.break_at(guest_addr=a)
        with pytest.raises(VmioError, match="at most 4 guest breakpoints"):
            dbg.break_at(guest_addr=OUTSW)


def test_registers_view_at_a_guest_stop_is_live(make):
    m, dbg = make(op="write", lba=1, sectors=2)
    dbg.break_at(guest_label="ata_pio_outsw")
    first = dbg.cont()
    s = dbg.cont()  # the second word (emulated engine) or sector (real KVM): RSI has moved on
    assert s.kind == "guest" and s.guest["regs"]["rsi"] > first.guest["regs"]["rsi"]
    regs = s.views["registers"]["regs"]
    assert regs["rip"] == OUTSW and regs["rcx"] == s.guest["regs"]["rcx"]
    assert regs["rsi"] == s.guest["regs"]["rsi"]
    dis = s.views["registers"]["disassembly"]
    cur = [r for r in dis["rows"] if r["current"]]
    assert len(cur) == 1 and cur[0]["address"] == OUTSW and cur[0]["mnemonic"].startswith("rep")
