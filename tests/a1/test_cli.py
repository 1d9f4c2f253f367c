"""The `a1` command line: help of every command, flag errors naming the flag, user errors without
a traceback, and `a1 eval` + `a1 report` end to end on a tiny random model pair."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from a1.cli import COMMANDS, main

sys.path.insert(0, str(Path(__file__).resolve().parent / "eval"))
from tiny_cli import TWO_QUESTIONS, tiny_llm  # noqa: E402

TINY_FLAGS = ["--samples", "2", "--max-tokens", "96", "--step-tokens", "12", "--turns", "4", "--no-progress"]


@pytest.fixture(scope="module")
def llm():
    return tiny_llm()


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "q.jsonl"
    path.write_text(TWO_QUESTIONS)
    return path


def run(argv: list[str], capsys, llm=None) -> tuple[int, str, str]:
    try:
        code = main(argv, llm=llm)
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def test_help_lists_every_command(capsys) -> None:
    code, out, _ = run(["--help"], capsys)
    assert code == 0
    for command in ("calibrate", "eval", "generate", "bench", "report", "serve", "distill-draft"):
        assert command in out
    assert set(COMMANDS) == {"calibrate", "eval", "generate", "bench", "report", "serve", "distill-draft"}


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str, capsys) -> None:
    code, out, _ = run([command, "--help"], capsys)
    assert code == 0 and f"usage: a1 {command}" in out


def test_eval_help_shows_the_flags(capsys) -> None:
    _, out, _ = run(["eval", "--help"], capsys)
    for flag in ("--method", "--alpha", "--alpha-resample", "--samples", "--turns", "--step-tokens", "--max-tokens",
                 "--min-tokens", "--limit", "--dataset", "--data", "--target", "--draft", "--calibration",
                 "--speculative-tokens", "--seed", "--temperature", "--top-p", "--concurrency", "--out",
                 "--target-url", "--draft-url", "--tokenizer"):
        assert flag in out, flag


def test_console_script_runs() -> None:
    script = Path(sys.executable).parent / "a1"
    if not script.exists():
        pytest.skip("the a1 console script is not installed in this environment")
    done = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "generate" in done.stdout


@pytest.mark.parametrize("argv, flag", [
    (["eval", "--alpha", "1.5"], "--alpha"),
    (["eval", "--alpha", "x"], "--alpha"),
    (["eval", "--samples", "0"], "--samples"),
    (["eval", "--top-p", "0"], "--top-p"),
    (["eval", "--temperature", "-1"], "--temperature"),
    (["eval", "--method", "fast"], "--method"),
    (["eval", "--dataset", "mnist"], "--dataset"),
    (["eval", "--limit", "0"], "--limit"),
    (["eval", "--alpha", "0.2", "--alpha-resample", "0.1"], "--alpha-resample"),
    (["eval", "--min-tokens", "20", "--max-tokens", "10"], "--min-tokens"),
    (["eval", "--calibration", "no-such-file.json"], "--calibration"),
    (["eval", "--data", "no-such-file.jsonl"], "--data"),
    (["calibrate", "--step-tokens", "-3"], "--step-tokens"),
    (["generate", "hi", "--seed", "-1"], "--seed"),
    (["report", "x", "--roofline-seconds", "0"], "--roofline-seconds"),
])
def test_invalid_flag_value_exits_2_naming_the_flag(argv: list[str], flag: str, capsys) -> None:
    code, _, err = run(argv, capsys)
    assert code == 2 and flag in err, err


def test_a_failing_run_exits_1_with_the_message(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "problem": "p"}\n')
    code, _, err = run(["eval", "--data", str(bad), "--out", str(tmp_path / "r")], capsys)
    assert code == 1 and "field 'answer' is missing" in err and "Traceback" not in err
    code, _, err = run(["report", str(tmp_path / "nothing")], capsys)
    assert code == 1 and "no run.json" in err


def test_a_missing_model_exits_1_naming_it(tmp_path: Path, capsys) -> None:
    code, _, err = run(["eval", "--target", str(tmp_path / "no-model"), "--limit", "1", "--out", str(tmp_path / "r")],
                       capsys)
    assert code == 1 and "no-model" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_bench_without_a_benchmarks_folder_says_so(tmp_path: Path, capsys) -> None:
    code, _, err = run(["bench", "--dir", str(tmp_path / "none")], capsys)
    assert code == 1 and "no benchmarks folder" in err


def test_bench_runs_the_benchmarks_it_finds(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "benchmarks"
    folder.mkdir()
    (folder / "bench_policy.py").write_text(
        "import sys, pathlib\npathlib.Path(sys.argv[sys.argv.index('--out') + 1]).write_text('ok')\n")
    argv = ["bench", "--dir", str(folder), "--only", "policy", "engine", "--out", str(tmp_path / "o")]
    code, out, _ = run(argv, capsys)
    assert code == 0 and "policy" in out and (tmp_path / "o" / "policy_results.md").read_text() == "ok"
    (folder / "bench_policy.py").write_text("raise SystemExit(3)\n")
    code, _, err = run(["bench", "--dir", str(folder), "--only", "policy"], capsys)
    assert code == 1 and "failed: policy" in err
    code, _, err = run(["bench", "--dir", str(folder), "--only", "kernels"], capsys)
    assert code == 1 and "none of the benchmarks" in err


def test_eval_then_report_end_to_end(data: Path, tmp_path: Path, llm, capsys) -> None:
    out = tmp_path / "run"
    code, stdout, err = run(["eval", "--data", str(data), "--out", str(out), *TINY_FLAGS], capsys, llm)
    assert code == 0, err
    for name in ("run.json", "samples.jsonl", "summary.json"):
        assert (out / name).is_file(), name
    assert len((out / "samples.jsonl").read_text().splitlines()) == 4
    assert "accuracy: mean" in stdout and "takeover rate:" in stdout and "tokens/s" in stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["summary"]["samples"] == 4
    code, stdout, err = run(["report", str(out), "--roofline-seconds", "0.1"], capsys)
    assert code == 0, err
    report = (out / "report.md").read_text()
    assert "# a1 evaluation report" in report and "| run |" in report and out.name in report


def test_calibrate_then_eval_with_the_file(data: Path, tmp_path: Path, llm, capsys) -> None:
    cal = tmp_path / "cal.json"
    code, stdout, err = run(["calibrate", "--data", str(data), "--out", str(cal), *TINY_FLAGS], capsys, llm)
    assert code == 0 and cal.is_file() and "step scores" in stdout, err
    code, _, err = run(["eval", "--data", str(data), "--calibration", str(cal), "--out", str(tmp_path / "r"),
                        *TINY_FLAGS, "--temperature", "0.5"], capsys, llm)
    assert code == 1 and "'temperature'" in err


def test_generate_streams_steps_then_the_vote(llm, capsys) -> None:
    code, stdout, err = run(["generate", "What is 1+1?", "--samples", "2", "--max-tokens", "96", "--step-tokens",
                             "12", "--turns", "3"], capsys, llm)
    assert code == 0, err
    steps = [line for line in stdout.splitlines() if line.startswith("[sample ")]
    assert steps and any(" p " in line and "score" in line for line in steps)
    assert {line.split()[1] for line in steps} == {"0", "1"}
    assert stdout.splitlines()[-1].startswith("voted answer:")
