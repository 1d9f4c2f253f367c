"""A calibration file that cannot be used is refused with one ValueError naming it, whatever is
wrong with it (was: a bare UnicodeDecodeError, TypeError, KeyError or OverflowError)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from a1.calibration import Calibrator


def saved(tmp_path: Path, **settings) -> dict:
    cal = Calibrator(**settings)
    cal.fit([1.0, 2.0, 3.0], [0, 1, 1], ["q1", "q1", "q2"] if settings.get("per_question") else None)
    cal.save(tmp_path / "good.json", {"target": "t"})
    return json.loads((tmp_path / "good.json").read_text())


def edited(doc: dict, edit) -> dict:
    doc = json.loads(json.dumps(doc))
    edit(doc)
    return doc


@pytest.mark.parametrize("content, why", [
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not a JSON text file"),
    (b'{"format": "a1.calibration", "version": 1, "sett', "not JSON"),
    (b"", "not JSON"),
    (b"[1, 2, 3]", "not an a1.calibration file"),
    (b'{"format": "a1.calibration", "version": 7}', "format version 7"),
    (b"[" * 100000, "nested too deeply"),
])
def test_unreadable_files_are_named(tmp_path: Path, content: bytes, why: str) -> None:
    path = tmp_path / "cal.json"
    path.write_bytes(content)
    with pytest.raises(ValueError) as err:
        Calibrator.load(path)
    assert str(err.value).startswith(f"calibration file {path}: ") and why in str(err.value)


@pytest.mark.parametrize("per_question, edit, why", [
    (False, lambda d: d["settings"].update(colour="red"), "settings malformed"),
    (False, lambda d: d["settings"].update(turn_edges=5), "settings malformed"),
    (False, lambda d: d["settings"].update(per_question="yes"), "settings malformed"),
    (False, lambda d: d["strata"].append(3), "strata[2] malformed (expected an object"),
    (False, lambda d: d["strata"][0].update(bucket=9), "strata[0] malformed (bucket must be an int in [0, 4]"),
    (False, lambda d: d["strata"][0].update(bucket="0"), "bucket must be an int"),
    (False, lambda d: d["strata"][1].update(scores=[1.0, "2"]), "scores must be real numbers"),
    (False, lambda d: d["strata"][1].update(scores=[1.0, None]), "scores must be real numbers"),
    (False, lambda d: d["strata"][1].update(scores=[True]), "scores must be real numbers"),
    (False, lambda d: d["strata"][1].update(scores={"a": 1}), "scores must be a list"),
    (False, lambda d: d["strata"][1].pop("scores"), "scores must be a list"),
    (True, lambda d: d["strata"][0].pop("question"), "question must be a str or int id"),
    (False, lambda d: d["settings"].update(capacity=1), "more than its capacity 1"),
])
def test_malformed_content_is_named(tmp_path: Path, per_question: bool, edit, why: str) -> None:
    path = tmp_path / "cal.json"
    path.write_text(json.dumps(edited(saved(tmp_path, per_question=per_question), edit)))
    with pytest.raises(ValueError) as err:
        Calibrator.load(path)
    assert str(err.value).startswith(f"calibration file {path}: ") and why in str(err.value), str(err.value)


def test_nan_scores_are_refused_and_infinite_ones_kept(tmp_path: Path) -> None:
    doc = saved(tmp_path)
    path = tmp_path / "cal.json"
    path.write_text(json.dumps(edited(doc, lambda d: d["strata"][0].update(scores=[1.0, float("inf")]))))
    assert Calibrator.load(path).scores(0) == [1.0, float("inf")]
    path.write_text(json.dumps(edited(doc, lambda d: d["strata"][0].update(scores=[float("nan")]))))
    with pytest.raises(ValueError, match="not NaN"):
        Calibrator.load(path)


def test_a_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=f"calibration file {tmp_path}: is a directory"):
        Calibrator.load(tmp_path)
