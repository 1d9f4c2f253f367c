"""Answer grading: math-verify equivalences, the normalized-string fallback, and voting equivalence."""
from __future__ import annotations

import threading

import pytest

from a1.answers import grading
from a1.answers.grading import Grade, answers_equivalent, grade, is_equivalent

EQUIVALENT = [
    ("0.5", "\\frac{1}{2}"),
    ("\\dfrac12", "\\frac{1}{2}"),
    ("\\frac12", "0.5"),
    ("10\\%", "10"),
    ("x=3", "3"),
    ("3", "x = 3"),
    ("1,000", "1000"),
    ("1000", "1,000"),
    ("[0, 1)", "[0,1)"),
    ("(-\\infty, 0) \\cup \\{1\\}", "(-\\infty,0)\\cup\\{1\\}"),
    ("(3, \\frac{\\pi}{2})", "\\left( 3, \\frac{\\pi}{2} \\right)"),
    ("6-5i", "6 - 5i"),
    ("\\sqrt{2}/2", "\\frac{\\sqrt{2}}{2}"),
    ("2.0", "2"),
    ("90^\\circ", "90"),
    ("\\text{Evelyn}", "Evelyn"),
    ("\\frac{1}{2},\\frac{32}{9}", "\\frac{32}{9},\\frac{1}{2}"),
]
DIFFERENT = [
    ("4", "5"),
    ("0.5", "\\frac{1}{3}"),
    ("(0, 1)", "[0,1)"),
    ("[0, 1]", "[0,1)"),
    ("-3", "3"),
    ("\\sqrt{3}", "\\sqrt{2}"),
    ("1001", "1,000"),
    ("(1, 2)", "(2, 1)"),
]


@pytest.mark.parametrize("predicted, gold", EQUIVALENT)
def test_equivalent(predicted: str, gold: str) -> None:
    assert is_equivalent(predicted, gold)
    assert answers_equivalent(predicted, gold) and answers_equivalent(gold, predicted)


@pytest.mark.parametrize("predicted, gold", DIFFERENT)
def test_different(predicted: str, gold: str) -> None:
    assert not grade(predicted, gold).correct
    assert not answers_equivalent(predicted, gold) and not answers_equivalent(gold, predicted)


def test_method() -> None:
    assert grade("0.5", "\\frac{1}{2}") == Grade(True, "math_verify")
    assert grade("(0, 1)", "[0,1)") == Grade(False, "math_verify")
    # plain integers are compared as integers, without SymPy
    assert grade("025", "25") == Grade(True, "normalized")
    assert grade("x = 1,000", "1000") == Grade(True, "normalized")
    assert grade("-3", "3") == Grade(False, "normalized")
    assert grade("12\\%", "12") == Grade(True, "normalized")
    assert grade(None, "5") == Grade(False, "none")
    assert grade("  ", "5") == Grade(False, "none")


@pytest.mark.parametrize("predicted, gold, correct", [
    ("5.", "5", True),  # "5." has no math-verify parse; normalized "5" == "5"
    ("a & b", "a&b", True),  # neither side parses
    ("a & b", "a&c", False),
    ("\\frac{1}{}", "\\frac{1}{}", True),
    ("\\frac{1}{}", "1", False),
])
def test_fallback_when_math_verify_cannot_parse(predicted: str, gold: str, correct: bool) -> None:
    assert grading._parse(predicted) is None  # the premise: math-verify fails
    assert grade(predicted, gold) == Grade(correct, "normalized")


def test_normalized_rescue_after_math_verify_says_no(monkeypatch: pytest.MonkeyPatch) -> None:
    # both sides parse; if verify() says no, equal normal forms still grade correct
    monkeypatch.setattr(grading, "verify", lambda *a, **k: False)
    assert grading._parse("2.5 \\text{ m}") is not None and grading._parse("2.5") is not None
    assert grade("2.5 \\text{ m}", "2.5") == Grade(True, "normalized")
    assert grade("1.7", "1.8") == Grade(False, "math_verify")


def test_bad_gold() -> None:
    for gold in ("", "  ", None):
        with pytest.raises(ValueError, match="gold must be a non-empty str"):
            grade("1", gold)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="predicted must be a str or None"):
        grade(1, "1")  # type: ignore[arg-type]


def test_answers_equivalent_none_and_symmetry() -> None:
    assert not answers_equivalent(None, None) and not answers_equivalent(None, "1")
    assert not answers_equivalent("", "") and not answers_equivalent("1", " ")
    assert answers_equivalent("7", "7") and answers_equivalent(" 7", "7 ")


def test_grading_in_threads() -> None:
    """math-verify's signal-based timeouts would raise outside the main thread; they are off."""
    results: list[tuple[bool, bool]] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            grading._parse.cache_clear()
            results.append((is_equivalent("\\frac{3}{4}", "0.75"), is_equivalent("0.7", "0.75")))
        except BaseException as e:  # noqa: BLE001 - reported by the assert below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and results == [(True, False)] * 4


@pytest.mark.parametrize("answer", [
    "9^{9^{9}}", "10^{10^{10^{10}}}", "2^{2^{64}}", "(x+y+1)^{100}", "(10^{6})!", "\\binom{10^{9}}{10^{8}}",
    "\\sum_{k=1}^{1000000} k^k",
])
def test_explosive_answers_skip_math_verify(answer: str) -> None:
    """verify() has no timeout here, and would run for minutes or forever on these."""
    assert grading._parse(answer) is None  # checked first: without the guard, grade() would hang
    assert grade(answer, answer) == Grade(True, "normalized")
    assert grade(answer, "5") == Grade(False, "normalized")


@pytest.mark.parametrize("answer", ["3^{1000}", "x^{2024}", "(x+1)^{2}", "\\binom{100}{50}", "10!", "\\sqrt{x+1}",
                                    "\\sum_{k=1}^{100} k"])
def test_large_but_safe_answers_use_math_verify(answer: str) -> None:
    assert grading._parse(answer) is not None
    assert grade(answer, answer) == Grade(True, "math_verify")
