"""RejectionTally: how often the conformal test rejected, per stratum, with exact intervals.

The calibration guarantee is per stratum (rate <= alpha, and = alpha when smoothed), so the run
report counts tests and rejections per stratum and gives each rate a 95% Clopper-Pearson
interval: alpha above the interval means the promise was broken beyond chance. Tests run while
the stratum was in warm-up (decided by the warm-up rule, not by a p-value against enough scores of
its own) are counted in `tested` and also separately in `warmup` (and `warmup_share`), so a rate
far from alpha can be told apart from a calibration that is simply still filling.

Clopper-Pearson assumes independent tests; a run's tests come in clusters (a question's steps,
or a sample's), so each test may name its `cluster` and the report adds the cluster-robust and
cluster-bootstrap intervals (clustered.py) beside it. `level` is the working level a test was
decided at (alpha, or an adaptive level): the report gives its mean.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Dict, Hashable, List, Optional

from .clustered import clustered_summary
from .intervals import check_alpha, clopper_pearson


@dataclass
class StratumCounts:
    """Counts of one stratum: tests run, rejections among them, tests run during warm-up; per
    cluster [rejected, tested]; the sum and count of the working levels recorded."""

    tested: int = 0
    rejected: int = 0
    warmup: int = 0
    clusters: Dict[Hashable, List[int]] = field(default_factory=dict)
    level_sum: float = 0.0
    levels: int = 0

    def copy(self) -> "StratumCounts":
        return StratumCounts(self.tested, self.rejected, self.warmup, {k: list(v) for k, v in self.clusters.items()},
                             self.level_sum, self.levels)

    def add(self, other: "StratumCounts") -> None:
        self.tested += other.tested
        self.rejected += other.rejected
        self.warmup += other.warmup
        for key, (rejected, tested) in other.clusters.items():
            pair = self.clusters.setdefault(key, [0, 0])
            pair[0] += rejected
            pair[1] += tested
        self.level_sum += other.level_sum
        self.levels += other.levels


def _as_bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if hasattr(value, "item") and getattr(value, "size", 1) in (1, ()):  # numpy / torch scalars
        value = value.item()
    if isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
        return bool(value)
    raise TypeError(f"{name} must be a bool, got {value!r}")


def _summary(c: StratumCounts) -> Dict[str, Any]:
    out: Dict[str, Any] = {"tested": c.tested, "rejected": c.rejected,
                           "rate": c.rejected / c.tested if c.tested else None,
                           "ci": list(clopper_pearson(c.rejected, c.tested))}
    if c.clusters:
        out.update(clustered_summary(c.clusters))
    return out


class RejectionTally:
    """Counts conformal tests at level `alpha` per stratum; `as_dict()` is the JSON report.

    Thread-safe: several workers may record into one tally.
    """

    def __init__(self, alpha: float) -> None:
        self.alpha = check_alpha(alpha)
        self._strata: Dict[Hashable, StratumCounts] = {}
        self._lock = threading.Lock()

    def record(self, stratum: Hashable, rejected: bool, warmup: bool = False, *,
               cluster: Optional[Hashable] = None, level: Optional[float] = None) -> None:
        """Counts one test in `stratum`: whether it rejected, whether it ran in warm-up, which
        cluster it belongs to (e.g. its question) and the working level it was decided at."""
        rejected, warmup = _as_bool(rejected, "rejected"), _as_bool(warmup, "warmup")
        hash(stratum)  # TypeError for unhashable keys, before anything is counted
        hash(cluster)
        if level is not None and (isinstance(level, bool) or not isinstance(level, (int, float)) or level != level):
            raise TypeError(f"level must be a real number or None, got {level!r}")
        with self._lock:
            counts = self._strata.setdefault(stratum, StratumCounts())
            counts.tested += 1
            counts.rejected += rejected
            counts.warmup += warmup
            if cluster is not None:
                pair = counts.clusters.setdefault(cluster, [0, 0])
                pair[0] += rejected
                pair[1] += 1
            if level is not None:
                counts.level_sum += float(level)
                counts.levels += 1

    def merge(self, other: "RejectionTally") -> "RejectionTally":
        """Adds the counts of `other` (same alpha) into this tally; returns self."""
        if not isinstance(other, RejectionTally):
            raise TypeError(f"other must be a RejectionTally, got {type(other).__name__}")
        if other.alpha != self.alpha:
            raise ValueError(f"cannot merge tallies with different alpha: {self.alpha} and {other.alpha}")
        if other is self:
            raise ValueError("cannot merge a tally into itself")
        with other._lock:
            items = [(k, c.copy()) for k, c in other._strata.items()]
        with self._lock:
            for key, c in items:
                self._strata.setdefault(key, StratumCounts()).add(c)
        return self

    def counts(self, stratum: Hashable) -> StratumCounts:
        """A copy of the counts of one stratum (zeros if never recorded)."""
        with self._lock:
            return self._strata.get(stratum, StratumCounts()).copy()

    @property
    def tested(self) -> int:
        with self._lock:
            return sum(c.tested for c in self._strata.values())

    @property
    def rejected(self) -> int:
        with self._lock:
            return sum(c.rejected for c in self._strata.values())

    def as_dict(self) -> Dict[str, Any]:
        """JSON-ready report: per stratum (keyed by str(stratum)) tested, rejected, alpha, rate
        (None when nothing was tested), 95% Clopper-Pearson ci as [lo, hi], warmup and
        warmup_share, level_mean (None when no level was recorded) and, when tests named their
        cluster, clusters, ci_cluster (cluster-robust) and ci_bootstrap (None below 2 clusters);
        then the totals over all strata (clustered by the same cluster ids)."""
        with self._lock:
            items = [(k, c.copy()) for k, c in self._strata.items()]
        strata: Dict[str, Dict[str, Any]] = {}
        total = StratumCounts()
        for key, c in items:
            name = str(key)
            if name in strata:
                raise ValueError(f"strata {key!r} and another key both print as {name!r}")
            entry = _summary(c)
            entry.update(alpha=self.alpha, warmup=c.warmup, warmup_share=c.warmup / c.tested if c.tested else None,
                         level_mean=c.level_sum / c.levels if c.levels else None)
            strata[name] = entry
            total.add(c)
        report: Dict[str, Any] = {"strata": strata}
        report.update(_summary(total))
        return report

    def __repr__(self) -> str:
        return f"RejectionTally(alpha={self.alpha}, tested={self.tested}, rejected={self.rejected})"
