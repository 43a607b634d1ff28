"""Submissions as a student hands them in, graded the way an instructor does (`vmio-edu grade`)."""
from __future__ import annotations

import json
from pathlib import Path

from vmio_edu.cli import main
from vmio_edu.grading.notebook import dumps, fill_answer, load_notebook, release_notebook

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "exercises" / "source"


def submit(tmp_path: Path, name: str, code: str, student: str = "alice", extra: tuple[str, ...] = (),
           seed: int | None = None) -> Path:
    """The released notebook of `name`, answered with `code` (plus `extra` cells of the student's own after
    it), at submitted/<student>/<name>/<name>.ipynb."""
    nb = fill_answer(release_notebook(load_notebook(str(SOURCE / f"{name}.ipynb"))), code, seed=seed)
    at = next(i for i, c in enumerate(nb["cells"]) if c["metadata"].get("vmio_edu", {}).get("role") == "solution")
    for k, src in enumerate(extra):
        nb["cells"].insert(at + 1 + k, {"cell_type": "code", "execution_count": None, "id": f"extra-{k}",
                                        "metadata": {}, "outputs": [], "source": src})
    folder = tmp_path / "submitted" / student / name
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.ipynb"
    path.write_text(dumps(nb))
    return path


def grade(path, *args, capsys) -> dict:
    rc = main(["grade", str(path), "--format", "json", *args])
    out = capsys.readouterr()
    assert rc == 0, out.err
    return json.loads(out.out)


def parts(report: dict) -> dict:
    return {p["name"]: p for p in report["parts"]}
