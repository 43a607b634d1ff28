"""Fixtures for the block tests (the helpers live in blockbench.py)."""
from __future__ import annotations

import os

import pytest

from blockbench import Bench, make_image


@pytest.fixture
def image(tmp_path):
    path = os.fspath(tmp_path / "disk.img")
    make_image(path)
    return path


@pytest.fixture
def bench_factory():
    made = []

    def make(*a, **kw):
        b = Bench(*a, **kw)
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()
