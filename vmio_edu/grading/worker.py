"""The grader's subprocess: run a submission's code cells, then check one part, and write the result.

    python -m vmio_edu.grading.worker JOB.json

JOB gives the exercise, seed, part, the cells to run and where to write `result` (JSON), `status` (what is
running now, so a time-out can say where) and `log` (the student's prints go there, not to the grader).
Whatever the student's code does, the worst outcome is this process dying: the parent scores that part
zero and carries on. Limits (time, memory) are set by the parent.
"""
from __future__ import annotations

import json
import os
import sys


def _write(path: str, data: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(data)
    os.replace(tmp, path)


def main(job_path: str) -> int:
    with open(job_path, encoding="utf-8") as f:
        job = json.load(f)
    # The student's prints (Python and C level) go to the log, so they cannot forge the result.
    log_fd = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    sys.stdin = open(os.devnull)

    from vmio_edu.grading import exercise
    from vmio_edu.grading.base import describe_exception, fail_all

    ex = exercise(job["exercise"])
    ns: dict = {"__name__": "__main__", "__builtins__": __builtins__}
    errors: list[str] = []
    for index, source in job["cells"]:
        _write(job["status"], f"running your notebook cell {index}")
        try:
            code = compile(source, f"<cell {index}>", "exec")
            exec(code, ns)  # noqa: S102 - running the submission is the point
        except BaseException as e:  # noqa: BLE001 - SystemExit included
            errors.append(f"cell {index} raised {describe_exception(e)}")
    _write(job["status"], f"checking part {job['part']!r} (running your function)")
    answer = ns.get(ex.answer)
    try:
        params = ex.make(job["seed"])
        if answer is None:
            why = f"`{ex.answer}` is not defined after running your notebook"
            if errors:
                why += "; " + "; ".join(errors[:2])
            results = fail_all(ex, [job["part"]], why)
        else:
            results = ex.check(answer, params, parts=[job["part"]], hidden=job.get("hidden", True))
    except BaseException as e:  # noqa: BLE001 - a check that crashes on odd student output still reports
        results = fail_all(ex, [job["part"]], f"the check could not run your function: {describe_exception(e)}")
    out = {"results": [r.to_json() for r in results], "cell_errors": errors}
    _write(job["result"], json.dumps(out))
    sys.stdout.flush()
    os._exit(0)  # don't wait for threads the student (or a stuck model run) left behind


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
