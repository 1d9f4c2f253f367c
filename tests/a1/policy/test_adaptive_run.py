"""calibration="adaptive" (and level="adaptive" over any source), the warm-up rules and the new
stats, end to end on the tiny random pair: every step records the working levels it was decided
at, the records agree with the stats, and the run's rates come with question-clustered intervals."""
from __future__ import annotations

import pytest

import a1
import a1_ext
from a1.calibration import Calibrator
from a1.policy import PolicyConfig, calibration_metadata
from policy_checks import check_result

PROMPTS = ["What is 2+3?", "Name a prime.", "Count to 3."]
BUDGET = dict(num_samples=3, max_tokens=48, step_tokens=4, max_turns=10, alpha=0.3, progress=False)


@pytest.mark.parametrize("calibration, kwargs", [("adaptive", {}), ("per-question", dict(level="adaptive")),
                                                 ("online", dict(level="adaptive", alpha_resample=0.5))])
def test_adaptive_runs_record_their_working_levels(llm, calibration, kwargs):
    results = a1_ext.generate(PROMPTS, target=llm, calibration=calibration, level_gamma=0.2, **(BUDGET | kwargs))
    levels = set()
    for result in results:
        check_result(llm, result, "async", 0.3, kwargs.get("alpha_resample"), adaptive=True)
        levels |= {s.level for s in result.samples for s in s.steps if s.tested}
    assert len(levels) > 2  # the level moved (gamma 0.2: visibly, in a short run)
    run = results[0].stats["run_rejection"]
    assert run is results[1].stats["run_rejection"] and run["clusters"] == len(PROMPTS)
    assert run["tested"] == sum(r.stats["tested"] for r in results)
    assert run["ci_cluster"] is not None and run["ci_bootstrap"] is not None
    assert all(e["level_mean"] is not None for e in run["strata"].values())


def test_fixed_levels_are_recorded_too(llm):
    results = a1_ext.generate(PROMPTS[:1], target=llm, alpha_resample=0.6, **BUDGET)
    check_result(llm, results[0], "async", 0.3, 0.6)
    attempts = results[0].stats["attempts"]
    assert 0 in attempts and sum(a["tested"] for a in attempts.values()) == results[0].stats["tested"]
    strata = results[0].stats["strata"]
    assert all(e["level_mean"] == pytest.approx(0.3) for e in strata.values())
    assert all("ci_cluster" in e for e in strata.values())  # within one question: samples are the clusters


def test_accept_warmup_rejects_nothing_in_warmup(llm):
    results = a1_ext.generate(PROMPTS, target=llm, warmup="accept", warmup_scores=30, turn_edges=(), **BUDGET)
    steps = [s for r in results for sample in r.samples for s in sample.steps if s.tested]
    assert sum(s.in_warmup for s in steps) == 30
    assert all(s.decision == "accept" for s in steps if s.in_warmup)
    for result in results:
        check_result(llm, result, "async", 0.3, accept_warmup=True)


def test_a_prior_file_decides_warmup_and_is_checked_like_a_calibration_file(tiny_target, tmp_path):
    llm = a1.LLM(tiny_target, kv_cache_gb=0.02)
    cfg = PolicyConfig(**{k: v for k, v in BUDGET.items() if k != "progress"}, warmup="prior")
    prior = Calibrator(cfg.turn_edges, by_attempt=True)
    prior.fit([1e6] * 20, [0] * 20)  # every real score is far below: nothing is rejected in warm-up
    path = tmp_path / "prior.json"
    prior.save(path, calibration_metadata(llm, cfg, chat=True))
    results = a1_ext.generate(PROMPTS, target=llm, config=cfg, warmup_prior=str(path), chat=True)
    warm = [s for r in results for sample in r.samples for s in sample.steps if s.tested and s.in_warmup]
    assert warm and all(s.decision == "accept" and s.p_value == 1.0 for s in warm)
    with pytest.raises(ValueError, match="warmup_prior: .*field 'max_tokens'"):
        a1_ext.generate(PROMPTS, target=llm, config=cfg.replace(max_tokens=40), warmup_prior=str(path))
    with pytest.raises(ValueError, match="warmup_prior"):
        a1_ext.generate(PROMPTS, target=llm, config=cfg)  # warmup='prior' without a file
    with pytest.raises(ValueError, match="warmup_prior"):
        a1_ext.generate(PROMPTS, target=llm, warmup_prior=str(path), **BUDGET)  # a file without warmup='prior'
