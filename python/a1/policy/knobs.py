"""How a policy setting is defined once: its default, its check, its help text and how a command
line spells it. PolicyConfig (config.py) declares every field with `knob(...)`; its constructor
runs each field's check (the only place a value is checked), and `a1 eval / calibrate / generate`
build their flags from the same fields (a1.cli), so no layer writes a field out again.

A check takes (value, field name) and returns the value as stored (a tuple for a list, a float
for an int level) or raises TypeError / ValueError naming the field.
"""
from __future__ import annotations

import codecs
import json
import numbers
from dataclasses import field
from typing import Any, Callable, Optional, Sequence

from a1.engine.sampling_params import check_temperature, check_top_p

Check = Callable[[Any, str], Any]


def knob(default: Any, help: str, check: Check, parse: Callable[[str], Any] = str, *,
         choices: Optional[Sequence[str]] = None, aliases: Sequence[str] = (), metavar: Optional[str] = None) -> Any:
    """A PolicyConfig field: `parse` turns a command-line word into the value `check` then takes;
    `aliases` are older flag spellings kept working (e.g. --samples for --num-samples)."""
    meta = {"help": help, "check": check, "parse": parse, "choices": choices, "aliases": tuple(aliases),
            "metavar": metavar}
    if isinstance(default, (list, dict, set)):
        raise TypeError("mutable defaults are not allowed: use a tuple")
    return field(default=default, metadata=meta)


# ---------------------------------------------------------------------------- checks
def _real(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r}")
    return float(value)


def level(value: Any, name: str) -> float:
    """A level in (0, 1) (NaN refused)."""
    v = _real(value, name)
    if not 0.0 < v < 1.0:
        raise ValueError(f"{name} must be in (0, 1), got {value!r}")
    return v


def optional(check: Check) -> Check:
    def check_optional(value: Any, name: str) -> Any:
        return None if value is None else check(value, name)

    return check_optional


def int_at_least(minimum: Optional[int]) -> Check:
    def check_int(value: Any, name: str) -> int:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"{name} must be an int, got {value!r}")
        if minimum is not None and value < minimum:
            raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
        return int(value)

    return check_int


def boolean(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return value


def step_size(value: Any, name: str) -> float:
    """A step size in (0, 1] (NaN refused)."""
    v = _real(value, name)
    if not 0.0 < v <= 1.0:
        raise ValueError(f"{name} must be in (0, 1], got {value!r}")
    return v


def one_of(options: Sequence[str]) -> Check:
    def check_choice(value: Any, name: str) -> str:
        if value not in options:
            raise ValueError(f"{name} must be one of {tuple(options)}, got {value!r}")
        return value

    return check_choice


def temperature(value: Any, name: str) -> float:
    return check_temperature(value, name)


def top_p(value: Any, name: str) -> float:
    return check_top_p(value, name)


def turn_edges(value: Any, name: str) -> tuple[int, ...]:
    """Strictly increasing ints >= 0 (the first turn of each stratum after the first)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"{name} must be a list of ints, got {value!r}")
    edges = tuple(value)
    if any(isinstance(e, bool) or not isinstance(e, numbers.Integral) or e < 0 for e in edges) or \
            list(edges) != sorted(set(edges)):
        raise ValueError(f"{name} must be strictly increasing ints >= 0, got {value!r}")
    return tuple(int(e) for e in edges)


def stop_strings(value: Any, name: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence) or \
            not all(isinstance(s, str) and s for s in value):
        raise TypeError(f"{name} must be a list of non-empty strings, got {value!r}")
    return tuple(value)


# ---------------------------------------------------------------------------- command-line words
def parse_int(text: str) -> int:
    return int(text)


def parse_float(text: str) -> float:
    return float(text)


def parse_bool(text: str) -> bool:
    word = text.strip().lower()
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def parse_optional_int(text: str) -> Optional[int]:
    return None if text.strip().lower() in ("none", "auto") else int(text)


def parse_optional_float(text: str) -> Optional[float]:
    return None if text.strip().lower() in ("none", "off") else float(text)


def parse_ints(text: str) -> tuple[int, ...]:
    """"1,2,4,8" (an empty word: no edges, one stratum)."""
    return tuple(int(part) for part in text.split(",") if part.strip())


def parse_strings(text: str) -> tuple[str, ...]:
    """A JSON list of strings, or one string with backslash escapes ("\\n\\n")."""
    if text.lstrip().startswith("["):
        value = json.loads(text)
        if not isinstance(value, list):
            raise ValueError(f"expected a JSON list of strings, got {text!r}")
        return tuple(value)
    return (codecs.decode(text, "unicode_escape"),)
