"""Metrics with known answers: pass@k, percentiles, and summarize on hand-built records (votes:
tests/a1/answers/test_vote.py)."""
from __future__ import annotations

import itertools
import math

import pytest

from a1.calibration import cluster_bootstrap_interval, cluster_robust_interval, clopper_pearson
from a1.eval import metrics
from a1.eval.metrics import pass_at_k, percentiles, summarize


def brute_pass_at_k(n: int, c: int, k: int) -> float:
    """Fraction of all k-subsets of n samples (the first c correct) holding a correct one."""
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(i < c for i in s) for s in subsets) / len(subsets)


def test_pass_at_k_matches_enumeration() -> None:
    for n in range(1, 9):
        for c in range(n + 1):
            for k in range(1, n + 1):
                assert pass_at_k(n, c, k) == pytest.approx(brute_pass_at_k(n, c, k), abs=1e-12), (n, c, k)


def test_pass_at_k_values_and_errors() -> None:
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(10, 0, 5) == 0.0 and pass_at_k(10, 10, 1) == 1.0 and pass_at_k(10, 6, 5) == 1.0
    big = pass_at_k(1000, 1, 500)  # no overflow in the product form
    assert big == pytest.approx(0.5)
    assert pass_at_k(200, 7, 50) == pytest.approx(1 - math.comb(193, 50) / math.comb(200, 50))
    for args, message in [((4, 1, 5), "k must be in"), ((4, 1, 0), "k must be in"), ((4, 5, 1), "c must be in"),
                          ((0, 0, 1), "n must be >= 1"), ((4, -1, 1), "c must be in"), ((4.0, 1, 1), "n must be an int"),
                          ((4, True, 1), "c must be an int")]:
        with pytest.raises(ValueError, match=message):
            pass_at_k(*args)


def test_percentiles() -> None:
    values = [float(v) for v in range(1, 101)]  # numpy: p50 = 50.5, p90 = 90.1, p99 = 99.01
    got = percentiles(values)
    assert list(got) == ["p50", "p90", "p99"]
    assert got["p50"] == pytest.approx(50.5) and got["p90"] == pytest.approx(90.1) and got["p99"] == pytest.approx(99.01)
    assert percentiles([3.0, 1.0, 2.0], qs=(0, 50, 100, 99.9)) == {
        "p0": 1.0, "p50": 2.0, "p100": 3.0, "p99.9": pytest.approx(2.998)}
    assert percentiles([]) == {"p50": None, "p90": None, "p99": None}
    assert percentiles([4.0]) == {"p50": 4.0, "p90": 4.0, "p99": 4.0}
    with pytest.raises(ValueError, match="qs must lie in"):
        percentiles([1.0], qs=(101,))
    with pytest.raises(ValueError, match="NaN"):
        percentiles([1.0, float("nan")])


def test_clopper_pearson_is_reexported() -> None:
    assert metrics.clopper_pearson is clopper_pearson


def step(decision: str, p: float | None, stratum: str = "0", by: str = "draft", warm: bool = False,
         score: float | None = None) -> dict:
    score = score if score is not None else (None if p is None else 1.0)
    return {"turn": 0, "attempt": 0, "stratum": stratum, "score": score, "p_value": p,
            "decision": decision, "num_tokens": 5, "by": by, "in_warmup": warm}


def rec(q: str, i: int, answer: str | None, correct: bool, latency: float, steps: list | None = None, **over) -> dict:
    r = {"question_id": q, "sample_index": i, "dataset": "toy", "gold": "g", "answer": answer,
         "correct": correct, "finish_reason": "answer" if answer is not None else "max_tokens",
         "num_tokens": 10, "draft_tokens": 7, "target_tokens": 3, "latency": latency, "steps": steps or []}
    r.update(over)
    return r


RECORDS = [
    # q1: gold 1/2; samples listed in finishing order, not by index; 0.5 == \frac12 by equivalence.
    # By sample_index the 0.5 class comes first and wins the 2-2 tie; in list order 3 would.
    rec("q1", 3, "3", False, 4.0, vote_weight=0.5),
    rec("q1", 0, "0.5", True, 2.0, [step("accept", 0.6), step("takeover", 0.01), step("takeover", None, by="target", score=2.0)],
        vote_weight=0.1),
    rec("q1", 1, "3", False, 1.0, [step("resample", 0.04, warm=True), step("accept", 0.5)], vote_weight=0.5),
    rec("q1", 2, "\\frac12", True, 3.0, [step("forced", None)], vote_weight=0.1),
    # q2: the majority is wrong, the weighted vote is right; one sample has no answer
    rec("q2", 0, "7", False, 1.0, [step("accept", 0.3, stratum="1")], vote_weight=0.1),
    rec("q2", 1, "7", False, 2.0, [step("accept", 0.9, stratum="1")], vote_weight=0.1),
    rec("q2", 2, "8", True, 5.0, [step("resample", 0.02, stratum="1")], vote_weight=0.9),
    rec("q2", 3, None, False, 6.0, vote_weight=0.9),
    # q3: unanswerable
    rec("q3", 0, None, False, 1.0), rec("q3", 1, None, False, 2.0), rec("q3", 2, None, False, 1.5),
    rec("q3", 3, None, False, 0.5),
]


def test_summarize_hand_built() -> None:
    s = summarize(RECORDS, alpha=0.05, wall_time=4.0)
    assert (s["questions"], s["samples"], s["samples_per_question"]) == (3, 12, {"min": 4, "max": 4})
    assert s["answered"] == pytest.approx(7 / 12)
    assert s["mean_accuracy"] == pytest.approx(3 / 12)
    assert s["pass_at_n"] == pytest.approx(2 / 3)
    assert s["maj_at_n"] == pytest.approx(1 / 3)  # q1 right (0.5 and 3 tie 2-2; 0.5 has sample 0), q2 wrong
    assert s["weighted_vote"] == pytest.approx(1 / 3)  # q1: 3 (1.0) beats 0.5 (0.2) -> wrong; q2: 8 (0.9) -> right
    p1 = (pass_at_k(4, 2, 1) + pass_at_k(4, 1, 1) + 0) / 3
    p2 = (pass_at_k(4, 2, 2) + pass_at_k(4, 1, 2) + 0) / 3
    assert s["pass_at_k"] == {"1": pytest.approx(p1), "2": pytest.approx(p2), "4": pytest.approx(2 / 3)}
    # steps: 7 tested draft steps (forced and the target's takeover step are not), 1 takeover
    assert (s["steps"], s["tested_steps"], s["forced_steps"], s["takeovers"]) == (9, 7, 1, 1)
    assert s["takeover_rate"] == pytest.approx(1 / 7)
    rej = s["rejection"]
    assert rej["alpha"] == 0.05 and rej["confidence"] == 0.95
    assert list(rej["by_stratum"]) == ["0", "1"]
    s0, s1 = rej["by_stratum"]["0"], rej["by_stratum"]["1"]
    assert (s0["tested"], s0["rejected"], s0["warmup"], s0["rate"]) == (4, 2, 1, 0.5)
    assert (s0["ci_low"], s0["ci_high"]) == pytest.approx(clopper_pearson(2, 4))
    assert (s1["tested"], s1["rejected"]) == (3, 1)
    assert rej["overall"]["tested"] == 7 and rej["overall"]["rejected"] == 3
    assert s0["alpha_in_ci"] is (s0["ci_low"] <= 0.05 <= s0["ci_high"])
    assert s0["warmup_share"] == 0.25 and s0["level_mean"] is None  # these records carry no level
    # clustered by question: stratum 0 is q1 alone (one cluster: no interval), stratum 1 is q2 alone
    assert s0["questions"] == 1 and s0["ci_cluster_low"] is None and s0["alpha_in_ci_cluster"] is None
    overall = rej["overall"]
    assert overall["questions"] == 2
    assert [overall["ci_cluster_low"], overall["ci_cluster_high"]] == list(cluster_robust_interval([2, 1], [4, 3]))
    assert [overall["ci_bootstrap_low"], overall["ci_bootstrap_high"]] == list(cluster_bootstrap_interval([2, 1], [4, 3]))
    assert list(rej["by_attempt"]) == ["0"] and rej["by_attempt"]["0"]["tested"] == 7
    assert (s["generated_tokens"], s["draft_tokens"], s["target_tokens"]) == (120, 84, 36)
    assert s["tokens_per_second"] == pytest.approx(30.0)
    assert s["latency"]["per_question"]["p50"] == pytest.approx(4.0)  # maxima 4, 6, 2
    assert s["latency"]["per_sample"]["p50"] == pytest.approx(2.0)
    assert s["finish_reasons"] == {"answer": 7, "max_tokens": 5}


def test_summarize_is_order_independent_and_votes_by_sample_index() -> None:
    a, b = summarize(RECORDS), summarize(list(reversed(RECORDS)))
    for key in ("maj_at_n", "weighted_vote", "pass_at_n", "mean_accuracy", "takeover_rate"):
        assert a[key] == pytest.approx(b[key]), key
    assert a["pass_at_k"] == pytest.approx(b["pass_at_k"]) and a["rejection"] == b["rejection"]


def test_summarize_unequal_sample_counts_and_empty() -> None:
    s = summarize([rec("a", 0, "1", True, 1.0), rec("a", 1, "1", True, 1.0), rec("b", 0, "2", False, 1.0)])
    assert list(s["pass_at_k"]) == ["1"]  # k <= the smallest per-question sample count
    assert s["tokens_per_second"] is None and s["rejection"]["overall"]["rate"] is None
    assert s["takeover_rate"] is None and "alpha_in_ci" not in s["rejection"]["overall"]
    empty = summarize([])
    assert empty["questions"] == 0 and empty["mean_accuracy"] is None and empty["pass_at_k"] == {}
    assert empty["latency"]["per_sample"]["p50"] is None


def test_summarize_rejects_bad_records() -> None:
    with pytest.raises(ValueError, match=r"records\[1\] repeats sample \('q', 0\)"):
        summarize([rec("q", 0, "1", True, 1.0), rec("q", 0, "1", True, 1.0)])
    bad = rec("q", 0, "1", True, 1.0)
    del bad["latency"]
    with pytest.raises(ValueError, match=r"records\[0\] lacks key 'latency'"):
        summarize([bad])
    with pytest.raises(ValueError, match="must be a bool"):
        summarize([rec("q", 0, "1", 1, 1.0)])
    with pytest.raises(ValueError, match="step decision must be one of"):
        summarize([rec("q", 0, "1", True, 1.0, [step("reject", 0.1)])])
    with pytest.raises(ValueError, match="alpha must be in"):
        summarize(RECORDS, alpha=1.5)
    with pytest.raises(ValueError, match="wall_time must be > 0"):
        summarize(RECORDS, wall_time=0.0)


def test_rejection_by_attempt_and_working_levels() -> None:
    steps = [dict(step("resample", 0.2), level=0.1, resample_level=0.3),
             dict(step("takeover", 0.05), attempt=1, level=0.12, resample_level=0.3),
             dict(step("accept", 0.9), attempt=1, level=0.14, resample_level=0.3)]
    s = summarize([rec("q1", 0, None, False, 1.0, steps), rec("q2", 0, None, False, 1.0, steps[:1])], alpha=0.3)
    by_attempt = s["rejection"]["by_attempt"]
    assert (by_attempt["0"]["tested"], by_attempt["0"]["rejected"]) == (2, 2)
    assert (by_attempt["1"]["tested"], by_attempt["1"]["rejected"]) == (2, 1)
    assert s["rejection"]["overall"]["level_mean"] == pytest.approx((0.1 + 0.12 + 0.14 + 0.1) / 4)
