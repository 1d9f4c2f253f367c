"""Conformal calibration of step scores (A1/ATTS).

The target model scores each draft reasoning step; `Calibrator.p_value` ranks that score among
calibration scores of the same stratum (turn bucket, optionally per question). Rejecting when
p <= alpha rejects at most a fraction alpha of steps whose scores are exchangeable with the
calibration ones (exactly alpha with smoothing). `RejectionTally` reports the rates actually
observed per stratum with exact Clopper-Pearson intervals, so a run shows that the promise held.

    cal = Calibrator(turn_edges=(1, 2, 4, 8))
    cal.fit(scores, turns)                           # calibration pass
    p = cal.p_value(score, turn=3)                   # serving: reject iff p <= alpha
    cal.save("cal.json", {"draft": "...", "target": "...", "score": "ppl"})
    cal = Calibrator.load("cal.json", expect={"draft": "...", "target": "...", "score": "ppl"})

Under drift the exact p-values stay and the threshold moves: `AdaptiveLevels` (adaptive.py, ACI)
keeps each stratum's long-run rejection rate at alpha for any sequence of scores. `clustered.py`
gives intervals that treat the question (not the step) as the unit of replication.
"""
from .adaptive import DEFAULT_GAMMA, AdaptiveLevels, Levels, aci_bound, decide_at
from .calibrator import Calibrator
from .clustered import cluster_bootstrap_interval, cluster_robust_interval
from .intervals import check_alpha, clopper_pearson
from .persistence import FORMAT, FORMAT_VERSION, CalibratorSettings
from .strata import StratumKey
from .tally import RejectionTally, StratumCounts

__all__ = [
    "AdaptiveLevels",
    "DEFAULT_GAMMA",
    "Levels",
    "aci_bound",
    "decide_at",
    "cluster_bootstrap_interval",
    "cluster_robust_interval",
    "Calibrator",
    "CalibratorSettings",
    "StratumKey",
    "FORMAT",
    "FORMAT_VERSION",
    "clopper_pearson",
    "check_alpha",
    "RejectionTally",
    "StratumCounts",
]
