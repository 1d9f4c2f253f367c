"""clopper_pearson against closed forms and scipy; RejectionTally's report."""
import json

import pytest

from a1.calibration import RejectionTally, clopper_pearson


def test_clopper_pearson_closed_forms():
    # k = 0: upper solves (1 - p)^n = (1 - c)/2; k = n: lower solves p^n = (1 - c)/2.
    assert clopper_pearson(0, 10) == (0.0, pytest.approx(1 - 0.025 ** (1 / 10), abs=1e-12))
    assert clopper_pearson(10, 10) == (pytest.approx(0.025 ** (1 / 10), abs=1e-12), 1.0)
    assert clopper_pearson(0, 1, confidence=0.9) == (0.0, pytest.approx(0.95, abs=1e-12))
    assert clopper_pearson(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize("k,n,confidence", [(3, 10, 0.95), (1, 50, 0.95), (49, 50, 0.99), (500, 1000, 0.95),
                                            (7, 2000, 0.9), (0, 3, 0.95)])
def test_clopper_pearson_matches_scipy(k, n, confidence):
    stats = pytest.importorskip("scipy.stats")
    expected = stats.binomtest(k, n).proportion_ci(confidence_level=confidence, method="exact")
    lo, hi = clopper_pearson(k, n, confidence)
    assert lo == pytest.approx(expected.low, abs=1e-10) and hi == pytest.approx(expected.high, abs=1e-10)
    assert lo <= k / n <= hi


def test_clopper_pearson_known_value():
    # 3 of 10: the textbook exact interval (0.0667, 0.6525)
    lo, hi = clopper_pearson(3, 10)
    assert round(lo, 4) == 0.0667 and round(hi, 4) == 0.6525


@pytest.mark.parametrize("args,name", [((11, 10), "k"), ((-1, 10), "k"), ((0, -1), "n"),
                                       ((1, 10, 1.0), "confidence"), ((1, 10, 0.0), "confidence")])
def test_clopper_pearson_errors(args, name):
    with pytest.raises(ValueError, match=name):
        clopper_pearson(*args)
    with pytest.raises(TypeError, match="k"):
        clopper_pearson(1.5, 10)


def test_tally_report():
    tally = RejectionTally(0.1)
    for i in range(20):
        tally.record(0, rejected=i < 3, warmup=i < 9)
    tally.record(("q1", 2), True)
    tally.record(("q1", 2), False)
    report = tally.as_dict()
    json.dumps(report)  # JSON-ready
    assert set(report) == {"strata", "tested", "rejected", "rate", "ci"}
    assert list(report["strata"]) == ["0", "('q1', 2)"]
    zero = report["strata"]["0"]
    assert zero == {"tested": 20, "rejected": 3, "alpha": 0.1, "rate": 0.15,
                    "ci": list(clopper_pearson(3, 20)), "warmup": 9, "warmup_share": 0.45, "level_mean": None}
    assert report["strata"]["('q1', 2)"]["rate"] == 0.5
    assert (report["tested"], report["rejected"]) == (22, 4)
    assert report["rate"] == pytest.approx(4 / 22) and report["ci"] == list(clopper_pearson(4, 22))
    assert tally.tested == 22 and tally.rejected == 4 and tally.counts(0).warmup == 9


def test_empty_tally():
    report = RejectionTally(0.05).as_dict()
    assert report == {"strata": {}, "tested": 0, "rejected": 0, "rate": None, "ci": [0.0, 1.0]}


def test_tally_merge():
    a, b = RejectionTally(0.1), RejectionTally(0.1)
    a.record(0, True)
    b.record(0, False, warmup=True)
    b.record(1, True)
    assert a.merge(b) is a
    assert a.as_dict()["strata"]["0"] == {"tested": 2, "rejected": 1, "alpha": 0.1, "rate": 0.5,
                                           "ci": list(clopper_pearson(1, 2)), "warmup": 1, "warmup_share": 0.5,
                                           "level_mean": None}
    assert a.as_dict()["strata"]["1"]["tested"] == 1 and b.tested == 2  # other unchanged
    with pytest.raises(ValueError, match="alpha"):
        a.merge(RejectionTally(0.2))


def test_tally_errors():
    with pytest.raises(ValueError, match="alpha"):
        RejectionTally(0.0)
    tally = RejectionTally(0.1)
    with pytest.raises(TypeError, match="rejected"):
        tally.record(0, "yes")
    with pytest.raises(TypeError):
        tally.record([0], True)
    tally.record(1, True)
    tally.record("1", True)
    with pytest.raises(ValueError, match="'1'"):  # two keys that print alike
        tally.as_dict()


def test_tally_clusters_and_levels():
    """Tests that name their cluster get the cluster-robust and bootstrap intervals beside
    Clopper-Pearson (per stratum and overall, merged across tallies); levels are averaged."""
    from a1.calibration import cluster_bootstrap_interval, cluster_robust_interval

    a, b = RejectionTally(0.2), RejectionTally(0.2)
    for q, (k, n) in enumerate([(1, 10), (5, 10), (0, 8)]):
        for i in range(n):
            (a if q < 2 else b).record(0, i < k, cluster=f"q{q}", level=0.2 + 0.01 * q)
    a.merge(b)
    report = a.as_dict()
    entry = report["strata"]["0"]
    assert entry["clusters"] == 3 and report["clusters"] == 3
    assert entry["ci_cluster"] == list(cluster_robust_interval([1, 5, 0], [10, 10, 8]))
    assert entry["ci_bootstrap"] == list(cluster_bootstrap_interval([1, 5, 0], [10, 10, 8]))
    assert entry["level_mean"] == pytest.approx((10 * 0.2 + 10 * 0.21 + 8 * 0.22) / 28)
    lone = RejectionTally(0.2)
    lone.record(0, True, cluster="q")
    assert lone.as_dict()["strata"]["0"]["ci_cluster"] is None  # one cluster: no spread between clusters
    with pytest.raises(TypeError, match="level"):
        lone.record(0, True, level="high")
