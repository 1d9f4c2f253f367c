"""Prompt templates per dataset family."""
from __future__ import annotations

import pytest

from a1.data import Problem, family_of, format_prompt, load_dataset


def test_family_of() -> None:
    assert family_of("gsm8k") == "gsm8k" and family_of("GSM8K") == "gsm8k"
    for name in ("math500", "aime24", "aime25", "amc23", "olympiadbench"):
        assert family_of(name) == "math"
    assert family_of("my_own_set") == "math"  # user files get the competition prompt


def test_prompt_contents() -> None:
    gsm = load_dataset("gsm8k", limit=1)[0]
    text = format_prompt(gsm)
    assert gsm.problem.strip() in text and "grade-school" in text
    math = load_dataset("math500", limit=1)[0]
    mtext = format_prompt(math)
    assert math.problem.strip() in mtext and "grade-school" not in mtext
    for t in (text, mtext):
        assert "\\boxed{}" in t and "blank line" in t and "step by step" in t
        assert t.index("\\boxed{}") > t.index("blank line")  # instructions follow the problem
    assert format_prompt(gsm, family="math") != text


def test_braces_and_strings_are_kept_verbatim() -> None:
    statement = "Let $f(x) = \\frac{1}{x}$ and {problem} be a set; find $f(2)$."
    text = format_prompt(statement)
    assert statement in text
    assert format_prompt(statement) == format_prompt(Problem("q", statement, "1", "amc23", {}))
    assert format_prompt(statement, family="gsm8k") == format_prompt(Problem("q", statement, "1", "gsm8k"))


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="family must be one of gsm8k, math"):
        format_prompt("1+1?", family="physics")
    with pytest.raises(ValueError, match="empty statement"):
        format_prompt("   ")
    with pytest.raises(ValueError, match="problem must be a Problem or a str"):
        format_prompt(3)  # type: ignore[arg-type]
