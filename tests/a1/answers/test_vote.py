"""The vote over a prompt's answers: equivalence classes, ties to the first class, None never wins,
weights."""
from __future__ import annotations

import pytest

from a1.answers.vote import group_answers, majority_vote


def test_majority_vote_counts_and_ties() -> None:
    assert majority_vote(["1", "2", "2", None, "3"]) == "2"
    assert majority_vote(["5", "7", "7", "5"]) == "5"  # tie: 5 appeared first
    assert majority_vote(["7", "5", "5", "7"]) == "7"
    assert majority_vote([None, None, None]) is None  # unanswerable
    assert majority_vote([]) is None
    assert majority_vote([None, None, "4"]) == "4"  # None never wins, however many
    assert majority_vote(["", " ", "4"]) == "4"  # blank answers count as no answer


def test_majority_vote_uses_equivalence_classes() -> None:
    # string equality would make 3 the winner; 0.5 = \frac12 = 1/2 is one class of three
    answers = ["3", "0.5", "\\frac12", "3", "\\frac{1}{2}"]
    assert majority_vote(answers) == "0.5"  # the first member represents the class
    assert majority_vote(answers, equivalent=lambda a, b: a == b) == "3"
    classes = group_answers(answers)
    assert [(c.representative, c.indices) for c in classes] == [("3", [0, 3]), ("0.5", [1, 2, 4])]


def test_weighted_vote_flips_the_winner() -> None:
    answers = ["10", "10", "12"]
    assert majority_vote(answers) == "10"
    assert majority_vote(answers, weights=[0.2, 0.3, 0.9]) == "12"
    assert majority_vote(answers, weights=[0.5, 0.25, 0.75]) == "10"  # 0.75 each: the earlier class wins
    assert majority_vote(answers, weights=[0.5, 0.5, 0.9]) == "10"
    assert majority_vote(["1", None], weights=[0.1, 100.0]) == "1"
    with pytest.raises(ValueError, match="weights has 2 entries for 3 answers"):
        majority_vote(answers, weights=[1.0, 1.0])
    with pytest.raises(ValueError, match=r"weights\[1\] must be a finite number >= 0"):
        majority_vote(answers, weights=[1.0, -1.0, 1.0])
    with pytest.raises(ValueError, match=r"answers\[0\] must be a str or None"):
        majority_vote([5])  # type: ignore[list-item]
