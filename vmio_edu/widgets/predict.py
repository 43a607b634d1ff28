"""Predict, then check: a question the learner answers in a widget before the notebook shows the answer.

    from vmio_edu.widgets.predict import predict
    predict("How many exits does a 3-sector write make on port 0x1f0?", answer=n_exits,
            explain="one per word: rep outsw exits once per element")

`answer` is computed by the notebook from the running model, so the question stays true when the model
changes. The learner types a number (decimal, or hex as `0x50`) or picks one of `choices`, presses Check,
and gets right/wrong at once with the explanation. Nothing blocks: headless runs (CI) just show the widget.

Threading: ipykernel 7 may deliver a click on a subshell thread, where widget updates are lost, so the
check is handed to the kernel thread's event loop (as the debugger panel does).
"""
from __future__ import annotations

import asyncio
import html
import re
import threading
from typing import Any, Sequence

import ipywidgets as W


def inline(text: str) -> str:
    """The little Markdown a question uses, as safe HTML: `code` and **bold** (everything else escaped)."""
    out = html.escape(text, quote=False)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", out)


class PredictError(ValueError):
    """A question built wrongly (by the notebook author, not the learner)."""


def parse_number(text: str) -> int | float:
    """The learner's number: `80`, `0x50`, `0b1010000`, `1_000`, `2.5` (surrounding spaces ignored)."""
    s = text.strip().replace("_", "")
    if not s:
        raise ValueError("type a number first")
    try:
        return int(s, 0)
    except ValueError:
        pass
    try:
        return float(s)
    except ValueError:
        raise ValueError(f"{text.strip()!r} is not a number (write 80, or 0x50 for hex)") from None


class Predict(W.VBox):
    """One predict-then-check question. `check(value)` is what the Check button runs; it returns
    True/False and fills `feedback` (tests and headless runs call it directly)."""

    def __init__(self, question: str, answer: Any, *, explain: str = "", choices: Sequence[Any] | None = None,
                 tolerance: float = 0, hex: bool = False, unit: str = "") -> None:
        if answer is None:
            raise PredictError("predict() needs the answer, computed from the model")
        if choices is not None:
            choices = list(choices)
            if answer not in choices:
                raise PredictError(f"the answer {answer!r} is not one of the choices {choices!r}")
        elif not isinstance(answer, (int, float)) or isinstance(answer, bool):
            raise PredictError("without choices the answer must be a number (give choices=[...] for words)")
        if tolerance < 0:
            raise PredictError("tolerance must be >= 0")
        self.question, self.answer = question, answer
        self.explain = explain[:1].upper() + explain[1:]  # it follows the verdict as a sentence of its own
        self.choices, self.tolerance, self.hex, self.unit = choices, tolerance, hex, unit
        self.attempts = 0
        self.correct: bool | None = None
        self._owner = threading.get_ident()
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None

        if choices is not None:
            self.input = W.RadioButtons(options=[self._show(c) for c in choices], value=None,
                                        layout=W.Layout(width="auto"))
        else:
            self.input = W.Text(placeholder="0x50 or 80" if hex else "a number", layout=W.Layout(width="160px"))
        self.button = W.Button(description="Check", icon="check", layout=W.Layout(width="auto"))
        self.button.on_click(lambda _b: self._on_click())
        self.feedback = W.HTML()
        prompt = W.HTML(f"<b>Predict.</b> {inline(question)}")
        row = W.HBox([self.input, self.button] + ([W.HTML(html.escape(unit))] if unit else []))
        super().__init__([prompt, row, self.feedback],
                         layout=W.Layout(border="1px solid var(--jp-border-color2, #ccc)", padding="4px 8px",
                                         margin="6px 0"))
        self.add_class("vmio-predict")

    def _show(self, v: Any) -> str:
        if isinstance(v, int) and not isinstance(v, bool) and self.hex:
            return f"{v:#x}"
        return str(v)

    def _on_click(self) -> None:
        if threading.get_ident() == self._owner or self._loop is None or self._loop.is_closed():
            self.check()
        else:
            self._loop.call_soon_threadsafe(self.check)

    def check(self, value: Any = None) -> bool:
        """Check `value` (default: what the widget holds), show the verdict and the explanation."""
        if value is None:
            value = self.input.value
        if self.choices is not None:
            if value is None:
                return self._say(None, "Pick an answer first.")
            shown = [self._show(c) for c in self.choices]
            got = self.choices[shown.index(value)] if value in shown else value
            ok = got == self.answer
        else:
            try:
                got = parse_number(value) if isinstance(value, str) else value
            except ValueError as e:
                return self._say(None, f"{e}.")
            ok = abs(got - self.answer) <= self.tolerance
        self.attempts += 1
        right = self._show(self.answer) + (f" {self.unit}" if self.unit else "")
        if ok:
            return self._say(True, f"<b>Right</b>: {html.escape(right)}. {inline(self.explain)}")
        return self._say(False, f"<b>Not quite</b>: you said {html.escape(self._show(got))}, the model says "
                                f"{html.escape(right)}. {inline(self.explain)}")

    def _say(self, ok: bool | None, text: str) -> bool:
        colour = {True: "var(--jp-success-color1, #2e7d32)", False: "var(--jp-error-color1, #c62828)",
                  None: "var(--jp-warn-color1, #ef6c00)"}[ok]
        mark = {True: "✔", False: "✘", None: "…"}[ok]
        self.feedback.value = f'<div style="color:{colour}">{mark} {text}</div>'
        if ok is not None:
            self.correct = ok
        return bool(ok)


def predict(question: str, answer: Any, *, explain: str = "", choices: Sequence[Any] | None = None,
            tolerance: float = 0, hex: bool = False, unit: str = "") -> Predict:
    """A predict-then-check question: display it as a cell's last expression.

    answer:    the right answer, computed from the model in the same cell
    explain:   one or two sentences on *why*, shown after Check whether right or wrong
    choices:   the options to pick from (words, names); without them the learner types a number
    tolerance: how far a typed number may be off (0: exact)
    hex:       show numbers as hex (`0x50`); the learner may type either form
    unit:      shown after the box and the answer ("exits", "bytes")
    """
    return Predict(question, answer, explain=explain, choices=choices, tolerance=tolerance, hex=hex, unit=unit)


__all__ = ["predict", "Predict", "PredictError", "parse_number", "inline"]
