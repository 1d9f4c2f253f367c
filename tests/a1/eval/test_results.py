"""RunStore: the durable run directory of `a1 eval --out`, including a real SIGKILL mid-run."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from a1.eval.results import RunStore, load_run

SETTINGS = {"method": "a1", "dataset": "math500", "alpha": 0.1, "samples": 4, "seed": 0}
PYTHON_DIR = Path(__file__).resolve().parents[3] / "python"


def make_record(question_id: str = "q0", sample_index: int = 0, **over) -> dict:
    """A valid samples.jsonl record; keyword arguments override fields."""
    record = {
        "question_id": question_id,
        "sample_index": sample_index,
        "dataset": "math500",
        "gold": "4",
        "answer": "4",
        "correct": True,
        "finish_reason": "answer",
        "num_tokens": 30,
        "draft_tokens": 20,
        "target_tokens": 10,
        "score_tokens": 20,
        "latency": 1.5,
        "steps": [
            {"turn": 0, "attempt": 0, "stratum": "0", "score": 1.2, "p_value": 0.5,
             "decision": "accept", "num_tokens": 20, "by": "draft"},
        ],
        "text": "2 + 2 = \\boxed{4}\n",
    }
    record.update(over)
    return record


def test_create_append_reopen(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with RunStore.open(out, SETTINGS, versions={"a1": "0.1"}, models={"target": {"params": 7}}) as s:
        assert s.finished() == set()
        s.append(make_record("q0", 0))
        s.append(make_record("q0", 1, correct=False, answer=None))
    run = json.loads((out / "run.json").read_text())
    assert run["format"] == 2 and run["settings"] == SETTINGS and run["models"]["target"]["params"] == 7
    # a resumed run with other versions/models is fine: those are informative only
    with RunStore.open(out, dict(SETTINGS), versions={"a1": "0.2"}) as s:
        assert s.finished() == {("q0", 0), ("q0", 1)}
        assert [r["answer"] for r in s.records()] == ["4", None]
        s.append(make_record("q1", 0))
        s.write_summary({"summary": {"questions": 2}, "wall_time": 3.0})
    loaded = load_run(out)
    assert len(loaded.records) == 3 and loaded.summary["wall_time"] == 3.0
    assert loaded.settings == SETTINGS and loaded.versions == {"a1": "0.1"} and loaded.name == "run"
    assert not list(out.glob("*.tmp"))


def test_torn_last_line_dropped_and_appends_continue(tmp_path: Path) -> None:
    with RunStore.open(tmp_path, SETTINGS) as s:
        s.append(make_record("q0", 0))
        s.append(make_record("q0", 1))
    samples = tmp_path / "samples.jsonl"
    good = samples.read_bytes()
    samples.write_bytes(good + json.dumps(make_record("q0", 2)).encode()[:37])  # no "\n"
    assert len(load_run(tmp_path).records) == 2  # a reader skips it ...
    assert samples.stat().st_size > len(good)  # ... without cutting the file
    with RunStore.open(tmp_path, SETTINGS) as s:
        assert s.finished() == {("q0", 0), ("q0", 1)}
        assert samples.read_bytes() == good
        s.append(make_record("q0", 2))
    lines = samples.read_text().splitlines()
    assert [json.loads(x)["sample_index"] for x in lines] == [0, 1, 2]


def test_garbage_last_line_with_newline_dropped(tmp_path: Path) -> None:
    with RunStore.open(tmp_path, SETTINGS) as s:
        s.append(make_record("q0", 0))
    samples = tmp_path / "samples.jsonl"
    good = samples.read_bytes()
    samples.write_bytes(good + b"\x00\x00\x00\n")
    with RunStore.open(tmp_path, SETTINGS) as s:
        assert len(s.records()) == 1
    assert samples.read_bytes() == good


def test_corrupted_middle_line_refused(tmp_path: Path) -> None:
    with RunStore.open(tmp_path, SETTINGS) as s:
        for i in range(3):
            s.append(make_record("q0", i))
    samples = tmp_path / "samples.jsonl"
    lines = samples.read_text().splitlines(keepends=True)
    lines[1] = lines[1][:20] + "\n"
    samples.write_text("".join(lines))
    with pytest.raises(ValueError, match="line 2 is not a valid"):
        RunStore.open(tmp_path, SETTINGS)
    with pytest.raises(ValueError, match="line 2"):
        load_run(tmp_path)


def test_settings_mismatch_names_the_field(tmp_path: Path) -> None:
    with RunStore.open(tmp_path, SETTINGS) as s:
        s.append(make_record("q0", 0))
    msg = r"setting 'alpha' was 0.1 in the earlier run, now 0.2; use another --out"
    with pytest.raises(ValueError, match=msg):
        RunStore.open(tmp_path, {**SETTINGS, "alpha": 0.2})
    with pytest.raises(ValueError, match=r"setting 'turns' was <absent> in the earlier run, now 8"):
        RunStore.open(tmp_path, {**SETTINGS, "turns": 8})


def test_duplicate_and_invalid_records_refused(tmp_path: Path) -> None:
    with RunStore.open(tmp_path, SETTINGS) as s:
        s.append(make_record("q0", 0))
        with pytest.raises(ValueError, match=r"sample \('q0', 0\) is already recorded"):
            s.append(make_record("q0", 0, answer="5"))
        bad = make_record("q0", 1)
        del bad["latency"]
        with pytest.raises(ValueError, match="latency"):
            s.append(bad)
        with pytest.raises(ValueError, match="'correct' must be bool"):
            s.append(make_record("q0", 1, correct=1))
    assert len((tmp_path / "samples.jsonl").read_text().splitlines()) == 1
    samples = tmp_path / "samples.jsonl"
    samples.write_text(samples.read_text() * 2)  # a duplicate in the file itself
    with pytest.raises(ValueError, match="line 2 repeats sample"):
        RunStore.open(tmp_path, SETTINGS)


def test_foreign_directory_refused(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "samples.jsonl").write_text(json.dumps(make_record()) + "\n")
    with pytest.raises(ValueError, match="has samples.jsonl but no run.json"):
        RunStore.open(tmp_path / "a", SETTINGS)
    with RunStore.open(tmp_path / "b", SETTINGS) as s:
        s.append(make_record())
    run_json = tmp_path / "b" / "run.json"
    run_json.write_text(run_json.read_text().replace('"format": 2', '"format": 1'))
    with pytest.raises(ValueError, match="format 1, this a1 reads format 2"):
        RunStore.open(tmp_path / "b", SETTINGS)
    with pytest.raises(ValueError, match="no run.json"):
        load_run(tmp_path / "a")


def test_second_writer_refused(tmp_path: Path) -> None:
    with RunStore.open(tmp_path, SETTINGS):
        with pytest.raises(ValueError, match="another process"):
            RunStore.open(tmp_path, SETTINGS)
    RunStore.open(tmp_path, SETTINGS).close()  # released on close


def test_run_json_is_written_only_by_the_lock_holder(tmp_path: Path) -> None:
    """A fresh directory whose lock another run holds: refused as in use, and run.json is not
    written (it was, before the lock was tried: the run that ran was not the one recorded)."""
    import fcntl

    tmp_path.joinpath("samples.jsonl").touch()
    holder = os.open(tmp_path / "samples.jsonl", os.O_RDWR)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(ValueError, match="is in use: another process is writing"):
            RunStore.check_free(tmp_path)
        with pytest.raises(ValueError, match="is in use"):
            RunStore.open(tmp_path, {**SETTINGS, "alpha": 0.3})
        assert not (tmp_path / "run.json").exists()
    finally:
        os.close(holder)
    RunStore.check_free(tmp_path)
    RunStore.check_free(tmp_path / "nothing-here")  # creates nothing
    assert not (tmp_path / "nothing-here").exists()


def test_a_start_that_recorded_nothing_does_not_bind_the_rerun(tmp_path: Path) -> None:
    RunStore.open(tmp_path, SETTINGS, versions={"a1": "0.1"}).close()  # a start that failed before its first sample
    with RunStore.open(tmp_path, {**SETTINGS, "alpha": 0.2}, versions={"a1": "0.2"}) as s:
        s.append(make_record())
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["settings"]["alpha"] == 0.2 and run["versions"] == {"a1": "0.2"}
    with pytest.raises(ValueError, match="setting 'alpha' was 0.2"):  # from now on, its settings bind
        RunStore.open(tmp_path, SETTINGS)
    other = tmp_path / "other"
    RunStore.open(other, SETTINGS, versions={"a1": "0.1"}).close()
    RunStore.open(other, SETTINGS).close()  # same settings: run.json kept with its versions
    assert json.loads((other / "run.json").read_text())["versions"] == {"a1": "0.1"}
    (other / "run.json").write_text('{"format": 2, "sett')  # damaged, but nothing recorded: replaced
    RunStore.open(other, SETTINGS).close()
    assert json.loads((other / "run.json").read_text())["settings"] == SETTINGS


@pytest.mark.parametrize("name, text, why", [
    ("run.json", '{"format": 2, "settings": {"alpha": 0.', "not valid JSON"),
    ("run.json", "[1, 2]", "not an object"),
    ("run.json", '{"format": 2, "settings": [1]}', "'settings' is not an object"),
    ("run.json", "\x00\xff\xfe", "not UTF-8"),
    ("summary.json", '{"summary": {"questions": 2}, "wall', "not valid JSON"),
    ("summary.json", "null", "not an object"),
    ("summary.json", '{"wall_time": "soon"}', "'wall_time' is not a number"),
])
def test_damaged_run_files_are_named_with_what_to_do(tmp_path: Path, name: str, text: str, why: str) -> None:
    with RunStore.open(tmp_path, SETTINGS) as s:
        s.append(make_record())
        s.write_summary({"summary": {"questions": 1}, "wall_time": 1.0})
    (tmp_path / name).write_bytes(text.encode("latin-1"))
    with pytest.raises(ValueError) as err:
        load_run(tmp_path)
    message = str(err.value)
    assert message.startswith(f"{tmp_path / name} is damaged (") and why in message and "\n" not in message
    fix = "delete it and rerun the same `a1 eval" if name == "summary.json" else "cannot be rebuilt"
    assert fix in message
    if name == "run.json":
        with pytest.raises(ValueError, match="run.json is damaged"):
            RunStore.open(tmp_path, SETTINGS)


CHILD = """
import sys
from a1.eval.results import RunStore
sys.path.insert(0, sys.argv[2])
from test_results import SETTINGS, make_record
store = RunStore.open(sys.argv[1], SETTINGS)
for i in range(100000):
    store.append(make_record("q%d" % (i // 8), i % 8, text="x" * (i * 997 % 50000)))
    print(i, flush=True)
"""


def test_sigkill_mid_run_then_resume(tmp_path: Path) -> None:
    """A real crash: the child is SIGKILLed while appending; every confirmed record survives, the
    file holds only whole records, and the parent completes the run without duplicates."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PYTHON_DIR), os.environ.get("PYTHONPATH", "")])}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path), str(Path(__file__).parent)],
        stdout=subprocess.PIPE, text=True, env=env,
    )
    confirmed = 0
    for line in child.stdout:
        confirmed = int(line) + 1
        if confirmed >= 40:
            break
    child.send_signal(signal.SIGKILL)
    rest, _ = child.communicate(timeout=30)
    confirmed += len(rest.split())
    assert child.returncode == -signal.SIGKILL and confirmed >= 40

    store = RunStore.open(tmp_path, SETTINGS)
    count = len(store.records())
    # the child may die between its fsync and its print: one unconfirmed record may be there too
    assert confirmed <= count <= confirmed + 1
    lines = (tmp_path / "samples.jsonl").read_bytes().split(b"\n")
    assert lines[-1] == b"" and all(json.loads(x) for x in lines[:-1])
    target = {(f"q{i // 8}", i % 8) for i in range(count + 10)}
    for qid, idx in sorted(target - store.finished()):
        store.append(make_record(qid, idx))
    store.close()
    keys = [(r["question_id"], r["sample_index"]) for r in load_run(tmp_path).records]
    assert len(keys) == len(set(keys)) == len(target) and set(keys) == target
