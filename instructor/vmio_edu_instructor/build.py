"""Write the exercise notebooks (the instructor's source versions) from the exercise modules.

    PYTHONPATH=instructor python -m vmio_edu_instructor.build [OUT_DIR]        # default: exercises/source
    PYTHONPATH=instructor python -m vmio_edu_instructor.build --check [OUT_DIR]  # exit 1 if one is stale

The notebooks are generated so they stay consistent with the checks; commit the generated files.
"""
from __future__ import annotations

import argparse
import os
import sys

from vmio_edu.grading import all_exercises
from vmio_edu.grading.notebook import build_notebook, dumps

from . import solution


def build(out_dir: str) -> list[str]:
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for ex in all_exercises():
        path = os.path.join(out_dir, f"{ex.name}.ipynb")
        with open(path, "w", encoding="utf-8") as f:
            f.write(dumps(build_notebook(ex, solution(ex.name))))
        written.append(path)
    return written


def stale(out_dir: str) -> list[str]:
    """Notebooks in out_dir that differ from what build() would write (or are missing)."""
    bad = []
    for ex in all_exercises():
        path = os.path.join(out_dir, f"{ex.name}.ipynb")
        try:
            with open(path, encoding="utf-8") as f:
                if f.read() == dumps(build_notebook(ex, solution(ex.name))):
                    continue
        except OSError:
            pass
        bad.append(path)
    return bad


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vmio_edu_instructor.build", description=__doc__.split("\n\n")[0])
    p.add_argument("out", nargs="?", default=os.path.join("exercises", "source"))
    p.add_argument("--check", action="store_true", help="only report notebooks that need rebuilding")
    args = p.parse_args(argv)
    if args.check:
        bad = stale(args.out)
        for b in bad:
            print(f"stale: {b}")
        return 1 if bad else 0
    for path in build(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
