"""Every known-wrong answer (tests/grading/wrong_answers/) loses points on EVERY seed, hidden cases included,
and every reference scores full marks on the same seeds: no wrong answer passes by luck."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from conftest import answer_from, graded, reference, variant
from vmio_edu.grading import EXERCISE_MODULES, exercise

CORPUS = Path(__file__).parent / "wrong_answers"
PURE_SEEDS = range(200)
MODEL_SEEDS = range(10)  # the exercises that run the whole machine for every check


def corpus(name: str) -> list:
    spec = importlib.util.spec_from_file_location(f"wrong_{name}", CORPUS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.WRONG


def code_of(name: str, answer) -> str:
    return answer if isinstance(answer, str) else variant(name, *answer)


def seeds_for(name: str):
    return MODEL_SEEDS if exercise(name).originals or name == "threads" else PURE_SEEDS


CASES = [(name, what, part, answer) for name in EXERCISE_MODULES for what, part, answer in corpus(name)]


def test_the_corpus_covers_every_exercise():
    assert {c[0] for c in CASES} == set(EXERCISE_MODULES)
    assert len(CASES) >= 60


@pytest.mark.parametrize("name,what,part,answer", CASES, ids=[f"{c[0]}: {c[1]}" for c in CASES])
def test_wrong_answer_loses_points_on_every_seed(name, what, part, answer, model):
    fn = answer_from(name, code_of(name, answer))
    for seed in seeds_for(name):
        res = graded(name, fn, seed, parts=[part])
        assert res[part].points < res[part].max_points, (what, seed, res[part].feedback)
        assert res[part].feedback.strip(), (what, seed)


@pytest.mark.parametrize("name", EXERCISE_MODULES)
def test_reference_scores_full_marks_on_every_seed(name, model):
    fn = reference(name)
    seeds = seeds_for(name) if len(seeds_for(name)) < 200 else range(0, 200, 5)
    for seed in seeds:
        res = graded(name, fn, seed)
        assert all(r.full for r in res.values()), (seed, [(r.name, r.feedback) for r in res.values() if not r.full])
