"""generate(): N samples per prompt under the A1 policy, voted; the function behind a1_ext.generate."""
from __future__ import annotations

import os
import time
from typing import Callable, Optional, Sequence, Union

from a1.calibration import Calibrator

from .config import PolicyConfig
from .context import RunContext
from .driver import Driver, QuestionRun
from .results import A1Result, SampleResult
from .stats import question_stats, vote


def build_llm(target, draft="self", **llm_kwargs):
    """An a1.LLM for (target, draft); an already built one (anything with .pair and .encode: an
    a1.LLM, or a remote pair) is used as it is (a pair brings its own draft), so repeated calls
    load nothing."""
    from a1.llm import LLM

    if hasattr(target, "pair") and hasattr(target, "encode"):
        if draft not in (None, "self") and draft is not getattr(target, "draft_loaded", None) and str(draft) != target.pair.draft_name:
            raise ValueError(
                "draft: target is an already built a1.LLM, which brings its own draft; build "
                "a1.LLM(target, draft=...) with the draft you want instead"
            )
        return target
    return LLM(target, draft=draft, **llm_kwargs)


def calibration_metadata(llm, cfg: PolicyConfig) -> dict:
    """What a calibration file must agree on with the run that uses it: the models, the sampling
    parameters, the step settings and the score kind."""
    return {
        "target": llm.pair.target_name, "draft": llm.pair.draft_name, "temperature": cfg.temperature,
        "top_p": cfg.top_p, "top_k": cfg.top_k, "step_tokens": cfg.step_tokens, "step_stop": list(cfg.step_stop),
        "score": cfg.score, "turn_edges": list(cfg.turn_edges),
    }


def make_calibrator(calibration, cfg: PolicyConfig, metadata: dict) -> tuple[Optional[Calibrator], bool]:
    """(calibrator, update it online?) for calibration = "online" | "per-question" | a file | a Calibrator."""
    if cfg.mode == "sync" or not cfg.tested:
        return None, False
    rule = cfg.rule
    smoothed = rule == "conformal"  # online smoothed p-values are exactly uniform
    if isinstance(calibration, Calibrator):
        return calibration, False
    if calibration in ("online", "per-question", "per_question"):
        per_question = calibration != "online"
        return Calibrator(cfg.turn_edges, per_question=per_question, smoothed=smoothed, seed=cfg.seed, rule=rule), True
    if isinstance(calibration, (str, os.PathLike)):
        if not os.path.isfile(calibration):
            raise ValueError(
                f"calibration must be 'online', 'per-question', a calibration file or a Calibrator; "
                f"{str(calibration)!r} is none of these (no such file)"
            )
        loaded = Calibrator.load(calibration, expect=metadata)
        if loaded.settings.rule != rule:  # the reference rule on the same scores
            settings = loaded.settings
            copy = Calibrator(settings.turn_edges, per_question=settings.per_question, seed=cfg.seed, rule=rule)
            for key in loaded.strata():
                question, bucket = key if settings.per_question else (None, key)
                turn = settings.turn_edges[bucket - 1] if bucket > 0 else 0  # a turn of that bucket
                for value in loaded.scores(key):
                    copy.update(value, turn=turn, question=question)
            loaded = copy
        return loaded, False
    raise ValueError(f"calibration must be 'online', 'per-question', a file path or a Calibrator, got {calibration!r}")


def generate(
    prompts: Union[str, Sequence[Union[str, list[int]]]],
    *,
    target,
    draft="self",
    alpha: float = 0.1,
    alpha_resample: Optional[float] = None,
    max_resamples: int = 2,
    num_samples: int = 16,
    mode: str = "async",
    calibration="online",
    turn_edges: Sequence[int] = (1, 2, 4, 8),
    step_tokens: int = 64,
    max_turns: int = 32,
    max_tokens: int = 1024,
    min_tokens: int = 0,
    temperature: float = 0.7,
    top_p: float = 0.95,
    seed: int = 0,
    score: str = "ppl",
    on_reject: str = "rewrite",
    speculative_tokens: int = 0,
    chat: bool = True,
    progress: bool = True,
    concurrency: int = 8,
    target_step_tokens: int = 64,
    question_ids: Optional[Sequence[object]] = None,
    sample_indices: Optional[Sequence[Sequence[int]]] = None,
    on_sample: Optional[Callable[[int, SampleResult], None]] = None,
    on_step: Optional[Callable] = None,
    kv_cache_gb: Optional[float] = None,
    calibration_update: Optional[bool] = None,
    warm_start: int = 0,
) -> list[A1Result]:
    """Run A1 on every prompt with num_samples samples each; one A1Result per prompt, in order.

    question_ids (default: the prompt's index) key per-question calibration and the samples'
    seeds, so a sample's tokens do not depend on which other samples run with it; sample_indices
    restricts each prompt to some of its samples (a resumed evaluation runs only the unfinished
    ones). on_sample(prompt_index, SampleResult) is called as each sample finishes;
    on_step(sample_run, step) as each step joins a sample. calibration_update: whether tested
    scores join the calibrator (default: yes for "online"/"per-question", no for a file or a
    Calibrator, whose p-values then come from the fixed calibration set: the offline guarantee).
    warm_start: first steps drafted and scored per question to seed an updated calibrator before
    the question's samples start (the paper's memory bank; counted in stats["warm_start_scores"],
    apart from the tests).
    """
    cfg = PolicyConfig(
        alpha=alpha, alpha_resample=alpha_resample, max_resamples=max_resamples, num_samples=num_samples, mode=mode,
        turn_edges=tuple(turn_edges), step_tokens=step_tokens, max_turns=max_turns, max_tokens=max_tokens,
        min_tokens=min_tokens, temperature=temperature, top_p=top_p, seed=seed, score=score, on_reject=on_reject,
        speculative_tokens=speculative_tokens, concurrency=concurrency, target_step_tokens=target_step_tokens,
        warm_start=warm_start,
    )
    llm = build_llm(target, draft, kv_cache_gb=kv_cache_gb)
    if isinstance(prompts, str):
        prompts = [prompts]
    encoded = [ids for _, ids in llm.encode(prompts, chat=chat)]
    keys = list(range(len(encoded))) if question_ids is None else list(question_ids)
    if len(keys) != len(encoded):
        raise ValueError(f"question_ids has {len(keys)} entries for {len(encoded)} prompts")
    if sample_indices is None:
        sample_indices = [list(range(num_samples))] * len(encoded)
    elif len(sample_indices) != len(encoded) or any(not 0 <= i < num_samples for s in sample_indices for i in s):
        raise ValueError(f"sample_indices must hold, per prompt, indices in [0, {num_samples})")
    for i, ids in enumerate(encoded):
        if len(ids) + cfg.answer_tokens + 32 >= llm.pair.max_model_len:
            raise ValueError(f"prompts[{i}] has {len(ids)} tokens: no room left below max_model_len {llm.pair.max_model_len}")
    calibrator, update = make_calibrator(calibration, cfg, calibration_metadata(llm, cfg))
    if calibration_update is not None and calibrator is not None:
        update = bool(calibration_update)
    ctx = RunContext(llm.pair, cfg, calibrator, update, keys, on_step)
    start = time.perf_counter()
    driver = Driver(ctx, on_sample, progress)
    try:
        runs: list[QuestionRun] = driver.run(encoded, sample_indices)
    except Exception as err:
        if not hasattr(err, "name_samples"):
            raise
        # a remote engine's requests failed (a1.remote): say which samples were waiting on them
        raise err.name_samples(driver.waiting_samples()) from err
    results = []
    for prompt, run in zip(prompts, runs):
        samples = [run.results[i] for i in sorted(run.results)]
        results.append(A1Result(prompt, vote(samples), samples, question_stats(samples, run, cfg)))
    for result in results:
        result.stats["call_wall_time"] = time.perf_counter() - start
        result.stats["warm_start_scores"] = ctx.warm_scores
        result.stats["speculative"] = ctx.speculative.metrics.as_dict() if ctx.speculative is not None else None
    return results
