"""Final-answer extraction from generated text, and the string normalization used as grading fallback.

The model is prompted to end with \\boxed{answer}. `extract_boxed` finds it (nested braces,
`\\boxed {..}`, `\\fbox{..}`, `\\boxed 5`), and `has_final_answer` is the stop test of the ATTS
policy: a sample is finished once a complete boxed answer exists.
"""
from __future__ import annotations

import re

_BOX = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_TOKEN = re.compile(r"[^\s${}]+")


def _braced(text: str, open_at: int) -> int | None:
    """Index just past the brace matching text[open_at] == "{", or None when it never closes.
    Escaped braces (\\{, \\}) and any other backslash pair do not count."""
    depth = 0
    i = open_at
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return None


def extract_boxed(text: str) -> str | None:
    """Content of the last complete \\boxed{...} (or \\fbox{...}) in `text`, stripped.

    Boxes are scanned left to right; a box nested inside another belongs to the outer one. A box
    whose braces never close (a truncated generation) is skipped, and so is an empty one such as
    the "\\boxed{}" a model echoes from the instructions. `\\boxed 5` (a space, then one token) is
    accepted too. None when no complete, non-empty box exists.
    """
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    found: str | None = None
    pos = 0
    while True:
        match = _BOX.search(text, pos)
        if match is None:
            return found
        i = match.end()
        while i < len(text) and text[i].isspace():
            i += 1
        pos = match.end()
        if i < len(text) and text[i] == "{":
            end = _braced(text, i)
            if end is None:
                continue  # unclosed: later boxes may still be complete
            content = text[i + 1 : end - 1].strip()
            pos = end
        elif i > match.end():  # "\boxed 5": needs the space, else it is another command
            token = _TOKEN.match(text, i)
            if token is None:
                continue
            content = token.group(0)
            pos = token.end()
        else:
            continue
        if content:
            found = content


def has_final_answer(text: str) -> bool:
    """Whether `text` holds a complete, non-empty boxed answer (the ATTS policy's stop test)."""
    if "\\boxed" not in text and "\\fbox" not in text:  # fast path on every generated step
        return False
    return extract_boxed(text) is not None


_UNIT_TAIL = re.compile(r"^(.*?[\d}])\s*\\(?:text|mbox|mathrm)\{[^{}]*\}(?:\^\{?\d\}?)?$")
_TEXT_WRAP = re.compile(r"\\(?:text|textbf|textit|mbox|mathrm|mathbf)\{([^{}]*)\}")
_LEFT_RIGHT = re.compile(r"\\(?:left|right)(?![A-Za-z])")
_SPACING = re.compile(r"\\[!,;: ]|~|\\(?:quad|qquad|displaystyle)(?![A-Za-z])")
_DEGREES = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|\\circ(?![A-Za-z])|°|\\degree(?![A-Za-z])")
_ASSIGN = re.compile(r"^(?:[A-Za-z]|\\[A-Za-z]+)(?:_\{?\w+\}?)?\s*=\s*(?=[^=]+$)")
_SHORT_FRAC = re.compile(r"\\frac(\d)(\d)")
_SHORT_SQRT = re.compile(r"\\sqrt(\d+)")
_THOUSANDS = re.compile(r"^-?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_INTEGRAL_FLOAT = re.compile(r"^(-?\d+)\.0+$")


def normalize_answer(s: str | None) -> str:
    """A canonical string for comparing answers when math-verify cannot parse them.

    In order: unwrap a whole \\boxed{..}; drop $ and \\$; drop \\left/\\right, spacing commands
    (\\! \\, \\; \\: \\quad ~ \\displaystyle); \\dfrac/\\tfrac -> \\frac; drop degrees (^\\circ, °),
    percent signs (\\%, %) and a trailing \\text{unit} after a number; unwrap \\text{X} -> X; drop a
    leading "x =" (one variable, only one "="); remove all whitespace; \\frac12 -> \\frac{1}{2},
    \\sqrt2 -> \\sqrt{2}; "1,000" -> "1000"; drop trailing periods; "5.0" -> "5"; ".5" -> "0.5".
    Case is kept (A and a may be different variables). None gives "".
    """
    if s is None:
        return ""
    text = s.strip()
    if text.startswith(("\\boxed", "\\fbox")):
        inner = extract_boxed(text)
        if inner is not None:
            text = inner
    text = text.replace("\\$", "").replace("$", "")
    text = _LEFT_RIGHT.sub("", text)
    text = _SPACING.sub(" ", text)
    text = text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    text = _DEGREES.sub("", text)
    text = text.replace("\\%", "").replace("%", "")
    text = text.replace("{,}", ",").strip()
    unit = _UNIT_TAIL.match(text)
    if unit:
        text = unit.group(1)
    text = _TEXT_WRAP.sub(r"\1", text)
    text = _ASSIGN.sub("", text.strip())
    text = re.sub(r"\s+", "", text)
    text = _SHORT_FRAC.sub(r"\\frac{\1}{\2}", text)
    text = _SHORT_SQRT.sub(r"\\sqrt{\1}", text)
    if _THOUSANDS.match(text):
        text = text.replace(",", "")
    text = text.rstrip(".")
    integral = _INTEGRAL_FLOAT.match(text)
    if integral:
        text = integral.group(1)
    if text.startswith("."):
        text = "0" + text
    elif text.startswith("-."):
        text = "-0" + text[1:]
    return text
