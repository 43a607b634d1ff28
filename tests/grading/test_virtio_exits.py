"""virtio_exits: the instructor's step model of driver and device agrees with the rules the student is given,
behaves as the sources say where the rules are silent, and graded runs go through the sandbox."""
from __future__ import annotations

import pytest

from conftest import graded_params, solution_code, variant
from sandbox_helpers import grade, parts, submit
from vmio_edu.grading import virtio_exits as ve
import vmio_edu_instructor.virtio_exits as material


def batch(**kw) -> dict:
    b = {"requests": 4, "sectors": 8, "op": "write", "submit": "batch", "ioeventfd": False, "mode": "interrupt",
         "completion": "together", "idx": 10, "num": 128}
    b.update(kw)
    return b


@pytest.mark.parametrize("seed", range(0, 200, 7))
def test_the_model_agrees_with_the_stated_rules(seed):
    params, hidden = graded_params("virtio_exits", seed)
    for c in params["cases"] + hidden:
        b = {k: v for k, v in c.items() if k != "want"}
        assert material.oracle(b) == ve.expected(b) == c["want"]


def test_model_facts():
    # ioeventfd: the notify never reaches QEMU, whatever the submit style
    for submit in ("batch", "each"):
        assert material.oracle(batch(submit=submit, ioeventfd=True))["notify_exits"] == 0
    assert material.oracle(batch(submit="each"))["notify_exits"] == 4
    assert material.oracle(batch(submit="batch"))["notify_exits"] == 1
    # sectors never matter; the ISR is read once per interrupt
    assert material.oracle(batch(sectors=1)) == material.oracle(batch(sectors=256))
    r = material.oracle(batch(completion="apart"))
    assert r["interrupts"] == r["isr_exits"] == 4 and r["exits"] == 1 + 4
    assert material.oracle(batch(mode="poll"))["interrupts"] == 0
    assert material.oracle(batch(idx=0xFFFE))["used_idx"] == 2


def test_the_model_suppresses_a_kick_when_the_device_is_behind():
    """vring_need_event really decides: with the device still behind (avail_event not moved on), a second
    kick is not needed; the stated cases never hit that, the model would."""
    m = material.Model(batch(submit="each", ioeventfd=True))
    m.add()
    m.kick()
    m.avail_event = m.avail_event - 1 & 0xFFFF  # the main loop has not popped the first request yet
    m.add()
    before = m.last_avail
    m.kick()
    assert m.last_avail == before  # no notify: the device was not woken


def test_a_batch_that_does_not_fit_is_refused():
    with pytest.raises(ValueError, match="does not fit"):
        material.oracle(batch(requests=43))


def test_graded_in_the_sandbox(tmp_path, capsys):
    r = grade(submit(tmp_path, "virtio_exits", solution_code("virtio_exits")), capsys=capsys)
    assert r["total"] == r["max_total"] == 4, r["parts"]
    wrong = variant("virtio_exits", ("isr_exits = interrupts", "isr_exits = 0"))
    r = parts(grade(submit(tmp_path, "virtio_exits", wrong, student="bo"), capsys=capsys))
    assert r["interrupts"]["points"] == 0 and "BAR+19" in r["interrupts"]["feedback"]
    assert r["exits"]["points"] == 0
    assert r["indices"]["points"] == r["notify"]["points"] == 1


def test_running_the_public_rules_from_an_answer_scores_zero(tmp_path, capsys):
    cheat = "from vmio_edu.grading import virtio_exits as v\n\ndef predict(batch):\n    return v.expected(batch)\n"
    r = grade(submit(tmp_path, "virtio_exits", cheat), "--part", "notify", capsys=capsys)
    assert r["parts"][0]["points"] == 0 and "grader's own code" in r["parts"][0]["feedback"]
