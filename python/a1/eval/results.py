"""The run directory of `a1 eval --out DIR`: run.json, samples.jsonl, summary.json.

samples.jsonl is the durable record of an evaluation: one JSON line per finished sample, written
with one os.write and fsynced before the sample counts as done, so that a run killed at any point
(SIGKILL, power loss) can be resumed with `--out DIR` and only redoes unfinished samples. A kill
can tear at most the last line; RunStore.open drops it and truncates the file so that later appends
stay valid JSON lines. Any other damage is refused rather than guessed at.
"""
from __future__ import annotations

import fcntl
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

FORMAT = 1
RUN_FILE = "run.json"
SAMPLES_FILE = "samples.jsonl"
SUMMARY_FILE = "summary.json"

# key -> accepted types (bool is an int subclass: checked apart)
RECORD_KEYS: dict[str, tuple[type, ...]] = {
    "question_id": (str,),
    "sample_index": (int,),
    "dataset": (str,),
    "gold": (str,),
    "answer": (str, type(None)),
    "correct": (bool,),
    "finish_reason": (str,),
    "num_tokens": (int,),
    "draft_tokens": (int,),
    "target_tokens": (int,),
    "score_tokens": (int,),
    "latency": (int, float),
    "steps": (list,),
    "text": (str,),
}
_NUMBER_KEYS = {"sample_index", "num_tokens", "draft_tokens", "target_tokens", "score_tokens", "latency"}

PathLike = Union[str, os.PathLike]


class _Absent:
    def __repr__(self) -> str:
        return "<absent>"


_ABSENT = _Absent()


def validate_record(record: dict) -> None:
    """Raise ValueError naming the first missing or mistyped key of a sample record."""
    if not isinstance(record, dict):
        raise ValueError(f"record must be a dict, got {type(record).__name__}")
    missing = [k for k in RECORD_KEYS if k not in record]
    if missing:
        raise ValueError(f"record lacks required key(s) {missing}")
    for key, types in RECORD_KEYS.items():
        value = record[key]
        bad_bool = key in _NUMBER_KEYS and isinstance(value, bool)
        if bad_bool or not isinstance(value, types):
            names = "/".join("None" if t is type(None) else t.__name__ for t in types)
            raise ValueError(f"record key {key!r} must be {names}, got {value!r}")


def _key(record: dict) -> tuple[str, int]:
    return record["question_id"], record["sample_index"]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_json_atomic(path: Path, data: Any) -> None:
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
    _fsync_dir(path.parent)


def _read_run_json(path: Path) -> dict:
    try:
        run = json.loads(path.read_text())
    except ValueError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(run, dict) or run.get("format") != FORMAT:
        found = run.get("format") if isinstance(run, dict) else run
        raise ValueError(f"{path}: format {found!r}, this a1 reads format {FORMAT}")
    return run


def read_samples(path: Path) -> tuple[list[dict], int]:
    """Parse samples.jsonl. Returns (records, length in bytes of the complete records): a torn last
    line (no trailing newline, or not JSON) is left out; a bad line before it raises ValueError."""
    if not path.exists():
        return [], 0
    data = path.read_bytes()
    lines = data.split(b"\n")
    # data ending in "\n" splits into [..., b""]; otherwise the last piece is a torn line.
    complete, tail = lines[:-1], lines[-1]
    records: list[dict] = []
    seen: dict[tuple[str, int], int] = {}
    good_bytes = 0
    for number, line in enumerate(complete, start=1):
        last = number == len(complete) and not tail
        try:
            record = json.loads(line)
            validate_record(record)
        except (ValueError, UnicodeDecodeError) as e:
            if last:  # a torn (garbage-filled) final line: drop it like one without "\n"
                break
            raise ValueError(f"{path}: line {number} is not a valid sample record ({e})") from None
        key = _key(record)
        if key in seen:
            raise ValueError(f"{path}: line {number} repeats sample {key} of line {seen[key]}")
        seen[key] = number
        records.append(record)
        good_bytes += len(line) + 1
    return records, good_bytes


def _normalize(settings: dict) -> dict:
    """Settings as they come back from run.json (tuples -> lists, Paths -> str), for comparison."""
    return json.loads(json.dumps(settings, default=str))


class RunStore:
    """Writer of one run directory; holds an exclusive lock on samples.jsonl while open, so that
    two evaluations cannot interleave lines in the same directory."""

    def __init__(self, out_dir: Path, records: list[dict], fd: int) -> None:
        self.out_dir = out_dir
        self._records = records
        self._finished = {_key(r) for r in records}
        self._fd: Optional[int] = fd

    @classmethod
    def open(
        cls,
        out_dir: PathLike,
        settings: dict,
        *,
        versions: Optional[dict] = None,
        models: Optional[dict] = None,
        machine: Optional[dict] = None,
    ) -> "RunStore":
        """Create out_dir with run.json, or resume it: settings must equal the earlier run's."""
        if not isinstance(settings, dict):
            raise ValueError(f"settings must be a dict, got {type(settings).__name__}")
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        new = _normalize(settings)
        run_path, samples = out / RUN_FILE, out / SAMPLES_FILE
        if run_path.exists():
            old = _read_run_json(run_path).get("settings", {})
            for key in sorted(set(old) | set(new), key=str):
                was, now = old.get(key, _ABSENT), new.get(key, _ABSENT)
                if was != now:
                    raise ValueError(
                        f"{out_dir}: setting {key!r} was {was!r} in the earlier run, now {now!r}; "
                        "use another --out"
                    )
        elif samples.exists():
            raise ValueError(f"{out_dir}: has {SAMPLES_FILE} but no {RUN_FILE}; use another --out")
        else:
            run = {
                "format": FORMAT,
                "settings": new,
                "versions": versions or {},
                "models": models or {},
                "machine": machine or {},
            }
            _write_json_atomic(run_path, _normalize(run))

        fd = os.open(samples, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ValueError(f"{out_dir}: another process is writing this run") from None
            records, good = read_samples(samples)
            if os.fstat(fd).st_size != good:  # drop the torn last line
                os.ftruncate(fd, good)
            os.fsync(fd)
            _fsync_dir(out)  # the new file's directory entry
        except BaseException:
            os.close(fd)
            raise
        return cls(out, records, fd)

    def finished(self) -> set[tuple[str, int]]:
        """(question_id, sample_index) of every sample already recorded: the ones to skip."""
        return set(self._finished)

    def records(self) -> list[dict]:
        return list(self._records)

    def append(self, record: dict) -> None:
        """Durably add one finished sample: a single write of its line, then fsync."""
        if self._fd is None:
            raise ValueError(f"{self.out_dir}: RunStore is closed")
        validate_record(record)
        key = _key(record)
        if key in self._finished:
            raise ValueError(f"{self.out_dir}: sample {key} is already recorded")
        line = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        view = memoryview(line)
        while view:  # os.write on a regular file writes it all; loop for the letter of the API
            view = view[os.write(self._fd, view):]
        os.fsync(self._fd)
        self._finished.add(key)
        self._records.append(record)

    def write_summary(self, summary: dict) -> None:
        """Write summary.json atomically (a crash leaves the old file or the new one)."""
        if not isinstance(summary, dict):
            raise ValueError(f"summary must be a dict, got {type(summary).__name__}")
        _write_json_atomic(self.out_dir / SUMMARY_FILE, _normalize(summary))

    def close(self) -> None:
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)  # releases the flock
            self._fd = None

    def __enter__(self) -> "RunStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


@dataclass
class Run:
    """A run directory as read back for reports (read-only: a torn last line is skipped, not cut)."""

    path: Path
    settings: dict
    records: list[dict]
    summary: Optional[dict] = None  # summary.json's content; None while the run is unfinished
    models: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    machine: dict = field(default_factory=dict)

    _metrics: Optional[dict] = field(default=None, repr=False, compare=False)

    @property
    def name(self) -> str:
        return self.path.name

    def setting(self, key: str, default: Any = None) -> Any:
        return self.settings.get(key, default)

    @property
    def metrics(self) -> dict:
        """summary.json's metrics; for an unfinished run, a1.eval.metrics.summarize of its records."""
        if self.summary is not None and isinstance(self.summary.get("summary"), dict):
            return self.summary["summary"]
        if self._metrics is None:
            from a1.eval.metrics import summarize  # grading pulls in SymPy: only when needed

            alpha = self.settings.get("alpha")
            ok = isinstance(alpha, (int, float)) and 0 < alpha < 1
            self._metrics = summarize(self.records, alpha=alpha if ok else None)
        return self._metrics

    @property
    def wall_time(self) -> Optional[float]:
        return None if self.summary is None else self.summary.get("wall_time")

    @property
    def barrier_wait(self) -> float:
        return 0.0 if self.summary is None else float(self.summary.get("barrier_wait") or 0.0)


def load_run(run_dir: PathLike) -> Run:
    """Read a run directory written by RunStore."""
    path = Path(run_dir)
    run_path = path / RUN_FILE
    if not run_path.exists():
        raise ValueError(f"{run_dir}: no {RUN_FILE}; not a run directory of `a1 eval --out`")
    run = _read_run_json(run_path)
    records, _ = read_samples(path / SAMPLES_FILE)
    summary_path = path / SUMMARY_FILE
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else None
    return Run(
        path=path,
        settings=run.get("settings", {}),
        records=records,
        summary=summary,
        models=run.get("models", {}),
        versions=run.get("versions", {}),
        machine=run.get("machine", {}),
    )
