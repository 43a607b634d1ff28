"""Predict-then-check questions: the Check button gives right/wrong feedback from the widget's value."""
import pytest

from vmio_edu.widgets.predict import PredictError, parse_number, predict


def test_typed_hex_or_decimal_is_checked_against_the_answer():
    q = predict("irq_status?", answer=0x50, hex=True, explain="DRDY|DSC")
    q.input.value = "0x58"
    q.button.click()
    assert q.correct is False and "Not quite" in q.feedback.value and "0x58" in q.feedback.value
    assert "0x50" in q.feedback.value and "DRDY|DSC" in q.feedback.value
    q.input.value = "80"          # the same number in decimal is right too
    q.button.click()
    assert q.correct is True and "Right" in q.feedback.value and q.attempts == 2


def test_choices_pick_and_nothing_picked():
    q = predict("Which thread raises IRQ 14?", answer="main", choices=["vcpu0", "main", "worker-1"],
                explain="the bottom half `bdrv_co_em_bh` runs on the **main** loop <not html>")
    q.button.click()
    assert q.correct is None and "Pick an answer" in q.feedback.value and q.attempts == 0
    q.input.value = "vcpu0"
    q.button.click()
    assert q.correct is False and "main" in q.feedback.value
    q.input.value = "main"
    q.button.click()
    assert q.correct is True and "bottom half <code>bdrv_co_em_bh</code>" in q.feedback.value
    assert "<b>main</b>" in q.feedback.value and "&lt;not html&gt;" in q.feedback.value


def test_tolerance_and_bad_input():
    q = predict("share?", answer=0.25, tolerance=0.05, unit="of the time")
    q.input.value = "0.28"
    assert q.check() is True
    q.input.value = "0.4"
    assert q.check() is False
    q.input.value = "lots"
    assert q.check() is False and q.correct is False and "not a number" in q.feedback.value
    assert q.attempts == 2  # an unreadable answer is not counted as an attempt


def test_parse_number_forms():
    assert [parse_number(s) for s in ("80", " 0x50 ", "0b1010000", "1_000", "2.5")] == [80, 80, 80, 1000, 2.5]
    with pytest.raises(ValueError, match="type a number"):
        parse_number("  ")


def test_author_errors_are_named():
    with pytest.raises(PredictError, match="not one of the choices"):
        predict("?", answer="x", choices=["a", "b"])
    with pytest.raises(PredictError, match="must be a number"):
        predict("?", answer="main")
    with pytest.raises(PredictError, match="computed from the model"):
        predict("?", answer=None)
