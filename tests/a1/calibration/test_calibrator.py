"""Unit tests of Calibrator: exact p-values on hand-worked examples, strata, warm-up, persistence."""
import json
import math
from fractions import Fraction
import threading

import numpy as np
import pytest
import torch

from a1.calibration import Calibrator

SCORES = [1.0, 2.0, 3.0, 3.0, 4.0]


def calibrated(**kwargs) -> Calibrator:
    cal = Calibrator(turn_edges=(), **kwargs)
    cal.fit(SCORES, [0] * len(SCORES))
    return cal


# -- p-values ----------------------------------------------------------------------------------
@pytest.mark.parametrize("score,expected", [
    (0.0, 6 / 6),    # below everything: 1 + 5 scores >= s
    (1.0, 6 / 6),
    (2.5, 4 / 6),    # 3, 3, 4 >= 2.5
    (3.0, 4 / 6),    # ties count as >=
    (3.5, 2 / 6),
    (4.0, 2 / 6),
    (9.0, 1 / 6),    # above everything: the smallest p, 1/(n+1)
    (-math.inf, 1.0),
    (math.inf, 1 / 6),
])
def test_p_value_is_one_plus_count_at_least_over_n_plus_one(score, expected):
    assert calibrated().p_value(score, turn=0) == pytest.approx(expected, abs=1e-15)


def test_p_value_of_an_empty_stratum_is_one_or_u():
    assert Calibrator().p_value(3.0, turn=0) == 1.0
    u = float(torch.rand((), dtype=torch.float64, generator=torch.Generator().manual_seed(7)))
    assert Calibrator(smoothed=True, seed=7).p_value(3.0, turn=0) == u
    # scores in another stratum do not count
    cal = Calibrator()
    cal.update(1.0, turn=5)
    assert cal.p_value(3.0, turn=0) == 1.0


def test_smoothed_p_value_with_the_seeded_u():
    generator = torch.Generator().manual_seed(3)
    us = [float(torch.rand((), dtype=torch.float64, generator=generator)) for _ in range(3)]
    cal = calibrated(smoothed=True, seed=3)
    # (#{> s} + U (1 + #{= s})) / (n + 1)
    assert cal.p_value(3.0, turn=0) == pytest.approx((1 + us[0] * 3) / 6, abs=1e-15)
    assert cal.p_value(3.5, turn=0) == pytest.approx((1 + us[1] * 1) / 6, abs=1e-15)
    assert cal.p_value(0.0, turn=0) == pytest.approx((5 + us[2] * 1) / 6, abs=1e-15)
    # deterministic given the seed; another seed gives other U's
    again = [calibrated(smoothed=True, seed=3).p_value(3.0, turn=0) for _ in range(2)]
    assert again[0] == again[1] == pytest.approx((1 + us[0] * 3) / 6)
    assert calibrated(smoothed=True, seed=4).p_value(3.0, turn=0) != again[0]


def test_smoothed_p_value_lies_between_its_tie_bounds():
    cal = calibrated(smoothed=True)
    for _ in range(200):
        p = cal.p_value(3.0, turn=0)
        assert 1 / 6 <= p <= 4 / 6  # U = 0 .. U = 1 (the unsmoothed p)


def test_p_value_never_changes_the_scores():
    for kwargs in ({}, {"smoothed": True}, {"rule": "reference"}):
        cal = calibrated(**kwargs)
        for s in (0.0, 3.0, 9.0):
            cal.p_value(s, turn=0)
        assert cal.scores(0) == SCORES and cal.n(turn=0) == 5 and cal.strata() == [0]


@pytest.mark.parametrize("score,expected", [(0.0, 1.0), (3.0, 1 - 2 / 5), (3.5, 1 - 4 / 5), (9.0, 0.0)])
def test_reference_rule_is_the_uncorrected_percentile(score, expected):
    cal = calibrated(rule="reference")
    assert cal.p_value(score, turn=0) == pytest.approx(expected, abs=1e-15)
    assert Calibrator(rule="reference").p_value(score, turn=0) == 1.0  # n = 0


def test_reference_rule_rejects_exactly_when_the_authors_rule_does():
    rng = np.random.default_rng(0)
    for n in (1, 4, 10, 20):
        scores = np.round(rng.normal(size=n), 1)
        cal = Calibrator(turn_edges=(), rule="reference")
        cal.fit(scores, [0] * n)
        for s in np.round(rng.normal(size=30), 1).tolist() + [9.0]:
            below = int((scores < s).sum())
            for alpha in (0.05, 0.1, 0.2, 0.25, 0.5):
                assert (cal.p_value(s, turn=0) <= alpha) == (below / n >= 1 - alpha - 1e-12), (n, s, alpha)


def test_windowed_stratum_keeps_the_latest_scores():
    cal = Calibrator(window=3)
    for s in [10.0, 1.0, 2.0, 3.0, 4.0]:
        cal.update(s, turn=0)
    assert cal.scores(0) == [2.0, 3.0, 4.0] and cal.n(turn=0) == 3
    assert cal.p_value(2.5, turn=0) == pytest.approx(3 / 4)  # 10.0 was evicted
    cal.fit([5.0, 6.0, 7.0, 8.0], [0] * 4)  # a batch longer than the window
    assert cal.scores(0) == [6.0, 7.0, 8.0]


# -- strata ------------------------------------------------------------------------------------
def test_stratum_is_bisect_right_of_the_turn():
    cal = Calibrator(turn_edges=(1, 2, 4, 8))
    assert [cal.stratum(turn=t) for t in range(12)] == [0, 1, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4]
    assert [Calibrator(turn_edges=()).stratum(turn=t) for t in (0, 5, 100)] == [0, 0, 0]
    assert Calibrator(turn_edges=(0, 3)).stratum(turn=0) == 1


def test_scores_go_to_their_own_stratum():
    cal = Calibrator()
    cal.fit([1.0, 2.0, 3.0, 4.0], [0, 2, 3, 9])
    cal.update(5.0, turn=1)
    assert cal.strata() == [0, 2, 4, 1]
    assert cal.scores(2) == [2.0, 3.0] and cal.scores(1) == [5.0] and cal.scores(3) == []
    assert cal.n(turn=3) == 2 and cal.n(turn=5) == 0
    assert cal.p_value(2.5, turn=2) == pytest.approx(2 / 3)  # only the turn-2..3 scores count


def test_per_question_strata():
    cal = Calibrator(per_question=True)
    cal.fit([1.0, 2.0, 3.0], [0, 0, 5], questions=["a", "b", "a"])
    cal.update(4.0, turn=0, question="a")
    assert cal.stratum(turn=5, question="a") == ("a", 3)
    assert cal.scores(("a", 0)) == [1.0, 4.0] and cal.scores(("b", 0)) == [2.0]
    assert cal.n(turn=0, question="a") == 2 and cal.n(turn=0, question="c") == 0
    assert cal.p_value(3.0, turn=0, question="a") == pytest.approx(2 / 3)
    for call in (lambda: cal.stratum(turn=0), lambda: cal.p_value(1.0, turn=0),
                 lambda: cal.update(1.0, turn=0), lambda: cal.fit([1.0], [0])):
        with pytest.raises(ValueError, match="question"):
            call()


# -- warm-up -----------------------------------------------------------------------------------
@pytest.mark.parametrize("alpha,expected", [(0.5, 1), (0.3, 3), (0.25, 3), (0.1, 9), (0.05, 19), (1 / 3, 2), (0.01, 99)])
def test_warmup_is_the_fewest_scores_that_can_reject(alpha, expected):
    cal = Calibrator(turn_edges=())
    assert cal.warmup(alpha) == expected == math.ceil(round(1 / alpha, 9)) - 1
    scores = np.arange(expected, dtype=float)
    cal.fit(scores[:-1], [0] * (expected - 1))
    assert cal.in_warmup(alpha, turn=0)
    assert cal.p_value(1e9, turn=0) > alpha  # one score short: the smallest p is still above alpha
    cal.update(scores[-1], turn=0)
    assert not cal.in_warmup(alpha, turn=0)
    assert cal.p_value(1e9, turn=0) <= alpha
    assert Calibrator(rule="reference").warmup(alpha) == 1


def test_warmup_is_closed_form_for_any_alpha():
    """Tiny levels answer at once (a count-down at float precision never ended at 1e-25), and every
    answer is the least n whose smallest float p-value 1/(n + 1) is <= alpha."""
    cal = Calibrator(turn_edges=())
    assert cal.warmup(1e-25) == math.ceil(1 / Fraction(1e-25)) - 1  # the exact value of the float 1e-25
    for alpha in (1e-25, 1e-30, 1e-300, 5e-324):
        k = cal.warmup(alpha)
        assert (k + 1) * Fraction(alpha) >= 1 > k * Fraction(alpha)  # exactly: 1/(k + 1) <= alpha < 1/k
    rng = np.random.default_rng(0)
    for alpha in np.concatenate([rng.uniform(1e-4, 1, 2000), 1 / np.arange(2, 300)]):
        alpha = float(alpha)
        k = cal.warmup(alpha)
        assert 1.0 / (k + 1) <= alpha and (k == 0 or 1.0 / k > alpha), alpha


# -- validation --------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs,name", [
    ({"turn_edges": (2, 1)}, "turn_edges"), ({"turn_edges": (1, 1)}, "turn_edges"),
    ({"turn_edges": (-1, 2)}, "turn_edges"), ({"turn_edges": (1.5,)}, "turn_edges"),
    ({"rule": "percentile"}, "rule"), ({"rule": "reference", "smoothed": True}, "smoothed"),
    ({"window": 0}, "window"), ({"window": 2.5}, "window"), ({"window": -3}, "window"),
    ({"window": 10, "capacity": 5}, "window"), ({"capacity": 0}, "capacity"), ({"seed": -1}, "seed"),
])
def test_invalid_settings_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        Calibrator(**kwargs)


def test_invalid_scores_and_turns_name_the_argument():
    cal = Calibrator()
    with pytest.raises(ValueError, match="score"):
        cal.update(float("nan"), turn=0)
    with pytest.raises(ValueError, match="score"):
        cal.p_value(float("nan"), turn=0)
    with pytest.raises(ValueError, match="turn"):
        cal.update(1.0, turn=-1)
    with pytest.raises(TypeError, match="turn"):
        cal.p_value(1.0, turn=1.5)
    with pytest.raises(ValueError, match="turns"):
        cal.fit([1.0, 2.0], [0])
    with pytest.raises(ValueError, match="questions"):
        Calibrator(per_question=True).fit([1.0, 2.0], [0, 0], ["a"])
    with pytest.raises(ValueError, match="score"):  # all-or-nothing
        cal.fit([1.0, float("nan")], [0, 1])
    with pytest.raises(ValueError, match="alpha"):
        cal.warmup(1.0)
    assert cal.strata() == []


def test_strata_grow_up_to_capacity_then_refuse():
    cal = Calibrator(capacity=3000)
    for s in range(2500):
        cal.update(float(s), turn=0)
    cal.fit(np.arange(2500, 2900, dtype=float), [0] * 400)
    assert cal.scores(0) == list(map(float, range(2900)))
    assert cal.p_value(2899.0, turn=0) == pytest.approx(2 / 2901)
    with pytest.raises(OverflowError, match="capacity"):
        cal.fit([1.0] * 101, [0] * 101)
    assert cal.n(turn=0) == 2900


# -- persistence -------------------------------------------------------------------------------
METADATA = {"draft": "qwen-0.5b", "target": "qwen-7b", "score": "ppl", "sampling": {"temperature": 0.7},
            "stop": ["\n\n"]}


def test_save_load_round_trip(tmp_path):
    cal = Calibrator(per_question=True, window=4, seed=5)
    cal.fit([1.0, 2.0, 3.0, math.inf, 5.0], [0, 3, 3, 9, 0], ["q1", "7", "7", "q1", 7])
    path = tmp_path / "cal.json"
    cal.save(path, METADATA)
    back = Calibrator.load(path, expect={"target": "qwen-7b", "stop": ("\n\n",)})
    assert back.settings == cal.settings and back.metadata == METADATA
    assert back.strata() == cal.strata() == [("q1", 0), ("7", 2), ("q1", 4), (7, 0)]
    for key in cal.strata():
        assert back.scores(key) == cal.scores(key)
    assert back.p_value(2.5, turn=3, question="7") == cal.p_value(2.5, turn=3, question="7") == 2 / 3
    plain = Calibrator()
    plain.fit([1.0, 2.0, 3.0], [0, 1, 8])
    plain.save(str(path), {})
    again = Calibrator.load(str(path))
    assert again.strata() == [0, 1, 4] and again.p_value(1.5, turn=0) == plain.p_value(1.5, turn=0)
    assert json.loads(path.read_text())["settings"]["turn_edges"] == [1, 2, 4, 8]


def test_loaded_smoothed_calibrator_replays_the_seeded_u(tmp_path):
    cal = calibrated(smoothed=True, seed=9)
    cal.save(tmp_path / "c.json", {})
    back = Calibrator.load(tmp_path / "c.json")
    fresh = calibrated(smoothed=True, seed=9)
    assert [back.p_value(3.0, turn=0) for _ in range(3)] == [fresh.p_value(3.0, turn=0) for _ in range(3)]


def test_load_refuses_other_metadata_naming_the_field(tmp_path):
    path = tmp_path / "cal.json"
    calibrated().save(path, METADATA)
    with pytest.raises(ValueError) as err:
        Calibrator.load(path, expect={"draft": "qwen-0.5b", "target": "llama-8b", "score": "logprob"})
    assert str(err.value) == f"calibration file {path}: field 'target' is 'qwen-7b', this run has 'llama-8b'"
    with pytest.raises(ValueError, match="field 'sampling'"):
        Calibrator.load(path, expect={"sampling": {"temperature": 0.6}})
    with pytest.raises(ValueError, match="field 'step_tokens' is missing"):
        Calibrator.load(path, expect={"step_tokens": 64})
    with pytest.raises(TypeError, match="metadata"):
        calibrated().save(path, {"model": object()})
    path.write_text('{"format": "something else"}')
    with pytest.raises(ValueError, match="calibration file"):
        Calibrator.load(path)


def test_fit_takes_tensors_and_arrays():
    cal = Calibrator()
    cal.fit(torch.tensor([1.0, 2.0, 3.0], dtype=torch.bfloat16), torch.tensor([0, 1, 1]))
    cal.fit(np.array([4.0, 5.0]), np.array([1, 9], dtype=np.int32))
    assert cal.scores(0) == [1.0] and cal.scores(1) == [2.0, 3.0, 4.0] and cal.scores(4) == [5.0]


def test_concurrent_updates_lose_nothing_while_strata_grow():
    cal = Calibrator(capacity=1 << 14)

    def worker(k):
        for i in range(1500):
            cal.update(float(k * 10000 + i), turn=k % 2)
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert cal.n(turn=0) == cal.n(turn=1) == 3000
    assert sorted(cal.scores(0) + cal.scores(1)) == sorted(float(k * 10000 + i) for k in range(4) for i in range(1500))
