"""Every exercise: the reference scores full marks, seeds are reproducible and personal."""
from __future__ import annotations

import json

import pytest

from vmio_edu.grading import EXERCISE_MODULES, all_exercises, exercise, seed_for_user

PURE = [ex.name for ex in all_exercises() if not ex.uses_model]
MODEL = [ex.name for ex in all_exercises() if ex.uses_model]


def test_at_least_eight_exercises_over_the_layers():
    assert len(EXERCISE_MODULES) >= 8
    for ex in all_exercises():
        assert ex.parts and ex.max_points > 0 and ex.answer in ex.solution
        assert "### BEGIN SOLUTION" in ex.solution and "### END SOLUTION" in ex.solution


@pytest.mark.parametrize("seed", [0, 1, 7, 4242, 999_999])
@pytest.mark.parametrize("name", PURE)
def test_reference_full_marks_pure(name, seed):
    ex = exercise(name)
    for hidden in (False, True):
        results = ex.check(ex.reference(), ex.make(seed), hidden=hidden)
        assert [r.name for r in results] == ex.part_names
        assert all(r.full for r in results), [(r.name, r.feedback) for r in results if not r.full]


@pytest.mark.parametrize("seed", [3, 20_260])
@pytest.mark.parametrize("name", MODEL)
def test_reference_full_marks_on_the_model(name, seed, model):
    ex = exercise(name)
    results = ex.check(ex.reference(), ex.make(seed), hidden=True)
    assert all(r.full for r in results), [(r.name, r.feedback) for r in results if not r.full]


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
