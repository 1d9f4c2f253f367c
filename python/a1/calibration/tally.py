"""RejectionTally: how often the conformal test rejected, per stratum, with exact intervals.

The calibration guarantee is per stratum (rate <= alpha, and = alpha when smoothed), so the run
report counts tests and rejections per stratum and gives each rate a 95% Clopper-Pearson
interval: alpha above the interval means the promise was broken beyond chance. Tests run while
the stratum was in warm-up (fewer than ceil(1/alpha) - 1 scores, where an unsmoothed test cannot
reject) are counted in `tested` and also separately in `warmup`, so a rate far below alpha can
be told apart from a calibration that is simply still filling.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Dict, Hashable

from .intervals import check_alpha, clopper_pearson


@dataclass
class StratumCounts:
    """Counts of one stratum: tests run, rejections among them, tests run during warm-up."""

    tested: int = 0
    rejected: int = 0
    warmup: int = 0


def _as_bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if hasattr(value, "item") and getattr(value, "size", 1) in (1, ()):  # numpy / torch scalars
        value = value.item()
    if isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
        return bool(value)
    raise TypeError(f"{name} must be a bool, got {value!r}")


def _summary(tested: int, rejected: int) -> Dict[str, Any]:
    return {"tested": tested, "rejected": rejected,
            "rate": rejected / tested if tested else None,
            "ci": list(clopper_pearson(rejected, tested))}


class RejectionTally:
    """Counts conformal tests at level `alpha` per stratum; `as_dict()` is the JSON report.

    Thread-safe: several workers may record into one tally.
    """

    def __init__(self, alpha: float) -> None:
        self.alpha = check_alpha(alpha)
        self._strata: Dict[Hashable, StratumCounts] = {}
        self._lock = threading.Lock()

    def record(self, stratum: Hashable, rejected: bool, warmup: bool = False) -> None:
        """Counts one test in `stratum`: whether it rejected, and whether it ran in warm-up."""
        rejected, warmup = _as_bool(rejected, "rejected"), _as_bool(warmup, "warmup")
        hash(stratum)  # TypeError for unhashable keys, before anything is counted
        with self._lock:
            counts = self._strata.setdefault(stratum, StratumCounts())
            counts.tested += 1
            counts.rejected += rejected
            counts.warmup += warmup

    def merge(self, other: "RejectionTally") -> "RejectionTally":
        """Adds the counts of `other` (same alpha) into this tally; returns self."""
        if not isinstance(other, RejectionTally):
            raise TypeError(f"other must be a RejectionTally, got {type(other).__name__}")
        if other.alpha != self.alpha:
            raise ValueError(f"cannot merge tallies with different alpha: {self.alpha} and {other.alpha}")
        if other is self:
            raise ValueError("cannot merge a tally into itself")
        with other._lock:
            items = [(k, StratumCounts(c.tested, c.rejected, c.warmup)) for k, c in other._strata.items()]
        with self._lock:
            for key, c in items:
                counts = self._strata.setdefault(key, StratumCounts())
                counts.tested += c.tested
                counts.rejected += c.rejected
                counts.warmup += c.warmup
        return self

    def counts(self, stratum: Hashable) -> StratumCounts:
        """A copy of the counts of one stratum (zeros if never recorded)."""
        with self._lock:
            c = self._strata.get(stratum, StratumCounts())
            return StratumCounts(c.tested, c.rejected, c.warmup)

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
        (None when nothing was tested), 95% Clopper-Pearson ci as [lo, hi], warmup; then totals."""
        with self._lock:
            items = [(k, StratumCounts(c.tested, c.rejected, c.warmup)) for k, c in self._strata.items()]
        strata: Dict[str, Dict[str, Any]] = {}
        for key, c in items:
            name = str(key)
            if name in strata:
                raise ValueError(f"strata {key!r} and another key both print as {name!r}")
            entry = _summary(c.tested, c.rejected)
            entry.update(alpha=self.alpha, warmup=c.warmup)
            strata[name] = {k: entry[k] for k in ("tested", "rejected", "alpha", "rate", "ci", "warmup")}
        report: Dict[str, Any] = {"strata": strata}
        report.update(_summary(sum(c.tested for _, c in items), sum(c.rejected for _, c in items)))
        return report

    def __repr__(self) -> str:
        return f"RejectionTally(alpha={self.alpha}, tested={self.tested}, rejected={self.rejected})"
