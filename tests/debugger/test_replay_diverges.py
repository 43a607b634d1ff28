"""A replay that does not follow the recording: the machine was changed by hand at a stop, so running on
from there gives other events than the recorded run had. The debugger says from which index, keeps the
new run as the trace, and time travel stays exact on it."""
import re

from vmio_edu.trace.recorder import ENTER
from vmio_edu.trace.tracepoint import REGISTRY


def _index_of(dbg, name, nth=0):
    ev = dbg.events
    hits = [i for i in range(len(ev)) if ev[i][0] == ENTER and REGISTRY[ev[i][1]].name == name]
    return hits[nth]


def test_a_hand_change_at_a_stop_makes_the_replay_diverge_and_says_where(make):
    m, dbg = make(sectors=1)
    dbg.checkpoint_every = 0  # no checkpoint may carry the run past the change
    assert dbg.cont().reason == "halted"
    recorded = [tuple(dbg.events[i])[:4] for i in range(len(dbg.events))]
    at = _index_of(dbg, "ide_sector_write")
    stop_call = _index_of(dbg, "ide_transfer_stop", -1)  # where the recorded run closed the window
    assert stop_call > at
    target = min(stop_call + 20, len(dbg.events) - 1)
    stop = dbg.goto(at)
    assert stop.function == "ide_sector_write" and stop.message is None
    m.ide.bus[0].ifs[0].nsector = 2  # by hand: the drive now expects a second sector
    later = dbg.goto(target)
    assert later.message and "differs from the recorded run" in later.message
    diverged = int(re.search(r"from index (\d+)", later.message).group(1))
    assert at < diverged <= stop_call  # at the latest where the window now reopens instead
    now = [tuple(dbg.events[i])[:4] for i in range(diverged + 1)]
    assert now[:diverged] == recorded[:diverged] and now[diverged] != recorded[diverged]
    # the new run is the trace now: going back and forth on it is exact and silent
    back = dbg.goto(at + 10)
    assert back.index == at + 10 and back.message is None
    assert dbg.goto(target).message is None
