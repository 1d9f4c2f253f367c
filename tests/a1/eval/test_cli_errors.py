"""One clear line, no traceback, naming the thing (Hardening II, item 6): damaged run files, unusable
calibration files, corrupt GGUF tokenizers, output paths that cannot be written, --data that is
not a JSONL file, over-long questions, and refused starts that must not block the fixed rerun.
`a1 ...` runs in-process (main(argv)) on the tiny model pair of tiny_cli.py."""
from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import pytest

from a1.cli import main

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "models"))
from tiny_cli import TWO_QUESTIONS, tiny_llm  # noqa: E402
from tiny_gguf import write_tokenizer_gguf  # noqa: E402

TINY = ["--samples", "2", "--max-tokens", "48", "--step-tokens", "12", "--turns", "3", "--no-progress"]
HUGE = "What is " + "1+" * 400 + "1?"


@pytest.fixture(scope="module")
def llm():
    return tiny_llm()


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "q.jsonl"
    path.write_text(TWO_QUESTIONS)
    return path


@pytest.fixture(scope="module")
def finished(tmp_path_factory, llm) -> tuple[Path, Path]:
    """(a finished run directory, its data file)."""
    folder = tmp_path_factory.mktemp("finished")
    data = folder / "q.jsonl"
    data.write_text('{"id": "a", "problem": "What is 1+1?", "answer": "2"}\n')
    out = folder / "run"
    assert main(["eval", "--data", str(data), "--out", str(out), *TINY], llm=llm) == 0
    return out, data


def run(argv: list[str], capsys, llm=None) -> tuple[int, str, str]:
    try:
        code = main(argv, llm=llm)
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def error_line(err: str, command: str, code: int) -> str:
    """The one error line of `a1 command` (after argparse's usage, for a usage error: exit 2)."""
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert lines and lines[-1].startswith(f"a1 {command}: error: "), err
    assert sum(line.startswith("a1 ") and ": error:" in line for line in lines) == 1, err
    if code == 1:
        assert len(lines) == 1, err
    return lines[-1]


# ---------------------------------------------------------------------------- damaged run files
@pytest.mark.parametrize("name, damage, says, report_reads_it", [
    ("summary.json", lambda text: text[: len(text) // 2], "delete it and rerun the same `a1 eval", False),
    ("summary.json", lambda text: '{"summary": {}}', "delete it and rerun the same `a1 eval", True),
    ("run.json", lambda text: text[: len(text) // 2], "cannot be rebuilt", False),
])
def test_damaged_run_file_is_one_line_naming_it(name: str, damage, says: str, report_reads_it: bool, finished,
                                                tmp_path: Path, llm, capsys) -> None:
    source, data = finished
    out = tmp_path / "run"
    shutil.copytree(source, out)
    (out / name).write_text(damage((out / name).read_text()))
    code, _, err = run(["eval", "--data", str(data), "--out", str(out), *TINY], capsys, llm)
    line = error_line(err, "eval", code)
    assert code == 1 and f"{out / name} is damaged" in line and says in line
    code, _, err = run(["report", str(out), "--out", str(tmp_path / "report"), "--roofline-seconds", "0.05"], capsys)
    if report_reads_it:  # a partial summary: `a1 eval` cannot print it, a report says what is missing
        assert code == 0, err
    else:
        line = error_line(err, "report", code)
        assert code == 1 and f"{out / name} is damaged" in line and says in line


# ---------------------------------------------------------------------------- calibration files
@pytest.mark.parametrize("content, says", [
    (b"\x00\x01\x02\xff\xfe binary", "not a JSON text file"),
    (b'{"format": "a1.calibration", "ver', "not JSON"),
    (b'{"hello": 1}', "not an a1.calibration file"),
    (b'{"format": "a1.calibration", "version": 1, "settings": {"turn_edges": 3}, "metadata": {}, "strata": []}',
     "settings malformed"),
])
@pytest.mark.parametrize("command", ["eval", "generate"])
def test_unusable_calibration_file_is_a_usage_error_naming_it(command: str, content: bytes, says: str,
                                                              tmp_path: Path, data: Path, capsys) -> None:
    cal = tmp_path / "cal.bin"
    cal.write_bytes(content)
    argv = (["eval", "--data", str(data), "--out", str(tmp_path / "r")] if command == "eval"
            else ["generate", "What is 1+1?"]) + ["--calibration", str(cal)]
    code, _, err = run(argv, capsys)  # no model: refused before any is loaded
    line = error_line(err, command, code)
    assert code == 2 and line.startswith(f"a1 {command}: error: argument --calibration: calibration file {cal}")
    assert says in line and not (tmp_path / "r").exists()


# ---------------------------------------------------------------------------- models
def test_corrupt_gguf_tokenizer_is_one_line_naming_file_and_key(tmp_path: Path, data: Path, capsys) -> None:
    gguf = write_tokenizer_gguf(tmp_path / "broken.gguf", eos_token_id=99)
    for argv in (["eval", "--data", str(data), "--out", str(tmp_path / "r")], ["generate", "hi"],
                 ["calibrate", "--data", str(data), "--out", str(tmp_path / "c.json")]):
        code, _, err = run([*argv, "--target", str(gguf)], capsys)
        line = error_line(err, argv[0], code)
        assert code == 1 and str(gguf) in line and "tokenizer.ggml.eos_token_id" in line
    assert not (tmp_path / "r").exists() and not (tmp_path / "c.json").exists()


# ---------------------------------------------------------------------------- output paths and --data
def test_output_path_under_a_file_is_refused_at_once(tmp_path: Path, data: Path, llm, capsys) -> None:
    afile = tmp_path / "afile"
    afile.write_text("not a directory")
    for argv in (["calibrate", "--data", str(data), "--out", str(afile / "x.json"), *TINY],
                 ["eval", "--data", str(data), "--out", str(afile / "x"), *TINY]):
        start = time.perf_counter()
        code, _, err = run(argv, capsys, llm)
        took = time.perf_counter() - start
        line = error_line(err, argv[0], code)
        assert code == 2 and "argument --out:" in line and f"{afile} is a file, not a directory" in line
        assert took < 1.0, f"{argv[0]} took {took:.1f} s to refuse --out"  # checked before any drafting
    code, _, err = run(["report", str(tmp_path), "--out", str(afile)], capsys)
    assert code == 2 and f"argument --out: {afile} is a file" in error_line(err, "report", code)


@pytest.mark.parametrize("command", ["eval", "calibrate"])
def test_data_that_is_a_directory_is_named(command: str, tmp_path: Path, capsys) -> None:
    code, _, err = run([command, "--data", str(tmp_path), "--out", str(tmp_path / "o")], capsys)
    line = error_line(err, command, code)
    assert code == 2 and f"argument --data: '{tmp_path}' is a directory" in line


@pytest.mark.parametrize("text, says", [
    ("id,problem,answer\na,1+1,2\n", ":1: invalid JSON"),
    ('{"id": "a", "problem": "p", "answer": "1"}\n["a", "b"]\n', ":2: expected a JSON object"),
    ('{"id": "a", "problem": "p", "answer": "1"}\n{"id": "b", "answer": "1"}\n', ":2: field 'problem' is missing"),
    ("\x89PNG binary\n", ":1: not UTF-8"),
])
def test_data_that_is_not_jsonl_names_the_line(text: str, says: str, tmp_path: Path, llm, capsys) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(text.encode("latin-1"))
    code, _, err = run(["eval", "--data", str(bad), "--out", str(tmp_path / "r"), *TINY], capsys, llm)
    line = error_line(err, "eval", code)
    assert code == 1 and f"{bad}{says}" in line and not (tmp_path / "r").exists()


# ---------------------------------------------------------------------------- refused starts
def test_overlong_question_is_named_then_the_rerun_runs(tmp_path: Path, llm, capsys) -> None:
    data = tmp_path / "q.jsonl"
    lines = ['{"id": "a", "problem": "What is 1+1?", "answer": "2"}',
             json.dumps({"id": "long-one", "problem": HUGE, "answer": "401"})]
    data.write_text("\n".join(lines) + "\n")
    out = tmp_path / "r"
    for command, where in (("eval", out), ("calibrate", tmp_path / "c.json")):
        code, _, err = run([command, "--data", str(data), "--out", str(where), *TINY], capsys, llm)
        line = error_line(err, command, code)
        assert code == 1 and f"question 'long-one' (line 2 of {data}) is too long" in line
    assert not (out / "run.json").exists() and not (tmp_path / "c.json").exists()
    data.write_text(lines[0] + "\n")
    code, _, err = run(["eval", "--data", str(data), "--out", str(out), *TINY], capsys, llm)
    assert code == 0, err
    code, _, err = run(["generate", HUGE, "--samples", "1", "--max-tokens", "48"], capsys, llm)
    assert code == 1 and "the prompt is too long" in error_line(err, "generate", code)


def test_refused_speculative_tokens_then_the_fixed_rerun_runs(tmp_path: Path, data: Path, capsys) -> None:
    self_llm = tiny_llm(self_mode=True)
    out = tmp_path / "r"
    code, _, err = run(["eval", "--data", str(data), "--out", str(out), "--speculative-tokens", "3", *TINY], capsys,
                       self_llm)
    assert code == 1 and "speculative_tokens needs a separate draft model" in error_line(err, "eval", code)
    assert not (out / "run.json").exists()
    code, _, err = run(["eval", "--data", str(data), "--out", str(out), *TINY], capsys, self_llm)
    assert code == 0, err
