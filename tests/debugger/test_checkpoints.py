"""Checkpoints (vmio_edu.trace.checkpoint): back()/goto() restore a saved state into the live machine and
replay from there, on the emulated engine and on real KVM (there the kernel's part of the state goes
through vmio_edu.kvm.state). The state reached that way must equal the state reached going forwards, everywhere:
at quiescent points and between them, inside a coroutine, with a pool request in flight, at the halt; the
run must go on exactly as recorded; and the disk image must be what the writes up to there made it."""
import os

import pytest

from vmio_edu import Machine
from vmio_edu.trace import checkpoint as CP
from vmio_edu.trace.recorder import ENTER, LEAVE, POINT
from vmio_edu.trace.tracepoint import REGISTRY

EVERY = 400  # events between checkpoints (small, so that short runs have many)
# Real KVM: the same run records fewer events after the last write (each exit is one KVM_RUN event, not
# the emulated kernel's stages), so checkpoints are denser to have some after it.
EVERY_KVM = 150


def _first(dbg, kind, name, after=0):
    return next(i for i, e in enumerate(dbg.events) if i >= after and e[0] == kind and e[0] != POINT
                and REGISTRY[e[1]].name == name)


def _middle(m, dbg, cps):
    """A checkpoint in the middle of the run. On real KVM the first half of the run comes before the first
    write made the pool worker (its checkpoints have another signature): the middle of those after it."""
    if m.engine == "kvm":
        cps = [c for c in cps if c > _first(dbg, LEAVE, "bdrv_co_do_rw")]
    return cps[len(cps) // 2]


def _prev_step(dbg, i):
    """The index back() goes to from i: the previous entry or exit."""
    j = i - 1
    while j >= 0 and dbg.events[j][0] == POINT:
        j -= 1
    return max(j, -1)


@pytest.fixture(params=["unicorn", pytest.param("kvm", marks=pytest.mark.kvm)])
def run(request):
    """A 2-sector write under a debugger with dense checkpoints, run once to learn its trace, then put
    back at the start (a fresh machine: its checkpoints are made again on the way forwards)."""
    made = []
    engine = request.param
    if engine == "kvm":
        request.getfixturevalue("need_kvm")

    def _run(**kw):
        kw = {"op": "write", "lba": 3, "sectors": 2, **kw}
        m = Machine(engine=engine, **kw)
        made.append(m)
        dbg = m.debugger()
        dbg.checkpoint_every = EVERY_KVM if engine == "kvm" else EVERY
        end = dbg.cont()
        assert end.reason == "halted" and dbg._checkpoints, "no checkpoint was made on the way"
        cps = list(dbg._cp_index)  # where they fall (the same indices on every run: it is deterministic)
        dbg.goto(-1)
        assert dbg.last_restore == -1 and not dbg._checkpoints  # the old machine's checkpoints went with it
        return m, dbg, cps

    yield _run
    for m in made:
        m.close()


def _forward(dbg, indices):
    """The digest at each index, reached going forwards only (never a replay)."""
    out = {}
    for i in sorted(set(indices)):
        assert i > dbg.stop.index
        s = dbg.goto(i)
        assert s.index == i and dbg.last_restore is None  # ran on, no restore
        out[i] = dbg.state_digest()
    return out


def _check(dbg, stop, i, forward):
    assert stop.index == i and stop.message is None
    assert dbg.last_restore is not None and 0 <= dbg.last_restore <= i, \
        f"goto({i}) did not use a checkpoint (last_restore={dbg.last_restore})"
    got = dbg.state_digest()
    bad = [k for k in got if got[k] != forward[i][k]]
    assert not bad, f"state at {i} differs after a restore from {dbg.last_restore}: {bad}"
    ev = dbg.events[i]
    assert (stop.thread, stop.depth) == (ev[2], ev[3])


def test_restored_states_equal_forward_states(run):
    m, dbg, cps = run()
    n = len(dbg.events)
    # Checkpoints made before the first write have no pool worker: they cannot be restored into a machine
    # that has one (other signature), so points before it are replayed from the start.
    first = _first(dbg, ENTER, "paio_submit")
    early = first // 2
    lo = next(c for c in cps if c > _first(dbg, LEAVE, "bdrv_co_do_rw"))
    w = _first(dbg, ENTER, "paio_submit", first + 1)  # the second sector's write
    picks = {lo + (n - lo) * k // 6 for k in range(0, 5)} | {
        w,  # the coroutine is alive, yielded
        _first(dbg, ENTER, "qemu_coroutine_yield", w),  # inside the coroutine
        _first(dbg, ENTER, "aio_worker", w),  # a pool request in flight
        _first(dbg, LEAVE, "sys_pwrite64", w),  # just after the bytes reached the image
        _first(dbg, LEAVE, "bdrv_co_do_rw", w),  # the coroutine finishing on the main loop
        _first(dbg, ENTER, "ide_sector_write", first + 1),  # the second sector's PIO is done
    }
    forward = _forward(dbg, picks | {early})
    assert len(cps) > 10 and cps[-1] > max(picks)
    dbg.goto(cps[-1])  # (not the halt: after it no quiescent point comes, so back from there is a replay)
    for i in sorted(picks, reverse=True):
        _check(dbg, dbg.goto(i), i, forward)
    assert set(cps) <= set(dbg._cp_index)  # replays find the same quiescent points and keep them
    assert dbg.goto(early).index == early and dbg.last_restore == -1
    assert dbg.state_digest() == forward[early]


def test_checkpoint_boundaries_and_quiescent_points(run):
    m, dbg, cps = run()
    k = _middle(m, dbg, cps)
    picks = [k - 2, k - 1, k, k + 1, k + 5]  # (goto reaches point events too)
    forward = _forward(dbg, picks + [k + 300])
    for i in sorted(picks, reverse=True):  # from k + 300
        s = dbg.goto(i)
        _check(dbg, s, i, forward)
        assert (dbg.last_restore == k) == (i >= k)
    # the checkpoint's own index is a quiescent point: the vCPU entering KVM_RUN, nothing in flight
    dbg.goto(k)
    assert dbg.stop.function == "kvm_vcpu_ioctl" and dbg.stop.kind == "enter"
    assert CP.quiescent(m) is None


def test_run_goes_on_as_recorded_after_a_restore(run):
    m, dbg, cps = run()
    n = len(dbg.events)
    end = dbg.cont()
    final = dbg.state_digest()
    exits = [x.key() for x in m.exits]
    with open(m.image_path, "rb") as f:
        image = f.read()
    # back from the halt: no quiescent point after it, so a fresh machine replays (and makes checkpoints)
    dbg.goto(n // 3)
    assert dbg.last_restore == -1
    dbg.goto(cps[-2])
    s = dbg.goto(cps[-4] + 7)  # now a checkpoint is used
    assert dbg.last_restore == cps[-4]
    assert s.index == cps[-4] + 7
    again = dbg.cont()
    assert again.reason == "halted" and again.index == end.index
    assert dbg._diverged_at is None
    assert [x.key() for x in m.exits] == exits
    assert dbg.state_digest() == final
    with open(m.image_path, "rb") as f:
        assert f.read() == image


def test_halt_reached_by_jumping_to_a_later_checkpoint(run):
    m, dbg, cps = run(sectors=4)
    n = len(dbg.events)
    forward = _forward(dbg, [n - 3])
    assert dbg.goto(n).reason == "halted"
    halted_digest = dbg.state_digest()
    t = n // 3
    dbg.goto(t)  # from the halt: the vCPU is kicked out of it to a KVM_RUN entry, then a checkpoint
    assert 0 < dbg.last_restore <= t
    assert len(dbg.events) == n and dbg._complete  # the kick's events are not part of the run
    s = dbg.goto(n - 3)  # far ahead: restore a later checkpoint instead of running all the way
    _check(dbg, s, n - 3, forward)
    assert dbg.last_restore > t
    assert dbg.goto(n).reason == "halted"
    assert dbg.state_digest() == halted_digest
    assert dbg._diverged_at is None


def test_back_from_the_halt_uses_checkpoints(run):
    """The guest halted for good: back() kicks the vCPU out of its halt (as QEMU's qemu_cpu_kick does)
    to reach a KVM_RUN entry, restores a checkpoint and replays; it does not rebuild the run from the
    start. Going back step by step through the final halt, each state equals the one reached forwards."""
    m, dbg, cps = run()
    n = len(dbg.events)
    forward = _forward(dbg, range(n - 12, n))
    assert dbg.cont().reason == "halted"
    halted_digest = dbg.state_digest()
    exits = [x.to_json() for x in m.exits]
    seen = 0
    while dbg.stop.index > n - 12:
        i = _prev_step(dbg, min(dbg.stop.index, n))
        s = dbg.back()
        if i < n - 12:
            break
        _check(dbg, s, i, forward)
        assert dbg.last_restore >= cps[0]
        seen += 1
    assert seen >= 5
    assert len(dbg.events) == n and dbg._complete and dbg._diverged_at is None
    end = dbg.cont()
    assert (end.reason, end.index) == ("halted", n)
    assert dbg.state_digest() == halted_digest
    assert [x.to_json() for x in m.exits] == exits  # one final HLT record, as before


def test_back_many_times_across_a_checkpoint(run):
    m, dbg, cps = run()
    k = _middle(m, dbg, cps)
    start = k + 6
    while dbg.events[start][0] == POINT:
        start += 1
    want, i = [], start
    for _ in range(12):
        i = _prev_step(dbg, i)
        want.append(i)
    assert want[-1] < k < start  # the walk back crosses the checkpoint
    forward = _forward(dbg, want + [start])
    dbg.goto(start + 300)
    dbg.goto(start)
    used = set()
    for i in want:
        s = dbg.back()
        assert s.reason == "back"
        _check(dbg, s, i, forward)
        used.add(dbg.last_restore)
    assert k in used and len(used) >= 2  # the later steps came from the checkpoint before k


def test_restore_from_inside_a_coroutine_or_with_a_request_in_flight(run):
    m, dbg, cps = run()
    targets = []
    for kind, name in ((ENTER, "qemu_coroutine_yield"), (ENTER, "aio_worker"), (LEAVE, "sys_pwrite64")):
        at = _first(dbg, kind, name, _first(dbg, ENTER, "paio_submit", _first(dbg, ENTER, "paio_submit") + 1))
        targets.append((at, _prev_step(dbg, at)))
    forward = _forward(dbg, [t for pair in targets for t in pair])
    last = cps[-1]
    assert last > max(at for at, _ in targets)
    for at, before in targets:
        dbg.goto(last)
        dbg.goto(at)
        busy = CP.quiescent(m)
        assert busy is not None  # the live machine is stopped with something in flight
        assert not dbg._parked_quiescent()
        s = dbg.back()  # it runs on to a quiescent point first, then restores
        _check(dbg, s, before, forward)
        assert dbg._diverged_at is None


def test_image_after_going_back_across_completed_writes(run):
    m, dbg, cps = run(sectors=3)
    ev = dbg.events
    pristine = open(dbg._pristine, "rb").read()
    # every completed write: ENTER sys_pwrite64 has (fd, buf, count, pos); its LEAVE returns the count
    writes, pending = [], []
    for i, e in enumerate(ev):
        if e[0] != POINT and REGISTRY[e[1]].name == "sys_pwrite64":
            if e[0] == ENTER:
                pending.append(e[4])
            else:
                _fd, _buf, count, pos = pending.pop()
                writes.append((i, pos, count))
    assert len(writes) == 3
    lba = m.lba

    def expected(i):
        img = bytearray(pristine)
        for at, pos, count in writes:
            if at <= i:
                off = pos - lba * 512
                img[pos:pos + count] = m.pattern[off:off + count]
        return bytes(img)

    dbg.cont()
    dbg.goto(writes[-1][0] + 50)  # fresh machine: replays, makes checkpoints
    used = set()
    (w0, _, _), (w1, _, _), (w2, _, _) = writes
    for i in [w2 + 20, w2 - 1, w1 + 3, w1, w0 - 300, w2 + 40, w1 - 1, w2 + 60, w1 + 1]:
        s = dbg.goto(i)
        assert s.index == i
        used.add(dbg.last_restore)
        with open(m.image_path, "rb") as f:
            assert f.read() == expected(i), f"image wrong at {i} (restored from {dbg.last_restore})"
    assert len([u for u in used if u is not None and u >= 0]) >= 2  # restores, not only replays
    assert {w[0] for w in dbg._writes} <= {w[0] for w in writes}


def test_checkpoints_stay_small(run):
    m, dbg, cps = run(sectors=2)
    dbg.cont()
    cps = dbg._checkpoints
    assert len(cps) > 20
    ram = len(m.ram)
    # the first holds all of RAM; later ones share the pages that did not change
    assert cps[0].nbytes >= ram
    assert max(c.nbytes for c in cps[1:]) < ram // 4
    assert all(c.signature[0] for c in cps)


@pytest.mark.kvm
def test_real_engine_checkpoints_hold_the_kernel_state(need_kvm):
    """On real KVM a checkpoint holds the vCPU and in-kernel device state read through ioctls, taken with
    the last I/O exit finished; a restore writes it back, so the kernel's state equals the one saved."""
    from vmio_edu.kvm import state as KS

    with Machine(engine="kvm", op="write", lba=3) as m:
        dbg = m.debugger()
        dbg.checkpoint_every = EVERY
        dbg.cont()
        cps = list(dbg._cp_index)
        assert len(cps) > 10
        cp = dbg._checkpoints[len(cps) // 2]
        assert cp.kvm_vcpu is not None and cp.uc_context is None
        assert set(cp.kvm_vm.irqchip) == {0, 1, 2}  # both PIC halves and the IOAPIC
        dbg.goto(cp.index + 200)
        dbg.goto(cp.index)
        assert dbg.last_restore == cp.index and not m.cpu.kvm_fd.io_pending
        now = KS.save(m.cpu.kvm_fd)
        assert not [k for k in now.differences(cp.kvm_vcpu) if k != "msrs"]
        assert {k: v for k, v in now.msrs.items() if k != KS.MSR_IA32_TSC} == \
            {k: v for k, v in cp.kvm_vcpu.msrs.items() if k != KS.MSR_IA32_TSC}
        assert KS.save_vm(m.cpu.kvm_fd.vm).irqchip == cp.kvm_vm.irqchip
        assert dbg.cont().reason == "halted" and dbg._diverged_at is None
        assert os.path.exists(m.image_path)


@pytest.mark.kvm
def test_a_restore_the_kernel_refuses_falls_back_to_a_replay(need_kvm, monkeypatch):
    """If a KVM_SET_* ioctl fails in the middle of a restore, the half-restored machine is dropped: the
    state is rebuilt from the start (and is right), the stop says why, and checkpoints stay off."""
    from vmio_edu.kvm import state as KS

    with Machine(engine="kvm", op="write", lba=3) as m:
        dbg = m.debugger()
        dbg.checkpoint_every = EVERY_KVM
        dbg.cont()
        cps = list(dbg._cp_index)
        target = cps[-4] + 5
        dbg.goto(-1)
        forward = dbg.goto(target) and dbg.state_digest()
        dbg.goto(cps[-2] + 3)
        real = KS.restore

        def refuse(vcpu, st):
            real(vcpu, st)
            raise OSError(22, "KVM_SET_LAPIC: Invalid argument")
        monkeypatch.setattr(KS, "restore", refuse)
        s = dbg.goto(target)
        assert s.index == target and dbg.last_restore == -1
        assert dbg.restore_error and "failed" in s.message and "KVM_SET_LAPIC" in s.message and dbg.restore_error
        assert dbg.state_digest() == forward
        monkeypatch.setattr(KS, "restore", real)
        assert not dbg._checkpointing and not dbg._checkpoints
        assert dbg.cont().reason == "halted" and dbg._diverged_at is None
