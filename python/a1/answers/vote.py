"""Voting over the samples' answers: equivalence classes (math-verify, a1.answers.grading) and the
majority. Below both the policy (which votes a prompt's samples) and the evaluation (metrics)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

from a1.answers.grading import answers_equivalent


@dataclass
class AnswerClass:
    """Answers judged equivalent: `representative` is the first member met, `indices` the positions
    of all members in the input, `weight` their summed weight."""

    representative: str
    indices: list[int] = field(default_factory=list)
    weight: float = 0.0


def group_answers(
    answers: Sequence[Optional[str]],
    weights: Optional[Sequence[float]] = None,
    equivalent: Callable[[str, str], bool] = answers_equivalent,
) -> list[AnswerClass]:
    """Equivalence classes of the non-empty answers, in order of first appearance. Each answer
    joins the first class whose representative it is equivalent to (equivalence need not be
    transitive, so comparing with the representative keeps the result order-defined)."""
    if weights is None:
        weights = [1.0] * len(answers)
    elif len(weights) != len(answers):
        raise ValueError(f"weights has {len(weights)} entries for {len(answers)} answers")
    classes: list[AnswerClass] = []
    for i, (answer, weight) in enumerate(zip(answers, weights)):
        bad = isinstance(weight, bool) or not isinstance(weight, (int, float))
        if bad or not math.isfinite(weight) or weight < 0:
            raise ValueError(f"weights[{i}] must be a finite number >= 0, got {weight!r}")
        if answer is not None and not isinstance(answer, str):
            raise ValueError(f"answers[{i}] must be a str or None, got {type(answer).__name__}")
        if answer is None or not answer.strip():
            continue
        for cls in classes:
            if equivalent(cls.representative, answer):
                break
        else:
            cls = AnswerClass(answer)
            classes.append(cls)
        cls.indices.append(i)
        cls.weight += float(weight)
    return classes


def majority_vote(
    answers: Sequence[Optional[str]],
    weights: Optional[Sequence[float]] = None,
    equivalent: Callable[[str, str], bool] = answers_equivalent,
) -> Optional[str]:
    """The representative of the answer class with the most members (or the largest weight sum).

    None answers never win; ties go to the class that appeared first; None when no sample answered.
    """
    classes = group_answers(answers, weights, equivalent)
    return classes[winner(classes, weighted=True)].representative if classes else None


def winner(classes: list[AnswerClass], weighted: bool) -> int:
    """Index of the class with the largest weight sum (or member count); the earliest on ties."""
    if weighted:
        return max(range(len(classes)), key=lambda j: (classes[j].weight, -j))
    return max(range(len(classes)), key=lambda j: (len(classes[j].indices), -j))
