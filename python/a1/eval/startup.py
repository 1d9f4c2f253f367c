"""Start-up checks of `a1 eval` and `a1 calibrate`: everything that can refuse a run is checked
before the run leaves a trace (run.json, a calibration file) and before any drafting, so that a
refused start leaves nothing that blocks the fixed rerun, and fails in seconds, not minutes.

    check_out_dir(out)                      # --out can be created and written (nothing created)
    check_out_file(path)                    # the calibration file can be written there
    check_run(settings, llm, problems)      # the policy accepts the models, every prompt fits

check_run makes the refusals of a1.policy.generate that need the loaded models (a1.policy.prepare:
RunContext's own, such as speculative_tokens in self mode, the calibration file against the
models' metadata, the room every prompt leaves below max_model_len) with the questions named.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from a1.eval.settings import EvalSettings

# ---------------------------------------------------------------------------- output paths
def _existing_ancestor(path: Path) -> Path:
    """The nearest ancestor of path that exists (spelled as the user spelled path)."""
    for parent in path.parents:
        if parent.exists():
            return parent
    return Path.cwd()  # a relative path's last parent is "." (exists unless cwd was removed)


def check_out_dir(out: Path, name: str = "out") -> None:
    """ValueError (prefixed `name`) unless `out` is a writable directory or can be made one by
    mkdir -p: every existing ancestor must be a directory. Creates nothing."""
    out = Path(out)
    if out.exists():
        if not out.is_dir():
            raise ValueError(f"{name}: {out} is a file, not a directory")
        where = out
    else:
        where = _existing_ancestor(out)
        if not where.is_dir():
            raise ValueError(f"{name}: cannot create {out}: {where} is a file, not a directory")
    if not os.access(where, os.W_OK | os.X_OK):
        raise ValueError(f"{name}: cannot write in {where} (permission denied)")


def check_out_file(path: Path, name: str = "out") -> None:
    """ValueError (prefixed `name`) unless a file can be written at `path`: not a directory, in an
    existing writable directory. Creates nothing."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{name}: {path} is a directory; give the file's path")
    parent = path.parent
    if not parent.exists():
        where = _existing_ancestor(parent)
        if not where.is_dir():
            raise ValueError(f"{name}: cannot write {path}: {where} is a file, not a directory")
        raise ValueError(f"{name}: cannot write {path}: the directory {parent} does not exist")
    if not parent.is_dir():
        raise ValueError(f"{name}: cannot write {path}: {parent} is a file, not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{name}: cannot write {path}: no permission to write in {parent}")


# ---------------------------------------------------------------------------- the run's checks
def describe_question(settings: EvalSettings, problem) -> str:
    """How an error names a question: its id, and its line in the user's --data file."""
    if settings.data is None:
        return f"question {problem.id!r} of dataset {settings.dataset_name}"
    line = _line_of(Path(settings.data), problem.id)
    where = f"line {line} of {settings.data}" if line is not None else settings.data
    return f"question {problem.id!r} ({where})"


def _line_of(path: Path, question_id: str) -> Optional[int]:
    """The line of `path` holding `question_id` (the file load_jsonl already accepted)."""
    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            if line.strip():
                record = json.loads(line)
                if isinstance(record, dict) and record.get("id") == question_id:
                    return number
    return None


def check_run(settings: EvalSettings, llm, problems: list, policy=None, calibration=None):
    """Every check of a run that needs the loaded models, before anything is written or drafted:
    a1.policy.prepare, the same checks generate() makes (the policy's refusals, each prompt's room
    below max_model_len, a calibration file's metadata against these models and settings), with
    the questions named by id (and line, for --data). Returns the prepared run."""
    from a1.data import format_prompt
    from a1.policy.generate import prepare

    return prepare([format_prompt(p) for p in problems], target=llm, config=policy or settings.policy,
                   calibration=settings.calibration if calibration is None else calibration, chat=True,
                   question_ids=[p.id for p in problems], prompt_source=settings.prompt_source(),
                   describe=lambda i: describe_question(settings, problems[i]), warmup_prior=settings.warmup_prior)
