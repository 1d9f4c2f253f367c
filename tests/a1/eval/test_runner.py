"""The evaluation run on a tiny random model pair: records, summary, refusal of other settings,
offline calibration files, and a REAL run killed with SIGKILL mid-way and resumed."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from a1.eval.calibrate import run_calibration
from a1.eval.results import OPTIONAL_KEYS, RECORD_KEYS, load_run, read_samples
from a1.eval.runner import EvalSettings, run_eval

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiny_cli import TARGET, DRAFT, tiny_llm  # noqa: E402

HELPER = Path(__file__).resolve().parent / "tiny_cli.py"
QUESTIONS = [("q1", "What is 1+1?", "2"), ("q2", "What is 2+3?", "5"), ("q3", "What is 3*3?", "9"),
             ("q4", "What is 10-4?", "6")]
GOLD = {q: a for q, _, a in QUESTIONS}
SAMPLES = 3
# small budgets: the tiny model's context is 512 tokens and the prompt takes ~230 of them
FLAGS = ["--samples", str(SAMPLES), "--max-tokens", "96", "--step-tokens", "12", "--turns", "6",
         "--concurrency", "2", "--alpha", "0.2"]
STEP_KEYS = {"turn", "attempt", "stratum", "score", "p_value", "decision", "num_tokens", "by", "kept", "in_warmup",
             "level", "resample_level"}


@pytest.fixture(scope="module")
def llm():
    return tiny_llm()


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "q.jsonl"
    path.write_text("".join(json.dumps({"id": i, "problem": p, "answer": a}) + "\n" for i, p, a in QUESTIONS))
    return path


def settings(data: Path, **over) -> EvalSettings:
    base = dict(data=str(data), num_samples=SAMPLES, max_tokens=96, step_tokens=12, max_turns=6, concurrency=2,
                alpha=0.2, progress=False)
    return EvalSettings.build(**{**base, **over})


@pytest.fixture(scope="module")
def calibration(data: Path, llm, tmp_path_factory) -> Path:
    """A calibration file drafted on other questions (as the bundled datasets' calibration split is
    disjoint from their test split): drafted on the run's own questions, a run's step would meet its
    own score in the file, an exact tie that float noise between two engines' prefills (a warm
    prefix cache or a cold one) breaks either way, flipping a decision between two runs."""
    other = tmp_path_factory.mktemp("calibration_data") / data.name  # the same dataset name
    other.write_text("".join(json.dumps({"id": f"c{i}", "problem": f"What is {i}+{i + 2}?", "answer": str(2 * i + 2)})
                             + "\n" for i in range(4)))
    path = data.parent / "cal.json"
    info = run_calibration(settings(other), path, llm=llm, log=lambda line: None)
    assert info["questions"] == 4 and sum(info["scores"].values()) > 0
    return path


@pytest.fixture(scope="module")
def reference(data: Path, calibration: Path, llm, tmp_path_factory) -> Path:
    """An uninterrupted run with the offline calibration file."""
    out = tmp_path_factory.mktemp("runs") / "reference"
    run_eval(settings(data, calibration=str(calibration), out=str(out)), llm=llm, log=lambda line: None)
    return out


def by_sample(run_dir: Path) -> dict:
    records, _ = read_samples(run_dir / "samples.jsonl")
    return {(r["question_id"], r["sample_index"]): r for r in records}


def test_records_and_summary(reference: Path, calibration: Path) -> None:
    samples = by_sample(reference)
    assert set(samples) == {(q, i) for q, _, _ in QUESTIONS for i in range(SAMPLES)}
    for record in samples.values():
        assert set(record) == set(RECORD_KEYS) | set(OPTIONAL_KEYS)
        assert record["invocation"] == 0 and record["finished_at"] > 0
        assert record["dataset"] == "q" and record["gold"] == GOLD[record["question_id"]]
        assert record["num_tokens"] >= record["draft_tokens"] + record["target_tokens"]
        assert all(set(step) == STEP_KEYS for step in record["steps"])
    run = load_run(reference)
    assert run.settings["alpha"] == 0.2 and run.settings["calibration"] == str(calibration.resolve())
    assert run.settings["target"] == TARGET and run.settings["draft"] == DRAFT
    assert run.models["target"]["params"] > 0 and run.models["draft"]["bytes"] > 0
    assert set(run.versions) == {"a1", "torch", "python"} and run.machine["cores"] >= 1
    summary = run.summary
    metrics = summary["summary"]
    assert metrics["samples"] == len(samples) and metrics["questions"] == len(QUESTIONS)
    assert metrics["tested_steps"] > 0 and summary["takeover"]["tested"] == metrics["tested_steps"]
    phases = summary["phase_tokens"]
    assert phases["target_score"] == sum(r["score_tokens"] for r in samples.values()) > 0
    assert phases["draft_decode"] >= metrics["draft_tokens"]
    assert summary["engine"]["target"]["steps"] > 0 and summary["engine"]["draft"]["steps"] > 0
    assert summary["calibration"]["kind"] == "file" and summary["calibration"]["scores"] > 0
    assert summary["invocation"] == {"samples": len(samples), "resumed_samples": 0,
                                     "generated_tokens": metrics["generated_tokens"]}


def test_rerun_of_a_finished_run_runs_nothing(reference: Path, data: Path, calibration: Path, llm) -> None:
    before = {name: (reference / name).read_bytes() for name in ("samples.jsonl", "summary.json", "run.json")}
    lines: list[str] = []
    summary = run_eval(settings(data, calibration=str(calibration), out=str(reference)), llm=llm, log=lines.append)
    assert {name: (reference / name).read_bytes() for name in before} == before
    assert summary == json.loads(before["summary.json"])
    assert "is finished" in lines[0] and any(line.startswith("accuracy:") for line in lines)


def test_run_killed_after_its_last_sample_gets_its_summary(reference: Path, data: Path, calibration: Path, llm,
                                                           tmp_path: Path) -> None:
    out = tmp_path / "no-summary"
    shutil.copytree(reference, out)
    (out / "summary.json").unlink()
    summary = run_eval(settings(data, calibration=str(calibration), out=str(out)), llm=llm, log=lambda line: None)
    earlier = json.loads((reference / "summary.json").read_text())
    # nothing ran now: the time is the earlier invocation's, which run.json kept
    assert summary["invocation"]["samples"] == 0 and summary["wall_time"] == earlier["wall_time"] > 0
    expected = earlier["summary"]
    for key in ("mean_accuracy", "generated_tokens", "takeovers", "tested_steps"):
        assert summary["summary"][key] == expected[key]
    assert load_run(out).summary == json.loads(json.dumps(summary))


def test_other_settings_are_refused_naming_the_field(reference: Path, data: Path, calibration: Path, llm) -> None:
    with pytest.raises(ValueError, match="'alpha'"):
        run_eval(settings(data, calibration=str(calibration), out=str(reference), alpha=0.3), llm=llm)
    env = {**os.environ, "A1_TEST_APPEND_DELAY": "0"}
    done = subprocess.run([sys.executable, str(HELPER), "eval", "--data", str(data), "--calibration", str(calibration),
                           "--out", str(reference), *FLAGS[:-1], "0.3", "--no-progress"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 1 and "'alpha'" in done.stderr and "Traceback" not in done.stderr


def test_calibration_file_must_match_the_sampling_settings(data: Path, calibration: Path, llm, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'temperature'"):
        run_eval(settings(data, calibration=str(calibration), temperature=0.5, out=str(tmp_path / "r")), llm=llm)
    with pytest.raises(ValueError, match="'step_tokens'"):
        run_eval(settings(data, calibration=str(calibration), step_tokens=10, out=str(tmp_path / "s")), llm=llm)


def test_settings_are_checked_naming_the_field(data: Path) -> None:
    with pytest.raises(ValueError, match="method"):
        settings(data, method="fast")
    with pytest.raises(ValueError, match="alpha_resample"):
        settings(data, alpha=0.2, alpha_resample=0.1)
    with pytest.raises(FileNotFoundError, match="calibration"):
        settings(data, calibration="missing.json")
    with pytest.raises(FileNotFoundError, match="data"):
        settings(data.parent / "missing.jsonl")
    with pytest.raises(ValueError, match="dataset"):
        EvalSettings.build(dataset="mnist")


def test_killed_run_resumes_to_the_uninterrupted_result(reference: Path, data: Path, calibration: Path,
                                                         tmp_path: Path) -> None:
    """SIGKILL a real `a1 eval` once at least one sample is recorded and not all; the rerun with the
    same --out ends with one record per (question, sample) and the reference run's results."""
    out = tmp_path / "killed"
    argv = [sys.executable, str(HELPER), "eval", "--data", str(data), "--calibration", str(calibration),
            "--out", str(out), *FLAGS, "--no-progress"]
    env = {**os.environ, "A1_TEST_APPEND_DELAY": "0.4"}  # room to kill between two samples
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    samples = out / "samples.jsonl"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if samples.exists() and samples.read_bytes().count(b"\n") >= 1:
                break
            time.sleep(0.02)
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read().decode()}"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    recorded, _ = read_samples(samples)
    assert 1 <= len(recorded) < len(QUESTIONS) * SAMPLES
    assert not (out / "summary.json").exists()

    env["A1_TEST_APPEND_DELAY"] = "0"
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"resuming {out}: {len(recorded)} samples recorded" in done.stdout

    lines = samples.read_text().splitlines()
    keys = [(json.loads(line)["question_id"], json.loads(line)["sample_index"]) for line in lines]
    assert len(keys) == len(set(keys)) == len(QUESTIONS) * SAMPLES
    resumed, uninterrupted = by_sample(out), by_sample(reference)
    assert set(resumed) == set(uninterrupted)
    for key, record in uninterrupted.items():
        for field in ("answer", "correct", "text", "num_tokens", "draft_tokens", "target_tokens", "score_tokens",
                      "finish_reason"):
            assert resumed[key][field] == record[field], (key, field)
        assert [s["decision"] for s in resumed[key]["steps"]] == [s["decision"] for s in record["steps"]], key
    a, b = load_run(out).summary, load_run(reference).summary
    for key in ("mean_accuracy", "pass_at_n", "maj_at_n", "generated_tokens", "draft_tokens", "target_tokens",
                "tested_steps", "takeovers", "takeover_rate", "finish_reasons"):
        assert a["summary"][key] == b["summary"][key], key
    assert a["phase_tokens"] == b["phase_tokens"]
    assert a["invocation"]["resumed_samples"] == len(recorded)


def test_resumed_online_run_keeps_its_calibration_scores(data: Path, llm, tmp_path: Path) -> None:
    """An online run resumed from its records: the calibrator starts from the recorded samples'
    tested scores, not empty (so the resumed part is not back in warm-up)."""
    from a1.eval.calibrate import seeded_calibrator

    out = tmp_path / "online"
    run_eval(settings(data, out=str(out)), llm=llm, log=lambda line: None)
    records, _ = read_samples(out / "samples.jsonl")
    cal = seeded_calibrator(settings(data), records)
    tested = sum(1 for r in records for s in r["steps"] if s["by"] == "draft" and s["score"] is not None
                 and s["decision"] != "forced")
    assert sum(len(cal.scores(k)) for k in cal.strata()) == tested > 0
    assert seeded_calibrator(settings(data, method="target_only"), records) == "online"
