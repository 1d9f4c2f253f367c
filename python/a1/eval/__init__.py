"""Evaluation: answer extraction, grading, and metrics over per-sample records.

Names are imported on first use, so that `import a1.eval.results` (or answers) does not pull in
math-verify and SymPy, which only grading and metrics need.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "extract_boxed": "a1.answers.extract",
    "has_final_answer": "a1.answers.extract",
    "normalize_answer": "a1.answers.extract",
    "Grade": "a1.answers.grading",
    "grade": "a1.answers.grading",
    "is_equivalent": "a1.answers.grading",
    "answers_equivalent": "a1.answers.grading",
    "AnswerClass": "a1.answers.vote",
    "clopper_pearson": "a1.eval.metrics",
    "group_answers": "a1.answers.vote",
    "majority_vote": "a1.answers.vote",
    "pass_at_k": "a1.eval.metrics",
    "percentiles": "a1.eval.metrics",
    "summarize": "a1.eval.metrics",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'a1.eval' has no attribute {name!r}")
