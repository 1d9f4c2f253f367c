"""Boxed-answer extraction, the policy's stop test, and the fallback normalization."""
from __future__ import annotations

import pytest

from a1.answers.extract import extract_boxed, has_final_answer, normalize_answer


@pytest.mark.parametrize("text, expected", [
    ("so the answer is \\boxed{42}.", "42"),
    ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
    ("\\boxed{\\frac{\\sqrt{3}}{2}} and more", "\\frac{\\sqrt{3}}{2}"),
    ("\\boxed {5}", "5"),
    ("\\boxed\n{ 7 }", "7"),
    ("\\fbox{9}", "9"),
    ("first \\boxed{1}, then \\boxed{2}, finally \\fbox{3}", "3"),
    ("\\boxed{\\boxed{3}}", "\\boxed{3}"),  # a nested box belongs to the outer one
    ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),  # escaped braces do not count
    ("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "\\left( 3, \\frac{\\pi}{2} \\right)"),
    ("$\\boxed 12$", "12"),
    ("the answer is \\boxed 5", "5"),
    ("\\boxed{3} but wait \\boxed{4", "3"),  # an unclosed (truncated) box is skipped
    ("\\boxed{4", None),
    ("\\boxed{", None),
    ("put it in \\boxed{} like this", None),  # the instruction's empty box is not an answer
    ("\\boxed{ }", None),
    ("no box here", None),
    ("", None),
    ("\\boxedx{3}", None),  # another command
    ("\\boxed", None),
    ("\\boxed{x \\boxed{5}", "5"),  # only the inner box is complete
])
def test_extract_boxed(text: str, expected: str | None) -> None:
    assert extract_boxed(text) == expected
    assert has_final_answer(text) is (expected is not None)


def test_extract_boxed_rejects_non_str() -> None:
    with pytest.raises(ValueError, match="text must be a str"):
        extract_boxed(None)  # type: ignore[arg-type]


@pytest.mark.parametrize("raw, expected", [
    ("$10\\%$", "10"),
    ("10%", "10"),
    ("x = 3", "3"),
    ("\\theta = 30^\\circ", "30"),
    ("x=3, y=4", "x=3,y=4"),  # two assignments: kept
    ("1,000", "1000"),
    ("1{,}000", "1000"),
    ("-12,345.5", "-12345.5"),
    ("1,2", "1,2"),  # not a thousands separator
    ("\\dfrac12", "\\frac{1}{2}"),
    ("\\tfrac{3}{4}", "\\frac{3}{4}"),
    ("\\sqrt2", "\\sqrt{2}"),
    ("18 \\text{ dollars}", "18"),
    ("5\\text{ cm}^2", "5"),
    ("\\text{Evelyn}", "Evelyn"),
    ("\\textbf{(C)}", "(C)"),
    ("90^\\circ", "90"),
    ("90^{\\circ}", "90"),
    ("5.0", "5"),
    ("5.", "5"),
    (".5", "0.5"),
    ("-.25", "-0.25"),
    ("\\$1,234.50", "1234.50"),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})"),
    ("\\boxed{7}", "7"),
    ("a\\!b\\,c", "abc"),
    ("\\rightarrow", "\\rightarrow"),  # \right is a prefix here, not the delimiter command
    ("A", "A"),  # case is kept
    (None, ""),
])
def test_normalize_answer(raw: str | None, expected: str) -> None:
    assert normalize_answer(raw) == expected
