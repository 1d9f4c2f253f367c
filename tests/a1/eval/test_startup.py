"""Start-up of a run directory (Hardening II, item 4): every check runs before run.json is written,
run.json is written under the lock of samples.jsonl, and a refused start leaves nothing that blocks
the fixed rerun. On the tiny random model pair (tests/a1/eval/tiny_cli.py)."""
from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

import pytest

from a1.data import Problem
from a1.eval.results import RunStore, read_samples
from a1.eval.runner import EvalSettings, run_eval
from a1.eval.startup import check_out_dir, check_out_file, describe_question

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiny_cli import tiny_llm  # noqa: E402

QUIET = dict(num_samples=1, max_tokens=48, step_tokens=12, max_turns=3, concurrency=2, progress=False)
HUGE = "What is " + "1+" * 400 + "1?"  # ~800 characters: the tiny model's context is 512 tokens


@pytest.fixture(scope="module")
def llm():
    return tiny_llm()


@pytest.fixture(scope="module")
def self_llm():
    return tiny_llm(self_mode=True)


def write_questions(path: Path, questions: list[tuple[str, str, str]]) -> Path:
    path.write_text("".join(json.dumps({"id": i, "problem": p, "answer": a}) + "\n" for i, p, a in questions))
    return path


def quiet(lines: list[str]):
    return lines.append


def test_refused_speculative_tokens_leaves_nothing_then_the_fixed_rerun_runs(tmp_path: Path, self_llm) -> None:
    data = write_questions(tmp_path / "q.jsonl", [("q1", "What is 1+1?", "2")])
    out = tmp_path / "run"
    with pytest.raises(ValueError, match="speculative_tokens needs a separate draft model"):
        run_eval(EvalSettings.build(data=str(data), out=str(out), speculative_tokens=2, **QUIET), llm=self_llm, log=quiet([]))
    assert not (out / "run.json").exists()
    summary = run_eval(EvalSettings.build(data=str(data), out=str(out), **QUIET), llm=self_llm, log=quiet([]))
    assert summary["summary"]["samples"] == 1
    assert json.loads((out / "run.json").read_text())["settings"]["speculative_tokens"] == 0


def test_overlong_problem_is_named_by_id_and_line_then_the_rerun_without_it_runs(tmp_path: Path, llm) -> None:
    data = write_questions(tmp_path / "q.jsonl", [("q1", "What is 1+1?", "2"), ("q2", "What is 2+2?", "4"),
                                                  ("big", HUGE, "401")])
    out = tmp_path / "run"
    settings = EvalSettings.build(data=str(data), out=str(out), **QUIET)
    with pytest.raises(ValueError) as err:
        run_eval(settings, llm=llm, log=quiet([]))
    assert f"question 'big' (line 3 of {data})" in str(err.value) and "max_model_len 512" in str(err.value)
    assert not (out / "run.json").exists()
    write_questions(data, [("q1", "What is 1+1?", "2"), ("q2", "What is 2+2?", "4")])
    summary = run_eval(EvalSettings.build(data=str(data), out=str(out), **QUIET), llm=llm, log=quiet([]))
    assert summary["summary"]["questions"] == 2


def test_a_bundled_question_is_named_by_its_dataset() -> None:
    problem = Problem(id="gsm8k-17", problem="p", answer="1", dataset="gsm8k")
    assert describe_question(EvalSettings.build(dataset="gsm8k"), problem) == "question 'gsm8k-17' of dataset gsm8k"


def test_calibration_file_of_other_settings_is_refused_before_run_json(tmp_path: Path, llm) -> None:
    from a1.calibration import Calibrator

    data = write_questions(tmp_path / "q.jsonl", [("q1", "What is 1+1?", "2")])
    cal = tmp_path / "cal.json"
    Calibrator().save(cal, {"target": "another-model"})
    with pytest.raises(ValueError, match="field 'target'"):
        run_eval(EvalSettings.build(data=str(data), calibration=str(cal), out=str(tmp_path / "r"), **QUIET), llm=llm)
    assert not (tmp_path / "r" / "run.json").exists()


@pytest.mark.parametrize("attempt", range(4))
def test_two_fresh_runs_at_once_one_runs_and_run_json_is_its(attempt: int, tmp_path: Path, llm,
                                                             monkeypatch) -> None:
    """Two runs of other settings on one fresh --out, let into RunStore.open together: exactly one
    runs, and run.json and every record are that one's."""
    data = write_questions(tmp_path / "q.jsonl", [("q1", "What is 1+1?", "2"), ("q2", "What is 2+2?", "4")])
    out = tmp_path / "run"
    gate, opened = threading.Barrier(2), RunStore.open

    def open_together(*args, **kwargs):
        if kwargs.get("versions") is not None:  # the fresh start's open
            gate.wait(timeout=60)
        return opened(*args, **kwargs)

    monkeypatch.setattr(RunStore, "open", staticmethod(open_together))
    outcome: dict[float, object] = {}

    def start(alpha: float) -> None:
        try:
            outcome[alpha] = run_eval(EvalSettings.build(data=str(data), out=str(out), alpha=alpha, **QUIET), llm=llm,
                                      log=quiet([]))
        except ValueError as err:
            outcome[alpha] = err

    threads = [threading.Thread(target=start, args=(alpha,)) for alpha in (0.2, 0.3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    ran = [alpha for alpha, result in outcome.items() if isinstance(result, dict)]
    refused = [result for result in outcome.values() if isinstance(result, ValueError)]
    assert len(ran) == 1 and len(refused) == 1, outcome
    assert "another process is writing" in str(refused[0]) or "setting 'alpha'" in str(refused[0])
    assert json.loads((out / "run.json").read_text())["settings"]["alpha"] == ran[0]
    records, _ = read_samples(out / "samples.jsonl")
    assert len(records) == 2 and json.loads((out / "summary.json").read_text())["takeover"]["alpha"] == ran[0]


def test_a_run_directory_in_use_is_refused_before_the_models_load(tmp_path: Path) -> None:
    import fcntl
    import os

    data = write_questions(tmp_path / "q.jsonl", [("q1", "What is 1+1?", "2")])
    out = tmp_path / "run"
    out.mkdir()
    holder = os.open(out / "samples.jsonl", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        settings = EvalSettings.build(data=str(data), out=str(out), target=str(tmp_path / "no-model"), **QUIET)
        with pytest.raises(ValueError, match="is in use"):  # not "no-model": no model was loaded
            run_eval(settings)
    finally:
        os.close(holder)
    assert not (out / "run.json").exists()


def test_output_paths_are_checked_without_creating_anything(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(ValueError, match=f"cannot create {afile}/x/y: {afile} is a file, not a directory"):
        check_out_dir(afile / "x" / "y")
    with pytest.raises(ValueError, match="is a file, not a directory"):
        check_out_dir(afile)
    with pytest.raises(ValueError, match=f"argument --out: cannot write {afile}/x.json: {afile} is a file"):
        check_out_file(afile / "x.json", name="argument --out")
    with pytest.raises(ValueError, match="the directory .*missing does not exist"):
        check_out_file(tmp_path / "missing" / "x.json")
    with pytest.raises(ValueError, match="is a directory"):
        check_out_file(tmp_path)
    check_out_dir(tmp_path / "new" / "deeper")
    check_out_file(tmp_path / "cal.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]
