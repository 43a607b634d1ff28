"""`vmio-edu release` and `vmio-edu grade`: the course commands (added to vmio_edu.cli by `add_commands`).

    vmio-edu release [SOURCE_DIR] [--out DIR]
    vmio-edu grade NOTEBOOK [--student ID] [--exercise NAME] [--instructor DIR] [--format text|json]
                   [--timeout SECONDS] [--cell-timeout SECONDS] [--memory-mb MB] [--part P]
    vmio-edu course-secret [--instructor DIR]
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

    g = sub.add_parser("grade", help="grade one submitted exercise notebook, part by part, in a sandbox")
    g.add_argument("notebook", metavar="NOTEBOOK")
    g.add_argument("--student", help="the student id (default: from the nbgrader path submitted/<id>/...)")
    g.add_argument("--exercise", help="the exercise (default: the nbgrader assignment name, else the notebook's)")
    g.add_argument("--instructor", metavar="DIR", help="the instructor material (default: $VMIO_EDU_INSTRUCTOR)")
    g.add_argument("--seed", type=int, help="grade the visible cases of this seed instead of the student's")
    g.add_argument("--format", choices=("text", "json"), default="text")
    g.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="time limit per call of the student's function (5)")
    g.add_argument("--run-timeout", type=float, default=None, metavar="SECONDS",
                   help="time limit per machine run with the student's function plugged in (30)")
    g.add_argument("--cell-timeout", type=float, default=None, metavar="SECONDS",
                   help="time limit per notebook cell (15)")
    g.add_argument("--memory-mb", type=int, default=None, metavar="MB", help="address-space limit (4096)")
    g.add_argument("--part", action="append", metavar="PART", help="grade only this part (repeatable)")
    g.set_defaults(func=cmd_grade)

    k = sub.add_parser("course-secret", help="create the course secret in the instructor directory (once)")
    k.add_argument("--instructor", metavar="DIR", help="the instructor material (default: $VMIO_EDU_INSTRUCTOR)")
    k.set_defaults(func=cmd_course_secret)


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
                f.write(dumps(release_notebook(build_notebook(ex))))  # the template: no solution here
            written.append(path)
    if not written:
        raise NotebookError("nothing to release")
    for p in written:
        print(p)
    return 0


def cmd_grade(args: argparse.Namespace) -> int:
    from .notebook import NotebookError
    from .runner import Limits, grade_notebook

    for opt in ("timeout", "cell_timeout", "run_timeout"):
        v = getattr(args, opt)
        if v is not None and v <= 0:
            raise NotebookError(f"--{opt.replace('_', '-')} must be positive")
    limits = Limits()
    if args.timeout:
        limits.call = args.timeout
    if args.run_timeout:
        limits.run = args.run_timeout
    if args.cell_timeout:
        limits.cell = args.cell_timeout
    if args.memory_mb is not None:
        limits.memory_mb = args.memory_mb
    try:
        report = grade_notebook(args.notebook, student=args.student, exercise_name=args.exercise, limits=limits,
                                parts=args.part, instructor=args.instructor, seed=args.seed)
    except KeyError as e:
        raise NotebookError(str(e).strip("'\"")) from None
    if args.format == "json":
        print(json.dumps(report.to_json(), indent=1))
    else:
        print(report.text())
    return 0


def cmd_course_secret(args: argparse.Namespace) -> int:
    from .course import init_secret
    path, created = init_secret(args.instructor)
    print(f"{'created' if created else 'exists'}: {path}")
    return 0
