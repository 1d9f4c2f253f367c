"""Calibrator: conformal p-values of step scores against calibration scores, stratified by turn.

Statistics. Let s_1..s_n be the calibration scores of one stratum and s a fresh score such that
(s_1, .., s_n, s) are exchangeable (i.i.d. is enough). The rank of s among the n + 1 values is then
uniform, so the conformal p-value
    p = (1 + #{s_i >= s}) / (n + 1)
satisfies P(p <= alpha) <= alpha for every alpha: "reject iff p <= alpha" rejects at most a
fraction alpha of fresh scores. The (n + 1) and the 1 count the test score itself among the
ranks; dropping them (the uncorrected percentile #{s_i >= s} / n) rejects up to about
alpha + 1 / (n + 1), which matters exactly when n is small. With continuous scores the offline
rate is floor((n + 1) alpha) / (n + 1), in [alpha - 1/(n + 1), alpha]. With ties p is
conservative; the smoothed p-value
    p = (#{s_i > s} + U (1 + #{s_i = s})) / (n + 1),   U ~ U(0, 1)
is exactly uniform, so the rate is exactly alpha, ties or not (and online, testing each score
against all earlier ones, the smoothed p-values are independent uniforms).

Why strata: the guarantee needs the test score to be exchangeable with the calibration scores.
Step scores drift with the turn (later reasoning steps of the same question score differently),
so one pool of scores from all turns (or, as in the original A1 code, from turn 0 only) rejects
far more than alpha on some turns and far less on others. Scores are therefore kept per stratum
bucket = bisect_right(turn_edges, turn) (optionally per (question, bucket), optionally per
attempt: strata.py), and the guarantee holds per stratum. Every score also joins its stratum's
pool (strata.pool_key): the warm-up rule "pooled" tests against it while the stratum is small.
"""
from __future__ import annotations

import bisect
import math
import os
import threading
from dataclasses import asdict
from fractions import Fraction
from typing import Any, Dict, Hashable, Iterable, List, Mapping, Optional, Sequence, Union

import numpy as np
import torch

from a1_ext.quantile import QuantileBuffer

from .intervals import check_alpha
from .persistence import CalibratorSettings, read_document, write_document
from .strata import StratumKey, check_score, check_turn, make_key, pool_key, question_id, record_of

__all__ = ["Calibrator", "StratumKey"]

_INITIAL_SLOTS = 1024  # unwindowed buffers start this small and double up to `capacity`
POOL_WINDOW = 4096  # a pool keeps its most recent scores: a prior for warm-up, not a calibration set

Question = Optional[Union[str, int]]


class Calibrator:
    """Calibration scores per stratum, answering conformal p-values (reject iff p <= alpha).

    Args:
        turn_edges: strictly increasing turn indices; turn t (0-based) falls in stratum
            bisect_right(turn_edges, t), so (1, 2, 4, 8) gives turns {0}, {1}, {2, 3}, {4..7},
            {8, ...} and (1, 2, ..., K) one stratum per turn up to K. () puts every turn in one stratum.
        per_question: key strata by (question, bucket) instead of bucket.
        smoothed: randomised tie-breaking (exact rate alpha even with ties); U comes from a
            torch.Generator seeded with `seed`, so runs are reproducible.
        window: keep only the `window` most recent scores of each stratum (for slow drift).
        rule: "conformal", or "reference": the original authors' uncorrected percentile
            p = 1 - #{s_i < s}/n, for comparison only (it rejects more than alpha at small n).
        capacity: most scores one stratum may hold without a window.
        by_attempt: redraft a >= 1 of the three-way rule gets strata of its own (strata.py).

    p_value never changes the scores; update/fit add scores. Writers take a lock, so several
    threads may update and query one Calibrator.
    """

    def __init__(
        self,
        turn_edges: Sequence[int] = (1, 2, 4, 8),
        per_question: bool = False,
        smoothed: bool = False,
        window: Optional[int] = None,
        seed: int = 0,
        rule: str = "conformal",
        capacity: int = 1 << 16,
        by_attempt: bool = False,
    ) -> None:
        self.settings = CalibratorSettings(
            tuple(turn_edges), per_question, smoothed, window, seed, rule, capacity, by_attempt)
        self.metadata: Dict[str, Any] = {}  # what `load` read from the file
        self._buffers: Dict[StratumKey, QuantileBuffer] = {}
        self._pools: Dict[Hashable, QuantileBuffer] = {}
        self._generator = torch.Generator().manual_seed(int(seed))
        self._lock = threading.Lock()

    # -- strata ----------------------------------------------------------------------------------
    def stratum(self, *, turn: int, question: Question = None, attempt: int = 0) -> StratumKey:
        """The key of the stratum holding turn `turn` (of `question` when per_question; of
        `attempt` when by_attempt)."""
        bucket = bisect.bisect_right(self.settings.turn_edges, check_turn(turn))
        attempt = check_turn(attempt, "attempt")
        s = self.settings
        return make_key(bucket, question if s.per_question else None, attempt, s.per_question, s.by_attempt)

    def strata(self) -> List[StratumKey]:
        """Keys of the strata holding scores, in the order they were first filled."""
        return list(self._buffers)

    def scores(self, stratum_key: StratumKey) -> List[float]:
        """The scores of one stratum in arrival order ([] for an unknown stratum)."""
        buffer = self._buffers.get(stratum_key)
        return buffer.snapshot().tolist() if buffer is not None else []

    def n(self, *, turn: int, question: Question = None, attempt: int = 0) -> int:
        """Number of calibration scores in the stratum of (turn, question, attempt)."""
        buffer = self._buffers.get(self.stratum(turn=turn, question=question, attempt=attempt))
        return len(buffer) if buffer is not None else 0

    def pool_size(self, *, turn: int, question: Question = None, attempt: int = 0) -> int:
        """Number of scores in the pool of the stratum of (turn, question, attempt)."""
        pool = self._pools.get(pool_key(self.stratum(turn=turn, question=question, attempt=attempt),
                                        self.settings.per_question))
        return len(pool) if pool is not None else 0

    # -- queries ---------------------------------------------------------------------------------
    def p_value(self, score: float, *, turn: int, question: Question = None, attempt: int = 0) -> float:
        """Conformal p-value of `score` in its stratum; reject iff p <= alpha. See the module doc.

        n = 0 gives 1 (nothing to compare with), or U when smoothed (still exactly uniform).
        """
        s = check_score(score)
        return self._p(self._buffers.get(self.stratum(turn=turn, question=question, attempt=attempt)), s)

    def pooled_p_value(self, score: float, *, turn: int, question: Question = None, attempt: int = 0) -> float:
        """The p-value of `score` against its stratum's pool (its turn bucket over all questions and
        attempts): the warm-up rule "pooled"'s prior, not a stratum's guarantee."""
        s = check_score(score)
        key = self.stratum(turn=turn, question=question, attempt=attempt)
        return self._p(self._pools.get(pool_key(key, self.settings.per_question)), s)

    def _p(self, buffer: Optional[QuantileBuffer], s: float) -> float:
        if self.settings.rule == "reference":  # comparison only: O(n) copy, fine
            held = buffer.snapshot() if buffer is not None else None
            return 1.0 if held is None or len(held) == 0 else int((held >= s).sum()) / len(held)  # 1 - #{<}/n
        n = len(buffer) if buffer is not None else 0
        if self.settings.smoothed:
            u = float(torch.rand((), dtype=torch.float64, generator=self._generator))
            return u if n == 0 else buffer.p_value(s, smoothed=True, u=u)
        return 1.0 if n == 0 else buffer.p_value(s)

    def warmup(self, alpha: float) -> int:
        """Fewest scores a stratum needs before a score can be rejected at level alpha.

        Conformal: the smallest p is 1/(n + 1), so n >= ceil(1/alpha) - 1. (A smoothed p can fall
        below alpha earlier, but only through the coin U: such rejections say nothing about the
        score.) Reference rule: 1, since its p is 0 for a score above all n >= 1 scores.
        """
        alpha = check_alpha(alpha)
        if self.settings.rule == "reference":
            return 1
        # exact: the least k with 1/(k + 1) <= alpha, in closed form (no count-down, any alpha)
        k = math.ceil(1 / Fraction(alpha)) - 1
        if k < 2**52 and k > 0 and 1.0 / k <= alpha:  # p-values are floats: 1/k may round down to alpha
            k -= 1
        return k

    def in_warmup(self, alpha: float, *, turn: int, question: Question = None, attempt: int = 0) -> bool:
        """True while the stratum of (turn, question, attempt) holds fewer than warmup(alpha) scores."""
        return self.n(turn=turn, question=question, attempt=attempt) < self.warmup(alpha)

    # -- updates ---------------------------------------------------------------------------------
    def update(self, score: float, *, turn: int, question: Question = None, attempt: int = 0) -> None:
        """Adds one calibration score to the stratum of (turn, question, attempt) and its pool."""
        s = check_score(score)
        key = self.stratum(turn=turn, question=question, attempt=attempt)
        with self._lock:
            self._room(key, 1).push(s)
            self._pool(key).push(s)

    def fit(self, scores: Iterable[float], turns: Iterable[int],
            questions: Optional[Iterable[Union[str, int]]] = None,
            attempts: Optional[Iterable[int]] = None) -> None:
        """Adds many calibration scores; scores[i] came from turns[i] (of questions[i], attempt
        attempts[i], default 0).

        All-or-nothing: a NaN score or an overflowing stratum raises before anything is added.
        """
        values = _floats(scores)
        turn_array = _ints(turns)
        attempt_array = np.zeros(len(values), dtype=np.int64) if attempts is None else _ints(attempts)
        qs = None if questions is None else list(questions.tolist() if hasattr(questions, "tolist") else questions)
        for name, other in (("turns", turn_array), ("questions", qs), ("attempts", attempt_array)):
            if other is not None and len(other) != len(values):
                raise ValueError(f"scores and {name} must have the same length, got {len(values)} and {len(other)}")
        if self.settings.per_question and qs is None:
            raise ValueError("questions is required when per_question=True")
        nan = np.flatnonzero(np.isnan(values))
        if nan.size:
            raise ValueError(f"score is NaN (scores[{nan[0]}])")
        for name, array in (("turn", turn_array), ("attempt", attempt_array)):
            if array.size and (array.dtype.kind not in "iu" or array.min() < 0):
                bad = next(t for t in array.tolist() if isinstance(t, bool) or not isinstance(t, int) or t < 0)
                check_turn(bad, name)  # raises, naming the argument
        buckets = np.searchsorted(np.asarray(self.settings.turn_edges, dtype=np.int64), turn_array, side="right")
        s = self.settings
        groups: Dict[StratumKey, List[int]] = {}
        for i, (bucket, attempt) in enumerate(zip(buckets.tolist(), attempt_array.tolist())):
            question = question_id(qs[i]) if s.per_question else None
            groups.setdefault(make_key(bucket, question, attempt, s.per_question, s.by_attempt), []).append(i)
        with self._lock:
            for key, r in groups.items():  # check every stratum before filling any
                self._check_room(key, len(r))
            for key, r in groups.items():
                self._room(key, len(r)).extend(torch.from_numpy(values[r]))
            pools: Dict[Hashable, List[int]] = {}
            for key, r in groups.items():
                pools.setdefault(pool_key(key, s.per_question), []).extend(r)
            for pkey, r in pools.items():  # in arrival order: a windowed pool keeps the latest
                self._pool_of(pkey).extend(torch.from_numpy(values[sorted(r)][-POOL_WINDOW:]))

    def _check_room(self, key: StratumKey, extra: int) -> None:
        held = len(self._buffers[key]) if key in self._buffers else 0
        if self.settings.window is None and held + extra > self.settings.capacity:
            raise OverflowError(f"stratum {key!r} would hold {held + extra} scores, more than "
                                f"capacity={self.settings.capacity}; pass a larger capacity or a window")

    def _room(self, key: StratumKey, extra: int) -> QuantileBuffer:
        """The buffer of `key` with room for `extra` more scores (created or grown as needed)."""
        self._check_room(key, extra)
        buffer = self._buffers.get(key)
        window = self.settings.window
        if buffer is None:
            slots = window or min(self.settings.capacity, max(_INITIAL_SLOTS, extra))
            buffer = self._buffers[key] = QuantileBuffer(capacity=slots, window=window)
        elif window is None and len(buffer) + extra > buffer.capacity:
            grown = QuantileBuffer(min(self.settings.capacity, max(2 * buffer.capacity, len(buffer) + extra)))
            grown.extend(buffer.snapshot())
            buffer = self._buffers[key] = grown
        return buffer

    def _pool(self, key: StratumKey) -> QuantileBuffer:
        return self._pool_of(pool_key(key, self.settings.per_question))

    def _pool_of(self, pkey: Hashable) -> QuantileBuffer:
        pool = self._pools.get(pkey)
        if pool is None:
            pool = self._pools[pkey] = QuantileBuffer(capacity=POOL_WINDOW, window=POOL_WINDOW)
        return pool

    # -- persistence -----------------------------------------------------------------------------
    def save(self, path: Union[str, os.PathLike], metadata: Mapping[str, Any]) -> None:
        """Writes settings, `metadata` and every stratum's scores as JSON (see persistence.py).

        metadata describes what the scores mean (models, sampling parameters, step settings, score
        kind); `load(path, expect=...)` refuses a file whose metadata differs from the run's.
        """
        strata = [dict(record_of(key, self.settings.per_question), scores=self.scores(key)) for key in self.strata()]
        settings = dict(asdict(self.settings), turn_edges=list(self.settings.turn_edges))
        if not self.settings.by_attempt:
            settings.pop("by_attempt")  # files without it read as before, by older code too
        write_document(path, settings, metadata, strata)

    @classmethod
    def load(cls, path: Union[str, os.PathLike], expect: Optional[Mapping[str, Any]] = None) -> "Calibrator":
        """Restores a saved Calibrator (its U stream restarts from `seed`); `.metadata` holds the
        stored metadata.

        With `expect`, every key of it must be in the stored metadata with an equal value;
        otherwise ValueError names the first field that differs: scores calibrated under other
        models or settings are not exchangeable with this run's and would void the guarantee.
        """
        settings, metadata, strata = read_document(path, expect)
        calibrator = cls(**settings)
        calibrator.metadata = metadata
        s = calibrator.settings
        try:
            for record in strata:
                question = question_id(record["question"]) if s.per_question else None
                key = make_key(record["bucket"], question, record.get("attempt", 0), s.per_question, s.by_attempt)
                calibrator._room(key, len(record["scores"])).extend(record["scores"])
                calibrator._pool(key).extend(record["scores"][-POOL_WINDOW:])
        except (KeyError, TypeError) as err:
            raise ValueError(f"calibration file {path}: malformed stratum ({err!r})") from None
        return calibrator

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k!r}: {len(b)}" for k, b in self._buffers.items())
        return f"Calibrator({self.settings}, sizes={{{sizes}}})"


def _floats(scores: Any) -> np.ndarray:
    if isinstance(scores, torch.Tensor):
        return scores.detach().to("cpu", torch.float64).numpy().reshape(-1)
    if isinstance(scores, np.ndarray):
        return scores.astype(np.float64).reshape(-1)
    return np.asarray(list(scores), dtype=np.float64).reshape(-1)


def _ints(values: Any) -> np.ndarray:
    return np.asarray(values.cpu() if isinstance(values, torch.Tensor) else
                      values if isinstance(values, np.ndarray) else list(values)).reshape(-1)
