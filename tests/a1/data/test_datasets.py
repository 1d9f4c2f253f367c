"""Bundled datasets, the calibration/test split, and user JSONL files."""
from __future__ import annotations

import hashlib
import json
import random
import re
from pathlib import Path

import pytest

import a1.data as data
from a1.data import DATASETS, Problem, dataset_path, load_dataset, load_jsonl

COUNTS = {"math500": 500, "aime24": 30, "aime25": 30, "amc23": 40, "gsm8k": 1319, "olympiadbench": 675,
          "arith": 1000}
# (calibration, test) sizes under sha256(id) < 0.2: any change to the split rule moves them
SPLIT_COUNTS = {"math500": (112, 388), "aime24": (7, 23), "aime25": (4, 26), "amc23": (10, 30),
                "gsm8k": (247, 1072), "olympiadbench": (134, 541), "arith": (193, 807)}
PINNED_CALIBRATION = ["test/precalculus/807.json", "2024-I-2", "2024-II-15", "2025-I-1", "2023-12A-3",
                      "gsm8k-test-0", "gsm8k-test-2", "olympiadbench-1612", "arith-0004"]
PINNED_TEST = ["test/intermediate_algebra/1994.json", "2024-I-1", "2025-I-2", "2023-12A-1", "gsm8k-test-1",
               "olympiadbench-1606", "arith-0000"]


@pytest.fixture(scope="module")
def everything() -> dict[str, list[Problem]]:
    return {name: load_dataset(name, split="all") for name in DATASETS}


def test_names_and_counts(everything: dict[str, list[Problem]]) -> None:
    assert set(DATASETS) == set(COUNTS)
    for name, problems in everything.items():
        assert len(problems) == COUNTS[name], name
        assert len({p.id for p in problems}) == len(problems), f"{name}: ids not unique"
        assert all(p.dataset == name and p.problem.strip() and p.answer.strip() for p in problems)
        assert all(isinstance(p.answer, str) for p in problems)


def test_fields(everything: dict[str, list[Problem]]) -> None:
    first = everything["aime24"][0]
    assert (first.id, first.answer) == ("2024-I-1", "204") and first.problem.startswith("Every morning Aya")
    assert "solution" in first.extra and "id" not in first.extra and "answer" not in first.extra
    m = everything["math500"][0]
    assert m.answer == "\\left( 3, \\frac{\\pi}{2} \\right)" and m.extra["level"] == 2
    assert everything["gsm8k"][0].answer == "18"
    assert everything["amc23"][0].answer == "27"
    hash(first)  # frozen and hashable despite the extra dict
    with pytest.raises(AttributeError):
        first.answer = "1"  # type: ignore[misc]


# sha256 of the shipped files: byte-identical to the published sources recorded in SOURCES.md (arith:
# to its generator, tests/a1/data/test_arith.py)
SHIPPED_SHA256 = {
    "SOURCES.md": "5d2023388dcde7b3c2d7d64aef28e36c1ea33226de82a816775e244012aa3cc1",
    "arith.jsonl": "f3317399ba041e98256e2a325242f5613b553268c77a3cab27538fd04d9222cf",  # a1.data.arith's output
    "aime24.jsonl": "c02ce4829bc8b2d2eedfedef2d69e2d846598154c2646cde9fa5a26d5d2cd522",
    "aime25.jsonl": "e0f1ae0488960abda7735653031adb8f1a5b17ebe25534766231eb6e406d1d0c",
    "amc23.jsonl": "8d4e6923ca27b26dbf1498808897a771e198fa85b2971da1d71ae09f0c26fc26",
    "gsm8k.jsonl": "a58f9586e9cff641eeea68bba75adf3fdb6368670ee491704a950c532d2daaa3",
    "math500.jsonl": "3fe68ca2c1b94f9381a16527afdebf60247d7d364657d11e3d8d8db539cabac3",
    "olympiadbench.jsonl": "15174d7b5e3b130bdc8b94f5022add2134f5eea19ea6104271c7850ddb4e3130",
}


def test_bundled_files_are_unchanged() -> None:
    folder = dataset_path("gsm8k").parent
    assert sorted(p.name for p in folder.iterdir() if p.suffix in (".jsonl", ".md")) == sorted(SHIPPED_SHA256)
    for name, digest in SHIPPED_SHA256.items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest, name


def test_unknown_name_and_case() -> None:
    assert [p.id for p in load_dataset("AIME24", limit=2)] == [p.id for p in load_dataset(" aime24 ", limit=2)]
    with pytest.raises(ValueError, match="known datasets: math500, aime24"):
        load_dataset("math5000")
    with pytest.raises(ValueError, match="unknown dataset"):
        dataset_path("nope")
    assert dataset_path("GSM8K").name == "gsm8k.jsonl" and dataset_path("gsm8k").exists()


def test_splits_disjoint_cover_stable(everything: dict[str, list[Problem]]) -> None:
    assert data.CALIBRATION_FRACTION == 0.2
    for name, problems in everything.items():
        cal = load_dataset(name, split="calibration")
        test = load_dataset(name, split="test")
        assert (len(cal), len(test)) == SPLIT_COUNTS[name], name
        cal_ids, test_ids = {p.id for p in cal}, {p.id for p in test}
        assert not cal_ids & test_ids
        assert cal_ids | test_ids == {p.id for p in problems}
        # file order is kept within a split
        assert [p.id for p in problems if p.id in cal_ids] == [p.id for p in cal]
    assert all(data.is_calibration(i) for i in PINNED_CALIBRATION)
    assert not any(data.is_calibration(i) for i in PINNED_TEST)
    assert load_dataset("aime24") == load_dataset("aime24", split="test")  # test is the default
    with pytest.raises(ValueError, match="split must be one of"):
        load_dataset("aime24", split="train")


def test_limit_and_seed() -> None:
    ordered = load_dataset("amc23", split="all")
    assert [p.id for p in load_dataset("amc23", split="all", limit=3)] == [p.id for p in ordered[:3]]
    assert load_dataset("amc23", limit=0) == []
    assert len(load_dataset("amc23", split="all", limit=10_000)) == 40
    shuffled = load_dataset("amc23", split="all", seed=7)
    expected = list(ordered)
    random.Random(7).shuffle(expected)
    assert [p.id for p in shuffled] == [p.id for p in expected] != [p.id for p in ordered]
    assert load_dataset("amc23", split="all", seed=7, limit=5) == shuffled[:5]  # shuffle, then limit
    assert load_dataset("amc23", seed=7) == load_dataset("amc23", seed=7)
    assert load_dataset("amc23", seed=7) != load_dataset("amc23", seed=8)
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="limit"):
            load_dataset("amc23", limit=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="seed"):
        load_dataset("amc23", seed="1")  # type: ignore[arg-type]


def _write(tmp_path: Path, lines: list[str], name: str = "mine.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_user_file(tmp_path: Path) -> None:
    path = _write(tmp_path, [
        json.dumps({"id": "a", "problem": "1+1?", "answer": "2", "topic": "arith"}),
        "",
        json.dumps({"id": "b", "problem": "half?", "answer": 0.5}),
        json.dumps({"id": "c", "problem": "27.0?", "answer": 27.0}),
        json.dumps({"id": "d", "problem": "n?", "answer": -3}),
    ])
    problems = load_jsonl(path)
    assert [(p.id, p.answer, p.dataset) for p in problems] == [
        ("a", "2", "mine"), ("b", "0.5", "mine"), ("c", "27", "mine"), ("d", "-3", "mine")]
    assert problems[0].extra == {"topic": "arith"}
    assert load_jsonl(str(path), name="custom")[0].dataset == "custom"


@pytest.mark.parametrize("line, message", [
    ('{"id": "x", "problem": "p"}', "field 'answer' is missing"),
    ('{"problem": "p", "answer": "1"}', "field 'id' is missing"),
    ('{"id": "x", "answer": "1"}', "field 'problem' is missing"),
    ('{"id": 3, "problem": "p", "answer": "1"}', "field 'id' must be a string, got int"),
    ('{"id": "x", "problem": ["p"], "answer": "1"}', "field 'problem' must be a string, got list"),
    ('{"id": "x", "problem": "p", "answer": null}', "field 'answer' must be a string or a finite number"),
    ('{"id": "x", "problem": "p", "answer": true}', "field 'answer' must be a string or a finite number"),
    ('{"id": "x", "problem": "  ", "answer": "1"}', "field 'problem' is empty"),
    ('{"id": "x", "problem": "p", "answer": "1"', "invalid JSON"),
    ('["x", "p", "1"]', "expected a JSON object"),
    ('{"id": "a", "problem": "p", "answer": "1"}', "field 'id' repeats 'a' of line 1"),
])
def test_malformed_user_file(tmp_path: Path, line: str, message: str) -> None:
    path = _write(tmp_path, [json.dumps({"id": "a", "problem": "1+1?", "answer": "2"}), "", line])
    with pytest.raises(ValueError, match=re.escape(f"{path}:3: {message}")):
        load_jsonl(path)


def test_empty_and_missing_user_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no records"):
        load_jsonl(_write(tmp_path, ["", "  "]))
    with pytest.raises(FileNotFoundError):
        load_jsonl(tmp_path / "absent.jsonl")
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"id": "x", "problem": "caf\xe9", "answer": "1"}\n')
    with pytest.raises(ValueError, match=re.escape(f"{path}:1: not UTF-8")):
        load_jsonl(path)


def test_files_ship_as_package_data() -> None:
    """pyproject.toml must declare the JSONL files, or wheels and sdists would ship without them."""
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        import tomli as tomllib
    config = tomllib.loads((Path(__file__).resolve().parents[3] / "pyproject.toml").read_text())
    setuptools = config["tool"]["setuptools"]
    assert setuptools["package-dir"]["a1"] == "python/a1"
    assert {"data/files/*.jsonl", "data/files/*.md"} <= set(setuptools["package-data"]["a1"])
    assert dataset_path("math500").parent == Path(data.__file__).parent / "files"
    assert any(d.startswith("math-verify") for d in config["tool"]["a1"]["dependencies"])
