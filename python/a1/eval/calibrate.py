"""The calibration run behind `a1 calibrate`: draft steps on the calibration split with the run's
exact sampling and step settings, and save every step's score as a calibration file.

    settings = EvalSettings(dataset="gsm8k", samples=4, step_tokens=48)
    run_calibration(settings, "cal.json")
    run_eval(dataclasses.replace(settings, calibration="cal.json"))   # the offline guarantee

The policy runs in async mode with a vanishing α (nothing is rejected, so every step is a draft
step whose score joins the calibrator) and `calibration_update=True`. The file carries
a1.policy.calibration_metadata (models, temperature, top_p, step settings, score kind), and
`a1 eval --calibration FILE` refuses a file whose metadata differs from its own settings: scores
drawn under other settings are not exchangeable with the run's.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Optional, Union

from a1.eval.metrics import is_tested_step
from a1.eval.runner import EvalSettings, build_llm, load_problems

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
    """Draft settings.samples samples of every calibration question and save the step scores to
    `path`; returns {"path", "questions", "samples", "scores": {stratum: count}, "wall_time"}.
    llm: an already built a1.LLM (tests); settings.method, alpha and calibration are not used."""
    from a1.calibration import Calibrator
    from a1.data import format_prompt
    from a1.policy import PolicyConfig, calibration_metadata, generate

    path = Path(path)
    if path.is_dir():
        raise ValueError(f"out: {path} is a directory; give the calibration file's path")
    if not path.parent.exists():
        raise FileNotFoundError(f"out: the directory {path.parent} does not exist")
    problems = calibration_split(settings)
    kwargs = {**settings.policy_kwargs(), "mode": "async", "alpha": CALIBRATION_ALPHA, "alpha_resample": None}
    cfg = PolicyConfig(**kwargs)
    llm = build_llm(settings) if llm is None else llm
    calibrator = Calibrator(cfg.turn_edges, seed=cfg.seed)
    start = time.perf_counter()
    results = generate(
        [format_prompt(p) for p in problems], target=llm, calibration=calibrator, calibration_update=True,
        chat=True, progress=settings.progress if progress is None else progress,
        question_ids=[p.id for p in problems], **kwargs,
    )
    wall = time.perf_counter() - start
    calibrator.save(path, calibration_metadata(llm, cfg))
    scores = {str(key): len(calibrator.scores(key)) for key in calibrator.strata()}
    samples = sum(len(r.samples) for r in results)
    log(f"calibration: {sum(scores.values())} step scores from {len(problems)} questions x {settings.samples} "
        f"samples of {settings.dataset_name} ({wall:.1f} s); per stratum (turn bucket): "
        + ", ".join(f"{k}: {v}" for k, v in scores.items()))
    log(f"wrote {path}; use it with `a1 eval --calibration {path}` and the same sampling and step settings")
    return {"path": str(path), "questions": len(problems), "samples": samples, "scores": scores, "wall_time": wall}


def seeded_calibrator(settings: EvalSettings, records: list[dict]):
    """A resumed online run's calibrator, holding the scores its recorded samples tested (as
    a1.policy's online calibrator would), so the rest of the run is not back in warm-up."""
    from a1.calibration import Calibrator

    cfg = settings.policy_config()
    if not cfg.tested or cfg.mode == "sync":
        return settings.calibration
    per_question = settings.calibration == "per-question"
    calibrator = Calibrator(cfg.turn_edges, per_question=per_question, smoothed=cfg.rule == "conformal",
                            seed=cfg.seed, rule=cfg.rule)
    for record in records:
        for step in record["steps"]:
            if is_tested_step(step):
                question = record["question_id"] if per_question else None
                calibrator.update(step["score"], turn=step["turn"], question=question)
    return calibrator
