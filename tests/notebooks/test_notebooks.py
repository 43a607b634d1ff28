"""Every curriculum notebook executes cleanly (each ends with an assertion cell, so drift fails here)."""
from pathlib import Path

import pytest

from _run_notebooks import run_notebook  # tests/notebooks is on sys.path (pytest rootdir-less import)

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))


def test_notebooks_exist():
    names = [p.stem[:2] for p in NOTEBOOKS]
    assert [f"{i:02d}" for i in range(10)] == [n for n in names if n.isdigit()][:10], names


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path):
    run_notebook(path)
