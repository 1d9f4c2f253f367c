"""Evaluation metrics over per-sample records (pure functions, no I/O).

A record is one finished sample as written by the evaluation runner (samples.jsonl):
{"question_id", "sample_index", "dataset", "gold", "answer": str|None, "correct": bool,
"finish_reason", "num_tokens", "draft_tokens", "target_tokens", "latency" (seconds from the
question's start to this sample's end), optional "vote_weight", and "steps": [{"turn", "attempt",
"stratum", "score", "p_value", "decision": accept|resample|takeover|forced, "num_tokens", "by"}]}.
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Optional, Sequence

from a1.calibration import clopper_pearson
from a1.eval.rejection import rejection_section
from a1.answers.vote import group_answers, winner

__all__ = ["clopper_pearson", "pass_at_k", "percentiles", "summarize"]


def _count(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int, got {value!r}")
    return value


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al. 2021): the probability that k of the n samples, drawn without
    replacement, include at least one of the c correct ones: 1 - C(n-c, k) / C(n, k).

    Computed as 1 - prod_{i=n-c+1}^{n} (1 - k/i), which avoids the huge binomials.
    """
    n, c, k = _count(n, "n"), _count(c, "c"), _count(k, "k")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not 0 <= c <= n:
        raise ValueError(f"c must be in [0, n={n}], got {c}")
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, n={n}], got {k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def percentiles(values: Sequence[float], qs: Sequence[float] = (50, 90, 99)) -> dict[str, Optional[float]]:
    """Percentiles by linear interpolation between order statistics (numpy's default method),
    keyed "p50", "p90", ...; every value is None for an empty sequence."""
    data = sorted(float(v) for v in values)
    if any(math.isnan(v) for v in data):
        raise ValueError("values contains NaN")
    out: dict[str, Optional[float]] = {}
    for q in qs:
        if not 0 <= q <= 100:
            raise ValueError(f"qs must lie in [0, 100], got {q}")
        key = f"p{q:g}"
        if not data:
            out[key] = None
            continue
        pos = (len(data) - 1) * q / 100.0
        lo = math.floor(pos)
        hi = min(lo + 1, len(data) - 1)
        out[key] = data[lo] + (data[hi] - data[lo]) * (pos - lo)
    return out



_DECISIONS = ("accept", "resample", "takeover", "forced")
_REQUIRED = ("question_id", "sample_index", "answer", "correct", "num_tokens", "draft_tokens",
             "target_tokens", "latency", "steps")


def is_tested_step(step: dict) -> bool:
    """A draft step the target judged (as a1.policy's StepRecord.tested): written by the draft (the
    target's own takeover step repeats the draft step's decision), scored, and not forced text."""
    return step.get("by") == "draft" and step.get("decision") != "forced" and step.get("score") is not None


def _rate(numerator: float, denominator: int) -> Optional[float]:
    return numerator / denominator if denominator else None


def _by_question(records: list[dict]) -> dict[str, list[dict]]:
    """Records grouped by question (first-appearance order), each group sorted by sample_index so
    that votes do not depend on the order in which samples finished."""
    groups: dict[str, list[dict]] = {}
    seen: set[tuple[str, int]] = set()
    for i, r in enumerate(records):
        if not isinstance(r, dict):
            raise ValueError(f"records[{i}] must be a dict, got {type(r).__name__}")
        for key in _REQUIRED:
            if key not in r:
                raise ValueError(f"records[{i}] lacks key {key!r}")
        if not isinstance(r["correct"], bool):
            raise ValueError(f"records[{i}]['correct'] must be a bool, got {r['correct']!r}")
        key = (r["question_id"], r["sample_index"])
        if key in seen:
            raise ValueError(f"records[{i}] repeats sample {key}")
        seen.add(key)
        groups.setdefault(r["question_id"], []).append(r)
    for group in groups.values():
        group.sort(key=lambda r: r["sample_index"])
    return groups


def summarize(
    records: list[dict], *, alpha: Optional[float] = None, wall_time: Optional[float] = None,
    confidence: float = 0.95,
) -> dict:
    """Metrics of an evaluation from its per-sample records (schema in the module docstring).

    - questions, samples: distinct question_ids and records; samples_per_question {min, max}.
    - answered: fraction of samples with an extracted answer (answer not None).
    - mean_accuracy: mean of `correct` over samples (the expected accuracy of a single sample).
    - pass_at_n: fraction of questions with at least one correct sample (the paper's accuracy).
    - maj_at_n: fraction of questions whose majority answer is correct. Answers are grouped with
      answers_equivalent (not string equality); the winning class's first member (lowest
      sample_index) carries the class's `correct` flag; a question with no answer counts as wrong.
    - weighted_vote: the same with each sample's vote weighted by `vote_weight` (default 1).
    - pass_at_k: {"1": .., "2": .., "4": ..} for k = 1, 2, 4, ... <= the smallest sample count of a
      question; the unbiased estimator pass_at_k(n, c, k) averaged over questions.
    - steps, tested_steps, forced_steps, takeovers, takeover_rate: step counts over all samples.
      A tested step is a draft step the target judged: `by` "draft" (the target's own takeover
      step repeats the draft step's decision), a score, and a decision other than "forced".
      takeover_rate = tested steps decided "takeover" / tested_steps (None when none was tested).
    - rejection: {"confidence", "alpha", "overall", "by_stratum", "by_attempt"} over the tested
      steps that have a p_value (sync mode's ranking has none): "resample" and "takeover" count as
      rejected, "accept" as not. Each entry has tested, rejected, warmup and warmup_share (steps
      with in_warmup), rate, the Clopper-Pearson interval (ci_low, ci_high) at `confidence`, the
      question-clustered intervals (questions, ci_cluster_low/high: cluster-robust;
      ci_bootstrap_low/high: cluster bootstrap; None below 2 questions), level_mean (the mean
      working level), plus alpha_in_ci and alpha_in_ci_cluster when `alpha` is given: the level a
      rejection is tested at (alpha_resample when resampling is on). See a1.eval.rejection.
    - generated_tokens, draft_tokens, target_tokens: sums of num_tokens, draft_tokens, target_tokens.
    - wall_time, tokens_per_second: generated_tokens / wall_time when wall_time (seconds) is given.
    - latency: {"per_sample": percentiles of `latency`, "per_question": percentiles of the largest
      latency of each question's samples (a question ends with its last sample)}.
    - finish_reasons: count of each finish_reason.
    Rates of an empty record list are None.
    """
    if alpha is not None and not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if wall_time is not None and not wall_time > 0:
        raise ValueError(f"wall_time must be > 0 seconds, got {wall_time!r}")
    groups = _by_question(records)
    n_q, n_s = len(groups), len(records)
    pass_n = maj = weighted = 0
    pass_k: dict[str, float] = {}
    sizes = [len(g) for g in groups.values()]
    ks = [2**j for j in range(64) if 2**j <= min(sizes, default=0)]
    for group in groups.values():
        n, c = len(group), sum(r["correct"] for r in group)
        pass_n += c > 0
        for k in ks:
            pass_k[str(k)] = pass_k.get(str(k), 0.0) + pass_at_k(n, c, k) / n_q
        weights = [1.0 if r.get("vote_weight") is None else r["vote_weight"] for r in group]
        classes = group_answers([r["answer"] for r in group], weights)
        if classes:
            maj += group[classes[winner(classes, weighted=False)].indices[0]]["correct"]
            weighted += group[classes[winner(classes, weighted=True)].indices[0]]["correct"]

    steps = [s for r in records for s in r["steps"]]
    with_p: list[tuple[str, dict]] = []  # (question, tested step with a p-value)
    decided = forced = takeovers = 0
    for r in records:
        for s in r["steps"]:
            decision = s.get("decision")
            if decision not in _DECISIONS:
                raise ValueError(f"step decision must be one of {_DECISIONS}, got {decision!r}")
            forced += decision == "forced"
            if not is_tested_step(s):
                continue
            decided += 1
            takeovers += decision == "takeover"
            if s.get("p_value") is not None:
                with_p.append((r["question_id"], s))

    generated = sum(r["num_tokens"] for r in records)
    per_question = [max(r["latency"] for r in g) for g in groups.values()]
    reasons = Counter(str(r.get("finish_reason")) for r in records)
    return {
        "questions": n_q,
        "samples": n_s,
        "samples_per_question": {"min": min(sizes, default=None), "max": max(sizes, default=None)},
        "answered": _rate(sum(r["answer"] is not None for r in records), n_s),
        "mean_accuracy": _rate(sum(r["correct"] for r in records), n_s),
        "pass_at_n": _rate(pass_n, n_q),
        "maj_at_n": _rate(maj, n_q),
        "weighted_vote": _rate(weighted, n_q),
        "pass_at_k": pass_k,
        "steps": len(steps),
        "tested_steps": decided,
        "forced_steps": forced,
        "takeovers": takeovers,
        "takeover_rate": _rate(takeovers, decided),
        "rejection": rejection_section(with_p, confidence, alpha),
        "generated_tokens": generated,
        "draft_tokens": sum(r["draft_tokens"] for r in records),
        "target_tokens": sum(r["target_tokens"] for r in records),
        "wall_time": wall_time,
        "tokens_per_second": generated / wall_time if wall_time else None,
        "latency": {
            "per_sample": percentiles([r["latency"] for r in records]),
            "per_question": percentiles(per_question),
        },
        "finish_reasons": dict(reasons),
    }
