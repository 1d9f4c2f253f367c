"""The JSON files of a run directory (run.json, summary.json): atomic writes, and reads that name a
damaged file and say what to do about it, instead of a bare JSON error.

A damaged summary.json can be rebuilt from samples.jsonl by rerunning `a1 eval` once it is
deleted; a damaged run.json cannot (it holds the settings a resumed run must repeat).
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Union

FORMAT = 2  # 2: settings hold every policy field by its own name, and the invocations
RUN_FILE = "run.json"
SAMPLES_FILE = "samples.jsonl"
SUMMARY_FILE = "summary.json"

PathLike = Union[str, os.PathLike]


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write data to path through a temp file + os.replace: a reader sees the old or the new file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def damaged(path: Path, why: str) -> ValueError:
    """The error of a damaged run.json or summary.json: which file, what is wrong, what to do."""
    if path.name == SUMMARY_FILE:
        fix = (f"it is rebuilt from {SAMPLES_FILE}: delete it and rerun the same `a1 eval --out {path.parent}` "
               "(the timings of the invocation that wrote it are lost)")
    else:
        fix = (f"it holds the run's settings, which cannot be rebuilt: restore it from a backup, or start again "
               f"with another --out (or delete {path.parent})")
    return ValueError(f"{path} is damaged ({why}); {fix}")


def _read_json_object(path: Path) -> dict:
    """A JSON object file of the run directory, or ValueError naming it as damaged."""
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise damaged(path, f"not text: byte {e.start} is not UTF-8") from None
    except ValueError as e:  # json.JSONDecodeError
        raise damaged(path, f"not valid JSON: {e}") from None
    except RecursionError:
        raise damaged(path, "JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise damaged(path, f"a JSON {type(data).__name__}, not an object")
    return data


def read_run_json(path: Path) -> dict:
    run = _read_json_object(path)
    if run.get("format") != FORMAT:
        raise ValueError(f"{path}: format {run.get('format')!r}, this a1 reads format {FORMAT}")
    for key in ("settings", "versions", "models", "machine"):
        if not isinstance(run.get(key, {}), dict):
            raise damaged(path, f"{key!r} is not an object")
    if "settings" not in run:
        raise damaged(path, "no 'settings'")
    return run


_SUMMARY_OBJECTS = ("summary", "takeover", "phase_tokens", "invocation", "engine", "calibration")
_SUMMARY_NUMBERS = ("wall_time", "barrier_wait", "total_time")


def read_summary(path: Path) -> dict:
    """summary.json, or ValueError naming it as damaged (and saying how to rebuild it). Parts may
    be absent (a report says so), but not of another type."""
    summary = _read_json_object(path)
    for key in _SUMMARY_OBJECTS:
        if not isinstance(summary.get(key, {}), dict):
            raise damaged(path, f"{key!r} is not an object")
    for key in _SUMMARY_NUMBERS:
        value = summary.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise damaged(path, f"{key!r} is not a number")
    return summary


def normalize(settings: dict) -> dict:
    """Settings as they come back from run.json (tuples -> lists, Paths -> str), for comparison."""
    return json.loads(json.dumps(settings, default=str))
