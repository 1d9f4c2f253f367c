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
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from a1.eval.run_files import (FORMAT, RUN_FILE, SAMPLES_FILE, SUMMARY_FILE, PathLike, fsync_dir, normalize,
                               read_run_json, read_summary, write_json_atomic)

__all__ = ["FORMAT", "RUN_FILE", "SAMPLES_FILE", "SUMMARY_FILE", "RECORD_KEYS", "Run", "RunStore", "has_records",
           "load_run", "read_samples", "read_summary", "validate_record"]

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
# optional keys: the invocation that ran the sample (its index in run.json) and when it finished
OPTIONAL_KEYS: dict[str, tuple[type, ...]] = {"invocation": (int,), "finished_at": (int, float)}

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
    for key, types in OPTIONAL_KEYS.items():
        value = record.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, types)):
            raise ValueError(f"record key {key!r} must be {'/'.join(t.__name__ for t in types)}, got {value!r}")


def _key(record: dict) -> tuple[str, int]:
    return record["question_id"], record["sample_index"]


def has_records(out_dir: PathLike) -> bool:
    """Whether out_dir holds recorded samples (a run to resume, whose settings bind a rerun)."""
    records, _ = read_samples(Path(out_dir) / SAMPLES_FILE)
    return bool(records)


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


def _in_use(out_dir: PathLike) -> str:
    return (f"{out_dir} is in use: another process is writing this run directory; wait for it to end, or use "
            "another --out")


def _check_same(out_dir: PathLike, old: dict, new: dict) -> None:
    """ValueError naming the first setting of a resumed run that differs from its run.json."""
    for key in sorted(set(old) | set(new), key=str):
        was, now = old.get(key, _ABSENT), new.get(key, _ABSENT)
        if was != now:
            raise ValueError(f"{out_dir}: setting {key!r} was {was!r} in the earlier run, now {now!r}; "
                             "use another --out")


def _holds(run_path: Path, settings: dict) -> bool:
    """Whether run_path is a readable run.json of these settings (kept as it is, with its info)."""
    if not run_path.exists():
        return False
    try:
        return read_run_json(run_path)["settings"] == settings
    except ValueError:  # damaged or of another format: replaced, since no sample depends on it
        return False


class RunStore:
    """Writer of one run directory; holds an exclusive lock on samples.jsonl while open, so that
    two evaluations cannot interleave lines in the same directory."""

    def __init__(self, out_dir: Path, records: list[dict], fd: int) -> None:
        self.out_dir = out_dir
        self._records = records
        self._finished = {_key(r) for r in records}
        self._fd: Optional[int] = fd
        self.invocation: Optional[int] = None  # this invocation's index in run.json (start_invocation)

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
        """Create out_dir with run.json, or resume it: settings must equal the earlier run's.

        The lock comes first and run.json is read, compared and written under it, so that of two
        runs started at once the one that runs is the one whose settings run.json records. With no
        sample recorded yet, nothing depends on an earlier run.json (a start that failed, or was
        killed, before its first sample): it is replaced by this run's."""
        if not isinstance(settings, dict):
            raise ValueError(f"settings must be a dict, got {type(settings).__name__}")
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        new = normalize(settings)
        run_path, samples = out / RUN_FILE, out / SAMPLES_FILE
        fd = os.open(samples, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ValueError(_in_use(out_dir)) from None
            records, good = read_samples(samples)
            if os.fstat(fd).st_size != good:  # drop the torn last line
                os.ftruncate(fd, good)
            os.fsync(fd)
            if records:
                if not run_path.exists():
                    raise ValueError(f"{out_dir}: has {SAMPLES_FILE} but no {RUN_FILE}; use another --out")
                _check_same(out_dir, read_run_json(run_path)["settings"], new)
            elif not _holds(run_path, new):  # missing, damaged or another run's: nothing recorded depends on it
                run = {"format": FORMAT, "settings": new, "versions": versions or {}, "models": models or {},
                       "machine": machine or {}}
                write_json_atomic(run_path, normalize(run))
            fsync_dir(out)  # the new files' directory entries
        except BaseException:
            os.close(fd)
            raise
        return cls(out, records, fd)

    @staticmethod
    def check_free(out_dir: PathLike) -> None:
        """ValueError when another process holds out_dir's lock (a run writing it). A probe that
        creates nothing: RunStore.open takes the lock for real."""
        samples = Path(out_dir) / SAMPLES_FILE
        try:
            fd = os.open(samples, os.O_RDONLY)
        except OSError:  # no samples.jsonl yet (or unreadable: RunStore.open will say so)
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ValueError(_in_use(out_dir)) from None
        finally:
            os.close(fd)  # releases the probe's lock

    def start_invocation(self, machine: dict, versions: dict, **extra: Any) -> int:
        """Record this invocation in run.json (under the lock): when it started, on which machine,
        with which versions (and `extra`: the servers it drove). Its samples carry its index (record["invocation"]), so a resumed run's
        time is the sum of its invocations', and a run whose invocations ran on different machines
        is flagged (a1.eval.timings)."""
        run_path = self.out_dir / RUN_FILE
        run = read_run_json(run_path)
        invocations = run.get("invocations") if isinstance(run.get("invocations"), list) else []
        self.invocation = len(invocations)
        invocations.append({"index": self.invocation, "started": time.time(), "ended": None,
                            "machine": machine, "versions": versions, **extra})
        run["invocations"] = invocations
        write_json_atomic(run_path, normalize(run))
        return self.invocation

    def end_invocation(self, **extra: Any) -> None:
        """Record this invocation's end (and `extra`, e.g. its barrier wait) in run.json; an
        invocation killed before it has none: its last sample's finished_at stands for it."""
        run_path = self.out_dir / RUN_FILE
        run = read_run_json(run_path)
        for entry in run.get("invocations") or []:
            if isinstance(entry, dict) and entry.get("index") == self.invocation:
                entry.update(extra, ended=time.time())
        write_json_atomic(run_path, normalize(run))

    def invocations(self) -> list:
        """run.json's invocations (every `a1 eval` that ran this directory), oldest first."""
        invocations = read_run_json(self.out_dir / RUN_FILE).get("invocations")
        return invocations if isinstance(invocations, list) else []

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
        write_json_atomic(self.out_dir / SUMMARY_FILE, normalize(summary))

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
    invocations: list = field(default_factory=list)  # run.json's, one per `a1 eval` that ran it

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
    run = read_run_json(run_path)
    records, _ = read_samples(path / SAMPLES_FILE)
    summary_path = path / SUMMARY_FILE
    summary = read_summary(summary_path) if summary_path.exists() else None
    return Run(
        path=path,
        settings=run.get("settings", {}),
        records=records,
        summary=summary,
        models=run.get("models", {}),
        versions=run.get("versions", {}),
        machine=run.get("machine", {}),
        invocations=run.get("invocations") if isinstance(run.get("invocations"), list) else [],
    )
