"""Rejection control by simulation (issue 19): the long versions of the tests' simulations, with the
figures docs/statistics.md and benchmarks/RESULTS.md quote.

    .venv/bin/python benchmarks/sim_rejection_control.py                  # every section, ~5 min on 2 cores
    .venv/bin/python benchmarks/sim_rejection_control.py --real runs/x/samples.jsonl   # + replay of a real run
    .venv/bin/python benchmarks/sim_rejection_control.py --only drift,coverage --json out.json

Sections: drift (fixed vs adaptive level on one drifting stratum, 20,000 tests), per-question (the
issue's N = 4 setting), strata (per-turn vs doubling buckets on a drifting synthetic run and, with
--real, on real score trajectories replayed in many arrival orders), attempts (the three-way rule
with one pool vs attempt strata), coverage (Clopper-Pearson vs question-clustered intervals),
warmup (what each warm-up rule's decisions know).
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np

from a1.calibration import Calibrator, aci_bound, cluster_bootstrap_interval
from a1.calibration.clustered import cluster_robust_bounds
from a1.policy import PolicyConfig
from a1.policy.calibration_source import make_calibrator
from a1.policy.simulate import DRIFTS, RunSpec, drift_stream, rate, rates_by, simulate, stream_rates, turn_errors
from a1.policy.step_test import StepTester

DOUBLING, PER_TURN = (1, 2, 4, 8), tuple(range(1, 32))


def drift(seeds: int) -> dict:
    out = {}
    for alpha in (0.1, 0.2):
        for kind in DRIFTS:
            runs = [stream_rates(drift_stream(kind, 20_000, seed), PolicyConfig(alpha=alpha, level="adaptive"))
                    for seed in range(seeds)]
            out[f"{kind} alpha={alpha}"] = {
                "fixed": [round(r["fixed_rate"], 4) for r in runs], "adaptive": [round(r["rate"], 4) for r in runs],
                "max |fixed - alpha|": round(max(abs(r["fixed_rate"] - alpha) for r in runs), 4),
                "max |adaptive - alpha|": round(max(abs(r["rate"] - alpha) for r in runs), 4),
                "bound": round(aci_bound(alpha, 0.01, 20_000), 5)}
    return out


def per_question() -> dict:
    spec = RunSpec(questions=600, samples=4, slope=0.15, question_sd=0.5, end_rate=0.08, seed=6)
    out = {}
    for edges, name in ((DOUBLING, "doubling"), (PER_TURN, "per-turn")):
        for level in ("fixed", "adaptive"):
            for warmup in ("coin", "pooled"):
                tests = simulate(spec, PolicyConfig(alpha=0.2, turn_edges=edges, level=level, warmup=warmup),
                                 "per-question")
                out[f"{name} {level} {warmup}"] = {"tests": len(tests), "rate": round(rate(tests), 4),
                                                   "warmup share": round(float(np.mean([t.in_warmup for t in tests])), 3)}
    return out


def replay(path: Path, edges: tuple, alpha: float, seeds: int, questions: int = 200, concurrency: int = 8) -> dict:
    """Real first-draft score trajectories (samples.jsonl), questions drawn with replacement and
    interleaved as the driver would (concurrency questions in flight, one step per live sample per
    round), through the online test path; per-turn rejection rates over `seeds` replays."""
    runs: dict = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        steps = [(s["turn"], s["score"]) for s in record["steps"]
                 if s["by"] == "draft" and s["score"] is not None and s["attempt"] == 0]
        runs.setdefault(record["question_id"], []).append(steps)
    ids = sorted(runs)
    counts: dict = {}
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        chosen = [ids[i] for i in rng.integers(0, len(ids), questions)]
        cfg = PolicyConfig(alpha=alpha, turn_edges=edges, seed=seed)
        tester = StepTester(cfg, make_calibrator("online", cfg, {})[0], True, list(range(questions)))
        waiting, live = list(range(questions)), []
        while waiting or live:
            while waiting and len({q for q, _, _ in live}) < concurrency:
                q = waiting.pop(0)
                live += [[q, steps, 0] for steps in runs[chosen[q]]]
            for state in list(live):
                q, steps, j = state
                if j >= len(steps):
                    live.remove(state)
                    continue
                turn, score = steps[j]
                entry = counts.setdefault(turn, [0, 0])
                entry[0] += tester.test(score, turn, q).decision != "accept"
                entry[1] += 1
                state[2] += 1
    weights = np.array([n for _, n in counts.values()], dtype=float)
    errors = np.array([abs(k / n - alpha) for k, n in counts.values()])
    return {"mean |err|": round(float((weights * errors).sum() / weights.sum()), 4), "max |err|": round(float(errors.max()), 4),
            "turns": {t: round(counts[t][0] / counts[t][1], 3) for t in sorted(counts)}}


def strata(real: list[Path], seeds: int) -> dict:
    spec = RunSpec(questions=2000, samples=4, slope=0.15, question_sd=0.3, end_rate=0.08, seed=5)
    out = {}
    for edges, name in ((DOUBLING, "doubling"), (PER_TURN, "per-turn")):
        e = turn_errors(simulate(spec, PolicyConfig(alpha=0.2, turn_edges=edges)), 0.2, min_tests=300)
        out[f"synthetic {name}"] = {"mean |err|": round(e["mean"], 4), "max |err|": round(e["max"], 4),
                                    "turns": {t: round(r, 3) for t, (_, r) in e["turns"].items()}}
        for path in real:
            for alpha in (0.1, 0.2):
                out[f"real {path.parent.name} {name} alpha={alpha}"] = replay(path, edges, alpha, seeds)
    return out


def attempts() -> dict:
    spec = RunSpec(questions=1500, samples=4, prefix_sd=1.0, slope=0.05, seed=3)
    out = {}
    for strata_on in (False, True):
        cfg = PolicyConfig(alpha=0.1, alpha_resample=0.3, max_resamples=2, turn_edges=(), attempt_strata=strata_on)
        tests = simulate(spec, cfg)
        out[f"attempt_strata={strata_on}"] = {
            "overall": round(rate(tests), 4),
            "rejection by attempt": {a: (n, round(r, 4)) for a, (n, r) in rates_by(tests, "attempt").items()},
            "takeover by attempt": {a: (n, round(r, 4)) for a, (n, r) in rates_by(tests, "attempt", True).items()}}
    return out


def coverage(runs: int) -> dict:
    from scipy.special import betaincinv

    out = {}
    for clusters in (10, 30, 100):
        for rho in (0.0, 0.12):
            rng = np.random.default_rng(clusters)
            n = rng.integers(20, 61, (runs, clusters))
            p = 0.2 if rho == 0 else rng.beta(0.2 * (1 / rho - 1), 0.8 * (1 / rho - 1), (runs, clusters))
            y = rng.binomial(n, p)
            lo, hi = cluster_robust_bounds(y, n)
            k, total = y.sum(1), n.sum(1)
            cp_lo = np.where(k > 0, betaincinv(k, total - k + 1, 0.025), 0.0)
            cp_hi = np.where(k < total, betaincinv(k + 1, total - k, 0.975), 1.0)
            boot = [cluster_bootstrap_interval(y[r], n[r], seed=r) for r in range(runs)]
            out[f"G={clusters} rho={rho}"] = {
                "spread / binomial": round(float((k / total).std() / math.sqrt(0.16 / total.mean())), 2),
                "clopper-pearson": round(float(((cp_lo <= 0.2) & (0.2 <= cp_hi)).mean()), 3),
                "cluster-robust": round(float(((lo <= 0.2) & (0.2 <= hi)).mean()), 3),
                "cluster bootstrap": round(float(np.mean([b[0] <= 0.2 <= b[1] for b in boot])), 3)}
    return out


def warmup() -> dict:
    spec = RunSpec(questions=600, samples=4, question_sd=0.5, slope=0.1, bad_rate=0.15, seed=1)
    prior_run = simulate(RunSpec(questions=600, samples=4, question_sd=0.5, slope=0.1, bad_rate=0.15, seed=99),
                         PolicyConfig(alpha=1e-9, turn_edges=DOUBLING, warmup="coin"))
    prior = Calibrator(DOUBLING)
    prior.fit([t.score for t in prior_run], [t.turn for t in prior_run])
    out = {}
    for rule in ("pooled", "coin", "accept", "prior"):
        tests = simulate(spec, PolicyConfig(alpha=0.2, turn_edges=DOUBLING, warmup=rule), "per-question",
                         prior=prior if rule == "prior" else None)
        warm = [t for t in tests if t.in_warmup]
        out[rule] = {"warmup share": round(len(warm) / len(tests), 3), "rate": round(rate(tests), 4),
                     "bad rejected (warm-up)": round(rate([t for t in warm if t.bad]), 3),
                     "good rejected (warm-up)": round(rate([t for t in warm if not t.bad]), 3),
                     "bad rejected (all)": round(rate([t for t in tests if t.bad]), 3)}
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--real", action="append", default=[], type=Path, help="samples.jsonl of a real run to replay")
    parser.add_argument("--only", default="drift,per-question,strata,attempts,coverage,warmup")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    sections = {"drift": lambda: drift(args.seeds), "per-question": per_question,
                "strata": lambda: strata(args.real, 4 * args.seeds), "attempts": attempts,
                "coverage": lambda: coverage(1000), "warmup": warmup}
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    results = {"machine": cpu, "python": platform.python_version()}
    for name in args.only.split(","):
        start = time.perf_counter()
        results[name] = sections[name]()
        print(f"== {name} ({time.perf_counter() - start:.0f} s)")
        for key, value in results[name].items():
            print(f"  {key}: {value}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
