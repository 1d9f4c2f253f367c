"""Is a predicted final answer equal to the gold one? math-verify first, normalized strings second.

math-verify (HuggingFace) parses LaTeX into SymPy and compares symbolically and numerically, so
\\frac{1}{2} = 0.5, 10\\% = 10, x=3 = 3, and (0,1] is an interval. It is called with its timeouts
disabled (parsing_timeout=None, timeout_seconds=None): its timeouts use signal.alarm, which raises
in any thread but the main one, and grading runs in the evaluation's worker threads.

math-verify never raises with raise_on_error=False (its default): a failure shows up as a parse
without any SymPy object (only the raw string, or nothing) or as verify() returning False. So the
documented fallback is decided on the parse result, with no exception handling here:

- both sides parse to SymPy: correct when verify(gold, prediction) holds, or else when the
  normalized strings (answers.normalize_answer) agree: equal normal forms are equal answers, and
  this rescues what math-verify mis-reads. `method` is "math_verify" or "normalized" accordingly;
- either side does not parse, or its parse could make verify() run for minutes (9^{9^9}; see
  _explosive, since without a timeout nothing would stop it): correct iff the normalized strings
  agree, method "normalized";
- no prediction (None or blank): incorrect, method "none".
Plain integers (after normalization: "025", "1,000", "x = 7", "12\\%") are compared as integers,
method "normalized", with no SymPy at all: math-verify would agree, and voting over N samples of
an integer-answer dataset compares many pairs.
"""
from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, Optional

from math_verify import parse, verify
from sympy import Add, Basic, MatrixBase, Pow, Product, Sum, preorder_traversal
from sympy.functions.combinatorial.factorials import (
    FallingFactorial, RisingFactorial, binomial, factorial, factorial2, subfactorial,
)
from sympy.functions.special.gamma_functions import gamma

from a1.answers.extract import normalize_answer

Method = Literal["math_verify", "normalized", "none"]


class _DisabledTimeoutNotice(logging.Filter):
    """Drops math-verify's one-time "Timeout is disabled ... handle the timeouting yourself" warning:
    the timeouts are off on purpose here, and _explosive is what stands in for them."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Timeout is disabled")


for _name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_name).addFilter(_DisabledTimeoutNotice())


@dataclass(frozen=True)
class Grade:
    """Outcome of grading one answer; `method` says which comparison decided it."""

    correct: bool
    method: Method


# Without timeouts, verify() can run for minutes or forever on answers whose evaluation explodes:
# 9^{9^9}, (x+y+1)^{100} (expanded), \sum_{k=1}^{10^6} k^k. Such parses are not handed to
# verify(); they are graded by normalized strings. The limits keep each verify() under ~1 s.
_MAX_EXPONENT = 10**6  # of a numeric base (3^{10^6}: 0.4 s; 3^{10^7}: 5 s)
_MAX_SUM_EXPONENT = 10  # of a base with a sum in it, which sympy may expand
_MAX_COMBINATORIAL = 10**5  # arguments of n!, binomial, gamma, ...
_MAX_TERMS = 10**4  # bounds of a \\sum or \\prod
_COMBINATORIAL = (factorial, factorial2, subfactorial, binomial, gamma, RisingFactorial, FallingFactorial)
_GROWING = (Pow, Sum, Product, *_COMBINATORIAL)


def _magnitude(x: Basic) -> float:
    """|x| of a numeric expression holding no power, factorial or sum (so evalf is cheap); inf
    when it is something else or does not fit a float."""
    if x.has(*_GROWING):
        return math.inf
    try:
        return abs(complex(x.evalf(8)))
    except (TypeError, ValueError, OverflowError):
        return math.inf


def _explosive(expr: Basic) -> bool:
    """Whether comparing `expr` risks an astronomically large evaluation (see the limits above)."""
    for node in preorder_traversal(expr):
        if isinstance(node, Pow) and node.exp.is_number:
            if node.base.is_number:
                limit = _MAX_EXPONENT
            else:  # x^{2024} stays a monomial; (x+1)^{2024} may be expanded
                limit = _MAX_SUM_EXPONENT if node.base.has(Add) else math.inf
            if limit < math.inf and _magnitude(node.exp) > limit:
                return True
        elif isinstance(node, _COMBINATORIAL):
            if any(a.is_number and _magnitude(a) > _MAX_COMBINATORIAL for a in node.args):
                return True
        elif isinstance(node, (Sum, Product)):
            for bound in (b for limit in node.limits for b in limit[1:]):
                if bound.is_number and _magnitude(bound) > _MAX_TERMS:
                    return True
    return False


@lru_cache(maxsize=16384)
def _parse(answer: str) -> Optional[tuple]:
    """math-verify's parse of a bare answer, or None when it has no SymPy object that is safe to
    compare. The answer is wrapped in \\boxed{} so that the whole string is read as one expression
    (math-verify extracts boxed content first). Cached: voting compares the same answers many
    times, and SymPy objects are immutable."""
    parsed = tuple(parse(f"\\boxed{{{answer}}}", parsing_timeout=None))
    if not any(isinstance(x, (Basic, MatrixBase)) for x in parsed):
        return None
    if any(isinstance(x, Basic) and _explosive(x) for x in parsed):
        return None
    return parsed


_INTEGER = re.compile(r"^[-+]?\d{1,4300}$")  # int() refuses longer digit strings


def _check_gold(gold: str) -> None:
    if not isinstance(gold, str) or not gold.strip():
        raise ValueError(f"gold must be a non-empty str, got {gold!r}")


def grade(predicted: str | None, gold: str) -> Grade:
    """Grade an extracted answer (the content of \\boxed{}, or None) against the gold answer."""
    _check_gold(gold)
    if predicted is not None and not isinstance(predicted, str):
        raise ValueError(f"predicted must be a str or None, got {type(predicted).__name__}")
    if predicted is None or not predicted.strip():
        return Grade(False, "none")
    predicted, gold = predicted.strip(), gold.strip()
    pred_normal, gold_normal = normalize_answer(predicted), normalize_answer(gold)
    if _INTEGER.match(pred_normal) and _INTEGER.match(gold_normal):  # AIME, AMC, GSM8K: no SymPy needed
        return Grade(int(pred_normal) == int(gold_normal), "normalized")
    same_normal = pred_normal == gold_normal
    gold_parsed, pred_parsed = _parse(gold), _parse(predicted)
    if gold_parsed is not None and pred_parsed is not None:
        if verify(list(gold_parsed), list(pred_parsed), timeout_seconds=None):
            return Grade(True, "math_verify")
        return Grade(True, "normalized") if same_normal else Grade(False, "math_verify")
    return Grade(same_normal, "normalized")


def is_equivalent(predicted: str | None, gold: str) -> bool:
    """Whether `predicted` is a correct answer for `gold` (see grade())."""
    return grade(predicted, gold).correct


@lru_cache(maxsize=65536)
def _equivalent_sorted(a: str, b: str) -> bool:
    return grade(a, b).correct or grade(b, a).correct


def answers_equivalent(a: str | None, b: str | None) -> bool:
    """Symmetric equivalence of two predicted answers, for grouping votes.

    math-verify's comparison is not symmetric (assignments such as x=3 are simplified on the
    prediction's side only), so two answers are equivalent when either one grades the other as
    correct. None or blank answers are never equivalent to anything, themselves included.
    """
    if a is None or b is None or not a.strip() or not b.strip():
        return False
    a, b = a.strip(), b.strip()
    if a == b:
        return True
    return _equivalent_sorted(*sorted((a, b)))
