"""The calibration run behind `a1 calibrate`: draft steps on the calibration split with the run's
exact sampling and step settings, and save every step's score as a calibration file.

    settings = EvalSettings.build(dataset="gsm8k", num_samples=4, step_tokens=48)
    run_calibration(settings, "cal.json")
    run_eval(settings.replace(calibration="cal.json"))   # the offline guarantee

The policy runs in async mode with a vanishing α (nothing is rejected, so every step is a draft
step whose score joins the calibrator) and `calibration_update=True`. The file carries
a1.policy.calibration_metadata (models and their weights' fingerprints, sampling parameters, step
rule, token budgets, score kind, strata, prompt format and dataset), and
`a1 eval --calibration FILE` refuses a file whose metadata differs from its own settings: scores
drawn under other settings are not exchangeable with the run's.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Optional, Union

from a1.eval.metrics import is_tested_step
from a1.eval.settings import CALIBRATION_KINDS, EvalSettings, build_llm, load_problems
from a1.eval.startup import check_out_file, check_run

CALIBRATION_ALPHA = 1e-9  # below any p-value 1/(n+1): every drafted step is accepted


def calibration_split(settings: EvalSettings) -> list:
    """The questions to calibrate on: the bundled dataset's calibration split (disjoint from the
    test split `a1 eval` runs on), or all of a user file given with data=."""
    problems = load_problems(settings, split="calibration")
    if not problems:
        raise ValueError(f"dataset {settings.dataset_name!r} has no calibration questions")
    return problems


def run_calibration(
    settings: EvalSettings,
    path: Union[str, Path],
    llm=None,
    *,
    progress: Optional[bool] = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Draft settings.policy.num_samples samples of every calibration question and save the step scores to
    `path`; returns {"path", "questions", "samples", "scores": {stratum: count}, "wall_time"}.
    llm: an already built a1.LLM (tests); settings.method, alpha and calibration are not used: the
    drafting runs in async mode at a vanishing alpha."""
    from a1.calibration import Calibrator
    from a1.policy import calibration_metadata, generate

    path = Path(path)
    check_out_file(path)  # before minutes of drafting, not after them
    problems = calibration_split(settings)
    # every drafted step is accepted, so every step's score joins the calibrator
    cfg = settings.policy.replace(mode="async", alpha=CALIBRATION_ALPHA, alpha_resample=None)
    llm = build_llm(settings) if llm is None else llm
    calibrator = Calibrator(cfg.turn_edges, seed=cfg.seed, by_attempt=cfg.attempt_strata)
    run = check_run(settings, llm, problems, policy=cfg, calibration=calibrator)
    start = time.perf_counter()
    results = generate(
        run.prompts, target=llm, config=cfg, calibration=calibrator, calibration_update=True, chat=True,
        progress=settings.progress if progress is None else progress, question_ids=run.keys,
        prompt_source=settings.prompt_source(),
    )
    wall = time.perf_counter() - start
    calibrator.save(path, calibration_metadata(llm, cfg, chat=True, prompt_source=settings.prompt_source()))
    scores = {str(key): len(calibrator.scores(key)) for key in calibrator.strata()}
    samples = sum(len(r.samples) for r in results)
    log(f"calibration: {sum(scores.values())} step scores from {len(problems)} questions x {cfg.num_samples} "
        f"samples of {settings.dataset_name} ({wall:.1f} s); per stratum (turn bucket): "
        + ", ".join(f"{k}: {v}" for k, v in scores.items()))
    log(f"wrote {path}; use it with `a1 eval --calibration {path}` and the same sampling and step settings")
    return {"path": str(path), "questions": len(problems), "samples": samples, "scores": scores, "wall_time": wall}


def seeded_calibrator(settings: EvalSettings, records: list[dict]):
    """A resumed online run's calibrator, holding the scores its recorded samples tested (as
    a1.policy's online calibrator would), so the rest of the run is not back in warm-up."""
    from a1.calibration import Calibrator

    cfg = settings.policy
    if not cfg.tested or cfg.mode == "sync":
        return settings.calibration
    per_question = settings.calibration == "per-question"
    calibrator = Calibrator(cfg.turn_edges, per_question=per_question, smoothed=cfg.rule == "conformal",
                            seed=cfg.seed, rule=cfg.rule, by_attempt=cfg.attempt_strata)
    for record in records:
        for step in record["steps"]:
            if is_tested_step(step):
                question = record["question_id"] if per_question else None
                calibrator.update(step["score"], turn=step["turn"], question=question, attempt=step["attempt"])
    return calibrator


def seeded_levels(settings: EvalSettings, records: list[dict]):
    """A resumed adaptive run's levels: each stratum's level is alpha + gamma (alpha n - k) after n
    tests with k rejections (a1.calibration.adaptive), whatever their order, so replaying the
    recorded decisions restores exactly the levels the run had reached. None for a fixed level."""
    from a1.calibration import AdaptiveLevels, Calibrator
    from a1.calibration.strata import level_key

    cfg = settings.policy
    if cfg.level != "adaptive" or not cfg.tested or cfg.mode == "sync":
        return None
    if settings.calibration in CALIBRATION_KINDS:  # only the strata's keys are needed
        keys = Calibrator(cfg.turn_edges, per_question=settings.calibration == "per-question",
                          by_attempt=cfg.attempt_strata)
    else:
        keys = Calibrator.load(settings.calibration)
    levels = AdaptiveLevels(cfg.alpha, cfg.alpha_resample, cfg.level_gamma)
    for record in records:
        for step in record["steps"]:
            if is_tested_step(step) and step.get("p_value") is not None:
                question = record["question_id"] if keys.settings.per_question else None
                key = keys.stratum(turn=step["turn"], question=question, attempt=step["attempt"])
                levels.record(level_key(key, keys.settings.per_question), step["decision"])
    return levels
