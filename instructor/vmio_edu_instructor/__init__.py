"""vmio-edu instructor material: reference solutions, oracles and hidden-case generators.

Not part of the `vmio_edu` wheel. The grader imports it from the directory named by $VMIO_EDU_INSTRUCTOR
(or `--instructor DIR`), in the grader's own process only (`vmio_edu.grading.course`).

Each exercise module here has:
* `BODY`: the solution, the lines that replace `# YOUR CODE HERE` / `raise NotImplementedError()` in the
  public template (`vmio_edu.grading.<name>.TEMPLATE`);
* `hidden(r, params) -> list`: the hidden cases, expected values included, drawn from `r` (a
  random.Random seeded from the course secret and the student id);
* optionally `complete(params) -> params`: expected values of the visible cases that the public package
  does not compute itself.
"""
from __future__ import annotations

import importlib
import random
from typing import Any, Callable

SOLUTION_BEGIN = "### BEGIN SOLUTION"
SOLUTION_END = "### END SOLUTION"
STUB = "    # YOUR CODE HERE\n    raise NotImplementedError()\n"


def module(name: str) -> Any:
    from vmio_edu.grading import EXERCISE_MODULES
    if name not in EXERCISE_MODULES:
        raise KeyError(f"no exercise {name!r}")
    return importlib.import_module(f"{__name__}.{name}")


def solution(name: str) -> str:
    """The answer cell of the source notebook: the template with the solution between the markers."""
    from vmio_edu.grading import exercise
    template = exercise(name).template
    if template.count(STUB) != 1:
        raise ValueError(f"{name}: the template must contain the stub exactly once")
    body = module(name).BODY
    return template.replace(STUB, f"    {SOLUTION_BEGIN}\n{body}    {SOLUTION_END}\n")


def reference(name: str) -> Callable:
    """The reference solution of an exercise, as a function."""
    from vmio_edu.grading import exercise
    ns: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(solution(name), f"<reference solution of {name}>", "exec"), ns)  # noqa: S102
    return ns[exercise(name).answer]


def complete(name: str, params: dict) -> dict:
    mod = module(name)
    return mod.complete(params) if hasattr(mod, "complete") else params


def hidden_cases(name: str, r: random.Random, params: dict) -> list:
    return module(name).hidden(r, params)
