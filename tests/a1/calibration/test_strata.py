"""Strata by attempt (the three-way rule's redrafts), the pools the warm-up rule "pooled" tests
against, and both through a calibration file."""
from __future__ import annotations

import json

import pytest

from a1.calibration import Calibrator
from a1.calibration.strata import pool_key, split_key


def test_redrafts_get_strata_of_their_own_only_with_by_attempt():
    cal = Calibrator((1, 2), by_attempt=True)
    assert cal.stratum(turn=0) == 0 and cal.stratum(turn=1, attempt=0) == 1
    assert cal.stratum(turn=1, attempt=1) == (1, "redraft1") and cal.stratum(turn=5, attempt=2) == (2, "redraft2")
    per_q = Calibrator((1,), per_question=True, by_attempt=True)
    assert per_q.stratum(turn=3, question="q", attempt=1) == ("q", 1, "redraft1")
    assert Calibrator((1,)).stratum(turn=3, attempt=2) == 1  # without by_attempt: one pool of attempts
    assert split_key((1, "redraft1"), False) == (None, 1, 1)
    assert split_key(("q", 1, "redraft1"), True) == ("q", 1, 1)
    assert split_key(1, False) == (None, 1, 0) and split_key(("redraft1", 2), True) == ("redraft1", 2, 0)
    with pytest.raises(ValueError, match="attempt"):
        cal.stratum(turn=0, attempt=-1)


def test_p_values_of_redrafts_count_only_earlier_redrafts():
    cal = Calibrator((), by_attempt=True)
    cal.fit([1.0, 2.0, 3.0], [0, 0, 0])
    cal.update(10.0, turn=0, attempt=1)
    assert cal.n(turn=0) == 3 and cal.n(turn=0, attempt=1) == 1
    assert cal.p_value(5.0, turn=0) == 1 / 4  # above every first draft
    assert cal.p_value(5.0, turn=0, attempt=1) == 2 / 2  # below the one redraft
    cal.fit([4.0, 6.0], [0, 0], attempts=[1, 1])
    assert cal.scores((0, "redraft1")) == [10.0, 4.0, 6.0]


def test_pools_hold_the_bucket_over_questions_and_attempts():
    cal = Calibrator((1,), per_question=True, by_attempt=True)
    cal.update(1.0, turn=0, question="a")
    cal.update(2.0, turn=0, question="b", attempt=1)
    cal.update(3.0, turn=1, question="a")
    cal.fit([4.0, 5.0], [0, 0], questions=["c", "c"])
    assert cal.pool_size(turn=0, question="zzz") == 4 and cal.pool_size(turn=1, question="a") == 1
    assert cal.n(turn=0, question="c") == 2
    # by hand: 2.5 against the turn-0 pool {1, 2, 4, 5}: (1 + #{>= 2.5}) / 5
    assert cal.pooled_p_value(2.5, turn=0, question="new") == 3 / 5
    assert pool_key(("a", 0, "redraft1"), True) == pool_key(("b", 0), True) != pool_key(("a", 1), True)


def test_attempt_strata_round_trip_through_a_file(tmp_path):
    cal = Calibrator((1,), by_attempt=True)
    cal.fit([1.0, 2.0, 3.0, 4.0], [0, 1, 0, 1], attempts=[0, 0, 1, 2])
    path = tmp_path / "cal.json"
    cal.save(path, {"model": "m"})
    doc = json.loads(path.read_text())
    assert doc["settings"]["by_attempt"] is True
    assert {(s["bucket"], s.get("attempt", 0)) for s in doc["strata"]} == {(0, 0), (1, 0), (0, 1), (1, 2)}
    back = Calibrator.load(path)
    assert back.strata() == cal.strata() and back.scores((1, "redraft2")) == [4.0]
    assert back.pool_size(turn=0) == 2  # the pools are rebuilt from the strata


def test_a_file_without_attempt_strata_reads_as_before(tmp_path):
    cal = Calibrator((1,))
    cal.fit([1.0, 2.0], [0, 1])
    path = tmp_path / "cal.json"
    cal.save(path, {})
    doc = json.loads(path.read_text())
    assert "by_attempt" not in doc["settings"]  # as older code wrote (and reads) it
    assert Calibrator.load(path).settings.by_attempt is False
    doc["strata"][0]["attempt"] = 1  # a redraft's stratum in a file without attempt strata
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=r"strata\[0\] malformed \(attempt"):
        Calibrator.load(path)
