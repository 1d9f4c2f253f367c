"""Math benchmark problems from the JSONL files shipped in a1/data/files (see files/SOURCES.md), and
`arith`, generated arithmetic word problems (a1.data.arith).

Everything is offline: the six published evaluation sets are package data, and a user's own set is
read with `load_jsonl`. A deterministic calibration split is held out of each set so that the
conformal thresholds are never fitted on the questions they are evaluated on.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

# arith: short word problems made by a seeded generator (a1.data.arith), a task SmolLM2-135M can solve
DATASETS: tuple[str, ...] = ("math500", "aime24", "aime25", "amc23", "gsm8k", "olympiadbench", "arith")
SPLITS: tuple[str, ...] = ("calibration", "test", "all")
# Share of each dataset held out for calibration. A problem belongs to it when the first 8 bytes of
# sha256(id) (UTF-8), read as a big-endian integer, fall below CALIBRATION_FRACTION * 2**64: stable
# across runs, machines and Python versions (unlike hash()), and independent of file order.
CALIBRATION_FRACTION = 0.2
FILES_DIR = Path(__file__).resolve().parent / "files"
_REQUIRED = ("id", "problem", "answer")

PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class Problem:
    """One question: `answer` is the gold final answer only; `extra` holds the file's other fields
    (solution, subject, level, ...). `extra` is left out of the hash, so a Problem is hashable."""

    id: str
    problem: str
    answer: str
    dataset: str
    extra: dict = field(default_factory=dict, hash=False)


def _canonical(name: str) -> str:
    if not isinstance(name, str):
        raise ValueError(f"name must be a str, got {type(name).__name__}")
    key = name.strip().lower()
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
    return key


def dataset_path(name: str) -> Path:
    """Path of the bundled JSONL file of dataset `name` (case-insensitive)."""
    return FILES_DIR / f"{_canonical(name)}.jsonl"


def is_calibration(problem_id: str) -> bool:
    """Whether `problem_id` falls in the held-out calibration split (see CALIBRATION_FRACTION)."""
    digest = hashlib.sha256(problem_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") < int(CALIBRATION_FRACTION * 2**64)


def select_split(problems: list[Problem], split: str) -> list[Problem]:
    """The problems of `split` ("calibration", "test" or "all"), in their given order."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    if split == "all":
        return list(problems)
    want = split == "calibration"
    return [p for p in problems if is_calibration(p.id) == want]


def _answer_text(value: Any) -> str | None:
    """Answers may be JSON numbers (27, 27.0, 0.5): kept as the string a person would write."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return str(int(value)) if value.is_integer() else repr(value)
    return None


def _parse_record(path: PathLike, number: int, line: bytes, dataset: str) -> Problem:
    where = f"{path}:{number}"
    try:
        record = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ValueError(f"{where}: not UTF-8 ({e.reason} at byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{where}: invalid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
    for key in _REQUIRED:
        if key not in record:
            raise ValueError(f"{where}: field {key!r} is missing")
    for key in ("id", "problem"):
        value = record[key]
        if not isinstance(value, str):
            raise ValueError(f"{where}: field {key!r} must be a string, got {type(value).__name__}")
        if not value.strip():
            raise ValueError(f"{where}: field {key!r} is empty")
    answer = _answer_text(record["answer"])
    if answer is None:
        kind = type(record["answer"]).__name__
        raise ValueError(f"{where}: field 'answer' must be a string or a finite number, got {kind}")
    if not answer.strip():
        raise ValueError(f"{where}: field 'answer' is empty")
    extra = {k: v for k, v in record.items() if k not in _REQUIRED}
    return Problem(id=record["id"], problem=record["problem"], answer=answer, dataset=dataset, extra=extra)


def load_jsonl(path: PathLike, name: str | None = None) -> list[Problem]:
    """Problems of a JSONL file with one object per line holding `id`, `problem` and `answer`.

    `name` is the dataset name given to the problems (default: the file's stem). Blank lines are
    skipped. Any malformed record raises ValueError "{path}:{line}: ..." naming the field, since a
    silently skipped question would change every accuracy computed from the file.
    """
    dataset = name if name is not None else Path(path).stem
    if not isinstance(dataset, str) or not dataset:
        raise ValueError(f"name must be a non-empty str, got {name!r}")
    problems: list[Problem] = []
    first_line: dict[str, int] = {}
    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            problem = _parse_record(path, number, line, dataset)
            if problem.id in first_line:
                raise ValueError(
                    f"{path}:{number}: field 'id' repeats {problem.id!r} of line {first_line[problem.id]}"
                )
            first_line[problem.id] = number
            problems.append(problem)
    if not problems:
        raise ValueError(f"{path}: no records")
    return problems


def load_dataset(
    name: str, limit: int | None = None, seed: int | None = None, split: str = "test"
) -> list[Problem]:
    """Problems of a bundled dataset (one of DATASETS, case-insensitive).

    `split` picks the held-out "calibration" part, the disjoint "test" rest, or "all". With a `seed`
    the problems are shuffled by random.Random(seed) (reproducible); with seed None they keep file
    order. `limit` then keeps the first `limit` problems.
    """
    key = _canonical(name)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be None or an int >= 0, got {limit!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError(f"seed must be None or an int, got {seed!r}")
    problems = select_split(load_jsonl(dataset_path(key), name=key), split)
    if seed is not None:
        random.Random(seed).shuffle(problems)
    return problems if limit is None else problems[:limit]
