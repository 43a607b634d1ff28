"""`vmio-edu release` and `vmio-edu grade`: the course commands (added to vmio_edu.cli by `add_commands`).

    vmio-edu release [SOURCE_DIR] [--out DIR]
    vmio-edu grade NOTEBOOK [--seed S] [--format text|json] [--timeout SECONDS] [--memory-mb MB] [--part P]
"""
from __future__ import annotations

import argparse
import json
import os


def add_commands(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("release", help="write the student versions of the exercise notebooks")
    r.add_argument("source", nargs="?", metavar="SOURCE_DIR",
                   help="folder of source notebooks (default: exercises/source, else the built-in exercises)")
    r.add_argument("--out", default=None, metavar="DIR", help="where to write them (default: exercises/release)")
    r.set_defaults(func=cmd_release)

    g = sub.add_parser("grade", help="grade one submitted exercise notebook, part by part")
    g.add_argument("notebook", metavar="NOTEBOOK")
    g.add_argument("--seed", type=int, help="the student's seed (default: the one in the notebook)")
    g.add_argument("--format", choices=("text", "json"), default="text")
    g.add_argument("--timeout", type=float, default=None, metavar="SECONDS", help="time limit per part (60)")
    g.add_argument("--memory-mb", type=int, default=None, metavar="MB", help="address-space limit per part (2048)")
    g.add_argument("--part", action="append", metavar="PART", help="grade only this part (repeatable)")
    g.set_defaults(func=cmd_grade)


def cmd_release(args: argparse.Namespace) -> int:
    from .notebook import NotebookError, build_notebook, dumps, release_dir, release_notebook

    out = args.out or os.path.join("exercises", "release")
    source = args.source
    if source is None and os.path.isdir(os.path.join("exercises", "source")):
        source = os.path.join("exercises", "source")
    if source is not None:
        written = release_dir(source, out)
    else:  # installed without the repository: release the built-in exercises
        from . import all_exercises
        os.makedirs(out, exist_ok=True)
        written = []
        for ex in all_exercises():
            path = os.path.join(out, f"{ex.name}.ipynb")
            with open(path, "w", encoding="utf-8") as f:
                f.write(dumps(release_notebook(build_notebook(ex))))
            written.append(path)
    if not written:
        raise NotebookError("nothing to release")
    for p in written:
        print(p)
    return 0


def cmd_grade(args: argparse.Namespace) -> int:
    from .notebook import NotebookError
    from .runner import DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT, grade_notebook

    if args.timeout is not None and args.timeout <= 0:
        raise NotebookError("--timeout must be positive")
    try:
        report = grade_notebook(args.notebook, seed=args.seed,
                                timeout=args.timeout or DEFAULT_TIMEOUT,
                                memory_mb=args.memory_mb if args.memory_mb is not None else DEFAULT_MEMORY_MB,
                                parts=args.part)
    except KeyError as e:
        raise NotebookError(str(e).strip("'\"")) from None
    if args.format == "json":
        print(json.dumps(report.to_json(), indent=1))
    else:
        print(report.text())
    return 0
