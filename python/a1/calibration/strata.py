"""The keys of a Calibrator's strata, and the checks of what goes into them.

A stratum is a turn bucket (bisect_right(turn_edges, turn)), optionally per question, optionally
per attempt (by_attempt: a redraft of the three-way rule is calibrated against earlier redrafts of
the same attempt, not against first drafts, which are scored on easier prefixes). Keys:

    first drafts:     bucket                      (question, bucket)            [per_question]
    redraft a >= 1:   (bucket, "redraft<a>")      (question, bucket, "redraft<a>")

so a run without redrafts (or without by_attempt) keeps the keys it always had. A stratum's pool
(pool_key) is where the warm-up rule "pooled" looks while the stratum holds too few scores of its
own: its turn bucket over all questions and attempts. Turns are never mixed (their scores drift);
a per-question stratum borrows from the other questions, a redraft's from the bucket's drafts.
"""
from __future__ import annotations

import math
import numbers
import operator
from typing import Any, Hashable, Optional, Tuple, Union

import numpy as np
import torch

StratumKey = Union[int, Tuple[Union[str, int], ...]]
REDRAFT = "redraft"


def check_score(score: Any, name: str = "score") -> float:
    if isinstance(score, bool) or not isinstance(score, (numbers.Real, torch.Tensor, np.ndarray)):
        raise TypeError(f"{name} must be a real number, got {type(score).__name__}")
    try:
        value = float(score)
    except (TypeError, ValueError) as err:  # tensors/arrays of more than one element
        raise TypeError(f"{name} must be a real number: {err}") from None
    if math.isnan(value):
        raise ValueError(f"{name} is NaN")
    return value


def check_turn(turn: Any, name: str = "turn") -> int:
    if isinstance(turn, bool):
        raise TypeError(f"{name} must be a non-negative int, got bool")
    try:
        value = operator.index(turn)
    except TypeError:
        raise TypeError(f"{name} must be a non-negative int, got {type(turn).__name__}") from None
    if value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value}")
    return value


def question_id(question: Any) -> Union[str, int]:
    if question is None:
        raise ValueError("question is required when per_question=True")
    if isinstance(question, bool) or not isinstance(question, (str, numbers.Integral)):
        raise TypeError(f"question must be a str or int id, got {type(question).__name__}")
    return question if isinstance(question, str) else int(question)


def make_key(bucket: int, question: Optional[Union[str, int]], attempt: int, per_question: bool,
             by_attempt: bool) -> StratumKey:
    """The stratum key of (bucket, question, attempt) under these settings (module doc)."""
    base: Tuple = (question_id(question), bucket) if per_question else (bucket,)
    if by_attempt and attempt > 0:
        return base + (f"{REDRAFT}{attempt}",)
    return base if per_question else bucket


def split_key(key: StratumKey, per_question: bool) -> Tuple[Optional[Union[str, int]], int, int]:
    """(question or None, bucket, attempt) of a key made by make_key."""
    parts = key if isinstance(key, tuple) else (key,)
    attempt = 0
    if isinstance(parts[-1], str) and parts[-1].startswith(REDRAFT) and len(parts) == (3 if per_question else 2):
        attempt = int(parts[-1][len(REDRAFT):])
        parts = parts[:-1]
    return (parts[0], parts[1], attempt) if per_question else (None, parts[0], attempt)


def pool_key(key: StratumKey, per_question: bool) -> Hashable:
    """The pool of a stratum: its turn bucket over all questions and attempts."""
    return ("bucket", split_key(key, per_question)[1])


def level_key(key: StratumKey, per_question: bool) -> StratumKey:
    """The stratum an adaptive level belongs to: the key without its question. A question's stratum
    sees a handful of tests, too few for a level to move (gamma per test), so per-question strata
    share their bucket's (and attempt's) level, whose long run is the run's."""
    if not per_question:
        return key
    _, bucket, attempt = split_key(key, per_question)
    return make_key(bucket, None, attempt, False, attempt > 0)


def record_of(key: StratumKey, per_question: bool) -> dict:
    """The stratum's identity as a calibration file stores it (persistence.py)."""
    question, bucket, attempt = split_key(key, per_question)
    record: dict = {"bucket": bucket}
    if per_question:
        record["question"] = question
    if attempt:
        record["attempt"] = attempt
    return record
