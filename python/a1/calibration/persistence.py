"""A Calibrator's settings, and its JSON file: settings, metadata and the scores of every stratum.

Calibration scores are only exchangeable with serving scores when both come from the same
models, sampling parameters, step segmentation and score kind. The file therefore carries the
caller's `metadata` describing all of that, and reading it with `expect` refuses a file whose
metadata differs from the run's, naming the first field that differs.

Layout (version 1):
    {"format": "a1.calibration", "version": 1,
     "settings": {"turn_edges": [1, 2, 4, 8], "per_question": false, ...},
     "metadata": {...},
     "strata": [{"bucket": 0, "scores": [...]}, {"question": "q7", "bucket": 2, "scores": [...]}]}
Strata are records rather than object keys so that their keys round-trip exactly (a question
id "7" stays a str, a bucket stays an int); a redraft's stratum (settings.by_attempt) adds
"attempt": a >= 1, and a file without by_attempt reads as before. Scores keep arrival order, so a
windowed stratum resumes with the same window. +-inf scores are written as the JSON extension Infinity.
"""
from __future__ import annotations

import json
import numbers
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

FORMAT = "a1.calibration"
FORMAT_VERSION = 1
RULES = ("conformal", "reference")

PathLike = Union[str, "os.PathLike[str]"]


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


@dataclass(frozen=True)
class CalibratorSettings:
    """The settings that define a Calibrator's strata and p-values (saved with its scores)."""

    turn_edges: Tuple[int, ...] = (1, 2, 4, 8)
    per_question: bool = False
    smoothed: bool = False
    window: Optional[int] = None
    seed: int = 0
    rule: str = "conformal"
    capacity: int = 1 << 16
    by_attempt: bool = False  # redrafts of the three-way rule in strata of their own (strata.py)

    def __post_init__(self) -> None:
        edges = tuple(self.turn_edges)
        for e in edges:
            if not _is_int(e) or e < 0:
                raise ValueError(f"turn_edges must be non-negative ints, got {self.turn_edges!r}")
        if any(b <= a for a, b in zip(edges, edges[1:])):
            raise ValueError(f"turn_edges must be strictly increasing, got {self.turn_edges!r}")
        object.__setattr__(self, "turn_edges", tuple(int(e) for e in edges))
        for name in ("per_question", "smoothed", "by_attempt"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")
        if self.rule not in RULES:
            raise ValueError(f"rule must be one of {RULES}, got {self.rule!r}")
        if self.smoothed and self.rule == "reference":
            raise ValueError("smoothed=True needs rule='conformal' (the reference rule has no smoothing)")
        if not _is_int(self.capacity) or self.capacity < 1:
            raise ValueError(f"capacity must be a positive int, got {self.capacity!r}")
        if self.window is not None and (not _is_int(self.window) or self.window < 1):
            raise ValueError(f"window must be a positive int or None, got {self.window!r}")
        if not _is_int(self.seed) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {self.seed!r}")
        if self.window is not None and self.window > self.capacity:
            raise ValueError(f"window must be <= capacity ({self.capacity}), got {self.window}")


def write_document(path: PathLike, settings: Dict[str, Any], metadata: Mapping[str, Any],
                   strata: List[Dict[str, Any]]) -> None:
    """Writes the calibration file atomically (a temporary file, then os.replace)."""
    if not isinstance(metadata, Mapping) or not all(isinstance(k, str) for k in metadata):
        raise TypeError("metadata must be a dict with str keys")
    doc = {"format": FORMAT, "version": FORMAT_VERSION, "settings": settings,
           "metadata": dict(metadata), "strata": strata}
    try:
        text = json.dumps(doc, indent=1)
    except (TypeError, ValueError) as err:
        raise TypeError(f"metadata must be JSON-serializable: {err}") from None
    path = os.fspath(path)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def check_expected(path: PathLike, stored: Mapping[str, Any], expect: Mapping[str, Any]) -> None:
    """ValueError naming the first key of `expect` missing from, or different in, `stored`.

    Values are compared after a JSON round trip of the expected one (tuples match lists).
    """
    for key, expected in expect.items():
        if key not in stored:
            raise ValueError(f"calibration file {path}: field {key!r} is missing, this run has {expected!r}")
        if json.loads(json.dumps(expected)) != stored[key]:
            raise ValueError(f"calibration file {path}: field {key!r} is {stored[key]!r}, this run has {expected!r}")


def read_document(path: PathLike, expect: Optional[Mapping[str, Any]] = None
                  ) -> Tuple[Dict[str, Any], Dict[str, Any], List[Dict[str, Any]]]:
    """Reads a calibration file: (settings, metadata, strata), after checking format and `expect`.

    Every way a file can be unusable (not UTF-8, not JSON, another format, malformed settings or
    strata) is a ValueError naming the file, so that no later step fails on it with an error that
    does not say which file was wrong."""
    where = f"calibration file {os.fspath(path)}"
    if os.path.isdir(path):
        raise ValueError(f"{where}: is a directory, not a file of `a1 calibrate`")
    with open(path, "rb") as f:
        raw = f.read()
    try:
        doc = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise ValueError(f"{where}: not a JSON text file (byte {err.start} is not UTF-8: a binary file?)") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{where}: not JSON ({err}): truncated or not a file of `a1 calibrate`?") from None
    except RecursionError:
        raise ValueError(f"{where}: not a calibration file (JSON nested too deeply)") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"{where}: not an {FORMAT} file (one written by `a1 calibrate`)")
    if doc.get("version") != FORMAT_VERSION:
        raise ValueError(f"{where}: format version {doc.get('version')!r}, this code reads {FORMAT_VERSION}")
    metadata = doc.get("metadata")
    if not isinstance(metadata, dict) or not isinstance(doc.get("settings"), dict) \
            or not isinstance(doc.get("strata"), list):
        raise ValueError(f"{where}: settings, metadata or strata malformed")
    try:
        settings = CalibratorSettings(**doc["settings"])
    except (TypeError, ValueError) as err:  # unknown keys, wrong types or values
        raise ValueError(f"{where}: settings malformed ({err})") from None
    for number, stratum in enumerate(doc["strata"]):
        problem = _stratum_problem(stratum, settings)
        if problem:
            raise ValueError(f"{where}: strata[{number}] malformed ({problem})")
    check_expected(path, metadata, expect or {})
    return doc["settings"], metadata, doc["strata"]


def _stratum_problem(stratum: Any, settings: CalibratorSettings) -> Optional[str]:
    """What is wrong with one stored stratum (None: nothing), checked here so that loading it
    into a Calibrator cannot fail half-way."""
    if not isinstance(stratum, dict):
        return f"expected an object, got {type(stratum).__name__}"
    bucket = stratum.get("bucket")
    if not _is_int(bucket) or not 0 <= bucket <= len(settings.turn_edges):
        return f"bucket must be an int in [0, {len(settings.turn_edges)}], got {bucket!r}"
    if settings.per_question:
        question = stratum.get("question")
        if not isinstance(question, str) and not _is_int(question):
            return f"question must be a str or int id (the file is per-question), got {question!r}"
    attempt = stratum.get("attempt", 0)
    if attempt and (not _is_int(attempt) or attempt < 1 or not settings.by_attempt):
        return f"attempt must be an int >= 1 in a file with by_attempt, got {attempt!r}"
    scores = stratum.get("scores")
    if not isinstance(scores, list):
        return f"scores must be a list, got {type(scores).__name__}"
    bad = [s for s in scores if isinstance(s, bool) or not isinstance(s, (int, float)) or s != s]  # s != s: NaN
    if bad:
        return f"scores must be real numbers (not NaN), got {bad[0]!r}"
    if settings.window is None and len(scores) > settings.capacity:
        return f"{len(scores)} scores, more than its capacity {settings.capacity}"
    return None
