"""Plain data between the grader and the sandbox that runs a student's code.

The sandbox (the child process) answers with JSON only, and only in the shapes below; the grader rebuilds
Python values from it and checks sizes and types on the way. Whatever a student's function returns
(an int subclass with a lying `__eq__`, a list subclass, a huge number, an object) arrives in the grader
as plain ints, strings, lists, dicts and bytes, or as an `Opaque` that compares equal to nothing.
"""
from __future__ import annotations

import json
import math
from typing import Any

MAX_ITEMS = 400_000  # values in one message (a model run summary with its trace has ~100k)
MAX_STR = 4_000
MAX_INT_BITS = 4_096
MAX_DEPTH = 8
MAX_LINE = 8 << 20  # bytes of one message from the sandbox


class WireError(ValueError):
    """A message from the sandbox that is not plain data of the expected shape."""


class Opaque:
    """A value the grader cannot use (an object, a too-large number): equal to nothing, shown by its repr."""

    def __init__(self, what: str):
        self.what = what

    def __eq__(self, other: object) -> bool:
        return False

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return self.what


def encode(v: Any) -> Any:
    """Python value → JSON-able plain data (used in the sandbox on what the student's function returned,
    and on the inputs the grader sends). Subclasses are read through the base type's own methods, so an
    overridden `__eq__`, `__iter__` or `__int__` changes nothing."""
    budget = [MAX_ITEMS]

    def enc(x: Any, depth: int) -> Any:
        budget[0] -= 1
        if budget[0] < 0:
            raise WireError("too many values")
        if depth > MAX_DEPTH:
            return {"$obj": "a value nested too deeply"}
        if x is None or x is True or x is False:
            return x
        if isinstance(x, bool):
            return bool.__bool__(x)
        if isinstance(x, int):
            n = int.__add__(x, 0)
            if n.bit_length() > MAX_INT_BITS:
                return {"$obj": f"<a {n.bit_length()}-bit number>"}
            return n
        if isinstance(x, float):
            f = float.__add__(x, 0.0)
            return f if math.isfinite(f) else {"$obj": repr(f)}
        if isinstance(x, str):
            s = str.__getitem__(x, slice(0, MAX_STR))
            return s
        if isinstance(x, (bytes, bytearray, memoryview)):
            b = bytes(x)
            if len(b) > MAX_ITEMS:
                raise WireError("too many bytes")
            return {"$bytes": b.hex()}
        if isinstance(x, (list, tuple)):
            items = list.__iter__(x) if isinstance(x, list) else tuple.__iter__(x)
            return [enc(i, depth + 1) for i in items]
        if isinstance(x, dict):
            return {"$dict": [[enc(k, depth + 1), enc(val, depth + 1)] for k, val in dict.items(x)]}
        try:
            text = object.__repr__(x)
        except Exception:  # noqa: BLE001
            text = "an object"
        return {"$obj": f"{type(x).__name__} object ({text[:60]})"}

    return enc(v, 0)


def decode(v: Any, depth: int = 0) -> Any:
    """Plain data (from JSON) → Python values, validating the shapes. Raises WireError."""
    if depth > MAX_DEPTH + 2:
        raise WireError("nested too deeply")
    if v is None or isinstance(v, (bool, float)):
        return v
    if isinstance(v, int):
        if v.bit_length() > MAX_INT_BITS:
            raise WireError("number too large")
        return v
    if isinstance(v, str):
        if len(v) > MAX_STR:
            raise WireError("string too long")
        return v
    if isinstance(v, list):
        return [decode(i, depth + 1) for i in v]
    if isinstance(v, dict) and len(v) == 1:
        (key, val), = v.items()
        if key == "$bytes" and isinstance(val, str):
            try:
                return bytes.fromhex(val)
            except ValueError:
                raise WireError("bad bytes") from None
        if key == "$dict" and isinstance(val, list):
            out = {}
            for pair in val:
                if not (isinstance(pair, list) and len(pair) == 2):
                    raise WireError("bad dict item")
                k = decode(pair[0], depth + 1)
                if not isinstance(k, (str, int, bool, float, type(None), bytes)):
                    k = repr(k)
                out[k] = decode(pair[1], depth + 1)
            return out
        if key == "$obj" and isinstance(val, str):
            return Opaque(val[:100])
    raise WireError(f"unexpected value of type {type(v).__name__}")


def dumps(msg: dict) -> str:
    return json.dumps(msg, separators=(",", ":")) + "\n"


def loads(line: str) -> dict:
    if len(line) > MAX_LINE:
        raise WireError("message too long")
    try:
        msg = json.loads(line)
    except (ValueError, RecursionError) as e:
        raise WireError(f"not JSON: {e}") from None
    if not isinstance(msg, dict):
        raise WireError("not a message")
    return msg
