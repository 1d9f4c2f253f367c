"""User-message prompts per dataset family.

ATTS splits a draft's reasoning into steps at blank lines ("\\n\\n") and stops a sample once a
complete \\boxed{} answer exists, so every template asks for short steps separated by blank lines
and a boxed final answer. The text returned is the user message only: the caller applies the
checkpoint's chat template (tokenizer.apply_chat_template(messages, add_generation_prompt=True)).
"""
from __future__ import annotations

from typing import Union

from a1.data.datasets import Problem

_STEPS = (
    "Please reason step by step. Keep each step short, and separate consecutive steps with a "
    "blank line."
)

TEMPLATES: dict[str, str] = {
    # grade-school word problems: the gold answers are plain numbers
    "gsm8k": (
        "Solve the following grade-school math word problem.\n\n{problem}\n\n"
        + _STEPS
        + " Put the final answer, a number without units, within \\boxed{{}}."
    ),
    # competition problems (MATH500, AIME, AMC, OlympiadBench): answers are LaTeX expressions
    "math": (
        "Solve the following math problem.\n\n{problem}\n\n"
        + _STEPS
        + " Put your final answer, in simplest form, within \\boxed{{}}."
    ),
}
FAMILIES: tuple[str, ...] = tuple(TEMPLATES)
DEFAULT_FAMILY = "math"
_FAMILY_OF: dict[str, str] = {
    "gsm8k": "gsm8k",
    "arith": "gsm8k",  # one-step word problems with numeric answers: the grade-school template
    "math500": "math",
    "aime24": "math",
    "aime25": "math",
    "amc23": "math",
    "olympiadbench": "math",
}


def family_of(dataset_name: str) -> str:
    """Prompt family of a dataset: "gsm8k" for GSM8K and arith, otherwise "math".

    Names outside the bundled datasets (a user's own JSONL file) get DEFAULT_FAMILY, the
    competition-math prompt, which also suits word problems with numeric answers.
    """
    if not isinstance(dataset_name, str):
        raise ValueError(f"dataset_name must be a str, got {type(dataset_name).__name__}")
    return _FAMILY_OF.get(dataset_name.strip().lower(), DEFAULT_FAMILY)


def format_prompt(problem: Union[Problem, str], family: str | None = None) -> str:
    """The user message asking to solve `problem` (a Problem or its statement).

    The family defaults to family_of(problem.dataset) for a Problem and to "math" for a bare str.
    """
    if isinstance(problem, Problem):
        text = problem.problem
        default = family_of(problem.dataset)
    elif isinstance(problem, str):
        text = problem
        default = DEFAULT_FAMILY
    else:
        raise ValueError(f"problem must be a Problem or a str, got {type(problem).__name__}")
    if not text.strip():
        raise ValueError("problem has an empty statement")
    chosen = default if family is None else family
    if chosen not in TEMPLATES:
        raise ValueError(f"family must be one of {', '.join(FAMILIES)}; got {family!r}")
    return TEMPLATES[chosen].format(problem=text.strip())
