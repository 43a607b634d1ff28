"""Every exercise: the reference scores full marks, seeds are reproducible and personal."""
from __future__ import annotations

import json

import pytest

from conftest import graded, reference
from vmio_edu.grading import EXERCISE_MODULES, all_exercises, exercise, seed_for_user

PURE = [ex.name for ex in all_exercises() if not ex.uses_model]
MODEL = [ex.name for ex in all_exercises() if ex.uses_model]


def test_at_least_eight_exercises_over_the_layers():
    assert len(EXERCISE_MODULES) >= 8
    for ex in all_exercises():
        assert ex.parts and ex.max_points > 0 and ex.answer in ex.template
        assert "raise NotImplementedError()" in ex.template and "BEGIN SOLUTION" not in ex.template


@pytest.mark.parametrize("seed", [0, 1, 7, 4242, 999_999])
@pytest.mark.parametrize("name", PURE)
def test_reference_full_marks_pure(name, seed):
    ex = exercise(name)
    for hidden in (False, True):
        results = graded(name, reference(name), seed, hidden=hidden)
        assert list(results) == ex.part_names
        assert all(r.full for r in results.values()), [(r.name, r.feedback) for r in results.values() if not r.full]


@pytest.mark.parametrize("seed", [3, 20_260])
@pytest.mark.parametrize("name", MODEL)
def test_reference_full_marks_on_the_model(name, seed, model):
    results = graded(name, reference(name), seed)
    assert all(r.full for r in results.values()), [(r.name, r.feedback) for r in results.values() if not r.full]


@pytest.mark.parametrize("name", EXERCISE_MODULES)
def test_the_self_check_needs_no_instructor_material(name, model):
    """A student's kernel has only the package: the self-check runs (forked, with a time limit) on the
    student's own cases and gives the reference full marks."""
    import vmio_edu.grading as g
    results = g.check(name, reference(name), 11)
    assert [r.name for r in results] == exercise(name).part_names
    assert all(r.full for r in results), [(r.name, r.feedback) for r in results if not r.full]


def test_the_self_check_survives_a_loop_and_a_crash(monkeypatch):
    import vmio_edu.grading as g
    monkeypatch.setattr(g, "SELF_CHECK_TIMEOUT", 2.0)

    def loops(q):
        while True:
            pass

    def crashes(q):
        import os
        os._exit(7)
    (r,) = g.check("exit_qual", loops, 1, parts=["size"])
    assert r.points == 0 and "time limit" in r.feedback
    (r,) = g.check("exit_qual", crashes, 1, parts=["size"])
    assert r.points == 0 and "exited with status 7" in r.feedback


def test_the_self_check_says_when_an_answer_is_the_library(model):
    import vmio_edu.grading as g
    from vmio_edu.qemu.hw.ide.core import ide_data_writew
    results = g.check("ide_write", ide_data_writew, 1, parts=["store"])
    assert results[0].points == 0 and "library's own ide_data_writew" in results[0].feedback


@pytest.mark.parametrize("name", EXERCISE_MODULES)
def test_same_seed_same_exercise(name):
    ex = exercise(name)
    a, b = ex.make(1234), ex.make(1234)
    assert a == b
    assert json.loads(json.dumps(a)) == a  # params travel to the grader's subprocess as JSON
    assert ex.problem(a) == ex.problem(b)


@pytest.mark.parametrize("name", EXERCISE_MODULES)
def test_different_seeds_give_different_numbers(name):
    ex = exercise(name)
    problems = {ex.problem(ex.make(s)) for s in range(6)}
    assert len(problems) == 6
    params = [ex.make(s) for s in range(6)]
    for p in params:
        p.pop("seed")
    assert len({json.dumps(p, sort_keys=True) for p in params}) >= 5


def test_seed_for_user_is_stable_and_personal(monkeypatch):
    assert seed_for_user("alice") == seed_for_user("alice")
    assert seed_for_user("alice") != seed_for_user("bob")
    assert 0 <= seed_for_user("carol") < 1_000_000
    monkeypatch.setenv("JUPYTERHUB_USER", "dave")
    assert seed_for_user() == seed_for_user("dave")


def test_the_problem_text_shows_the_students_numbers():
    from vmio_edu.grading import exit_qual, pio_exits, sectors
    p = exit_qual.make(5)
    text = exit_qual.problem(p)
    assert all(f"{c['q']:#010x}" in text for c in p["cases"])
    p = pio_exits.make(5)
    assert all(str(c["rcx"]) in pio_exits.problem(p) for c in p["cases"])
    p = sectors.make(5)
    assert f"{p['cases'][0]['regs']['select']:#04x}" in sectors.problem(p)


def test_unknown_exercise_is_named():
    with pytest.raises(KeyError, match="no exercise 'nope'"):
        exercise("nope")


def test_a_failed_graded_cell_shows_the_feedback_not_a_traceback(capsys):
    import vmio_edu.grading as g

    def wrong(q):
        return {"size": q & 7, "direction": "out", "string": False, "rep": False, "operand": "dx", "port": 0}
    with pytest.raises(g.PartFailed) as info:
        g.assert_part("exit_qual", "size", wrong, 3)
    shown = info.value._render_traceback_()  # what IPython prints instead of a traceback
    assert len(shown) == 1 and "exit_qual/size" in shown[0] and "encode size - 1" in shown[0]
