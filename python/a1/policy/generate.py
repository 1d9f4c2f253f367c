"""generate(): N samples per prompt under the A1 policy, voted; the function behind a1_ext.generate."""
from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Sequence, Union

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


def calibration_metadata(llm, cfg: PolicyConfig, chat: bool = True, prompt_source: Optional[Mapping] = None) -> dict:
    """What a calibration file must agree on with the run that uses it, since each changes the
    distribution of step scores: the models (names and a fingerprint of their weights), the
    sampling parameters, the step rule, the token budgets, the score kind, the strata, the prompt
    format (chat template) and, when the caller states it, where the prompts come from
    (prompt_source, e.g. {"dataset": "gsm8k", "prompt_format": ...})."""
    metadata = {
        "target": llm.pair.target_name, "draft": llm.pair.draft_name,
        "target_weights": weights_fingerprint(llm, "target"), "draft_weights": weights_fingerprint(llm, "draft"),
        "temperature": cfg.temperature, "top_p": cfg.top_p, "top_k": cfg.top_k,
        "step_tokens": cfg.step_tokens, "step_stop": list(cfg.step_stop), "min_tokens": cfg.min_tokens,
        "max_tokens": cfg.max_tokens, "score": cfg.score, "turn_edges": list(cfg.turn_edges),
        "chat": bool(chat), "chat_template_sha256": chat_template_sha256(llm) if chat else None,
    }
    metadata.update(dict(prompt_source or {}))
    return metadata


def weights_fingerprint(llm, role: str) -> Optional[str]:
    """The fingerprint of a role's loaded weights (a1.models.fingerprint); None for a remote
    server's model, whose weights are not here (its name stands for it)."""
    loaded = getattr(llm, "loaded" if role == "target" else "draft_loaded", None)
    if loaded is None or not hasattr(loaded, "model"):
        return None
    from a1.models.fingerprint import weights_fingerprint as fingerprint

    return fingerprint(loaded.model)


def chat_template_sha256(llm) -> Optional[str]:
    template = getattr(llm.pair.target.tokenizer, "chat_template", None)
    return hashlib.sha256(template.encode()).hexdigest() if isinstance(template, str) else None


def make_calibrator(calibration, cfg: PolicyConfig, metadata: dict) -> tuple[Optional[Calibrator], bool]:
    """(calibrator, update it online?) for calibration = "online" | "per-question" | a file | a Calibrator."""
    if cfg.mode == "sync" or not cfg.tested:
        return None, False
    rule = cfg.rule
    smoothed = rule == "conformal"  # online smoothed p-values are exactly uniform
    if isinstance(calibration, Calibrator):
        if calibration.settings.rule != rule:  # its p-values would answer another rule's question
            raise ValueError(f"calibration: the Calibrator computes {calibration.settings.rule!r} p-values but mode "
                             f"{cfg.mode!r} tests with the {rule!r} rule; build it with rule={rule!r}")
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


def check_prompts(prompts) -> list:
    """The prompts as a list, each a non-empty string or a non-empty list of token ids (TypeError
    naming the first that is not; a flat list of ints is N prompts, not one)."""
    if isinstance(prompts, str):
        return [prompts]
    if isinstance(prompts, (bytes, dict)) or not isinstance(prompts, Sequence):
        raise TypeError(f"prompts must be a string or a list of prompts, got {type(prompts).__name__}")
    prompts = list(prompts)
    for i, prompt in enumerate(prompts):
        is_ids = isinstance(prompt, (list, tuple)) and len(prompt) > 0 and all(
            isinstance(t, int) and not isinstance(t, bool) for t in prompt)
        if not (isinstance(prompt, str) and prompt) and not is_ids:
            hint = " (one prompt of token ids is a list inside the list: [[...]])" if isinstance(prompt, int) else ""
            raise TypeError(f"prompts[{i}] must be a non-empty string or list of token ids, got {prompt!r}{hint}")
    return prompts


def check_sample_indices(sample_indices, num_prompts: int, num_samples: int) -> list[list[int]]:
    """Per prompt, the distinct sample indices in [0, num_samples) to run (None: all of them); a
    repeated index would run (and record) one sample twice."""
    if sample_indices is None:
        return [list(range(num_samples)) for _ in range(num_prompts)]
    if len(sample_indices) != num_prompts:
        raise ValueError(f"sample_indices has {len(sample_indices)} entries for {num_prompts} prompts")
    checked = []
    for q, indices in enumerate(sample_indices):
        indices = list(indices)
        for i in indices:
            if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < num_samples:
                raise ValueError(f"sample_indices[{q}] must hold ints in [0, {num_samples}), got {i!r}")
        if len(set(indices)) != len(indices):
            repeated = sorted({i for i in indices if indices.count(i) > 1})
            raise ValueError(f"sample_indices[{q}] repeats sample(s) {repeated}: each sample runs once")
        checked.append(indices)
    return checked


@dataclass
class PreparedRun:
    """A run every refusal has passed: the settings, the models, the encoded prompts, the question
    keys and samples to run, and the calibrator (None: sync and one-model modes)."""

    cfg: PolicyConfig
    llm: object
    prompts: list
    encoded: list[list[int]]
    keys: list
    sample_indices: list[list[int]]
    calibrator: Optional[Calibrator]
    update_calibration: bool
    ctx: RunContext


PROMPT_MARGIN = 32  # tokens kept free below max_model_len beside the forced answer's


def prepare(
    prompts: Union[str, Sequence[Union[str, list[int]]]],
    *,
    target,
    draft="self",
    config: Optional[PolicyConfig] = None,
    calibration="online",
    chat: bool = True,
    question_ids: Optional[Sequence[object]] = None,
    sample_indices: Optional[Sequence[Sequence[int]]] = None,
    on_step: Optional[Callable] = None,
    kv_cache_gb: Optional[float] = None,
    calibration_update: Optional[bool] = None,
    prompt_source: Optional[Mapping] = None,
    describe: Optional[Callable[[int], str]] = None,
    **settings,
) -> PreparedRun:
    """Every check generate() makes, in order, without running anything: the settings, the
    prompts, the question ids and sample indices (before any model loads), then the models, each
    prompt's room below max_model_len, the calibration (a file's metadata against this run) and
    the policy's own refusals (RunContext). describe(i) names prompt i in errors (default
    "prompts[i] (question <id>)")."""
    cfg = config.replace(**settings) if config is not None else PolicyConfig.of(settings)
    prompts = check_prompts(prompts)
    keys = check_question_ids(question_ids, len(prompts))
    sample_indices = check_sample_indices(sample_indices, len(prompts), cfg.num_samples)
    llm = build_llm(target, draft, kv_cache_gb=kv_cache_gb)
    encoded = [ids for _, ids in llm.encode(prompts, chat=chat)]
    limit, reserve = llm.pair.max_model_len, cfg.answer_tokens + PROMPT_MARGIN
    for i, ids in enumerate(encoded):
        if len(ids) + reserve >= limit:
            name = describe(i) if describe is not None else f"prompts[{i}] (question {keys[i]!r})"
            raise ValueError(f"{name} is too long: its prompt has {len(ids)} tokens, and the target's max_model_len "
                             f"{limit} must hold it plus {reserve} for the answer; shorten it or leave it out")
    calibrator, update = make_calibrator(calibration, cfg, calibration_metadata(llm, cfg, chat, prompt_source))
    if calibration_update is not None and calibrator is not None:
        update = bool(calibration_update)
    ctx = RunContext(llm.pair, cfg, calibrator, update, keys, on_step)
    return PreparedRun(cfg, llm, prompts, encoded, keys, sample_indices, calibrator, update, ctx)


def check_question_ids(question_ids: Optional[Sequence[object]], num_prompts: int) -> list:
    """The question keys (default: the prompt indices): distinct ints or strings, one per prompt
    (they key the samples' seeds and per-question strata: two prompts of one id would share them)."""
    if question_ids is None:
        return list(range(num_prompts))
    keys = list(question_ids)
    if len(keys) != num_prompts:
        raise ValueError(f"question_ids has {len(keys)} entries for {num_prompts} prompts")
    first: dict = {}
    for i, key in enumerate(keys):
        if isinstance(key, bool) or not isinstance(key, (int, str)):
            raise TypeError(f"question_ids[{i}] must be an int or a str, got {key!r}")
        if key in first:
            raise ValueError(f"question_ids[{i}] repeats {key!r} (question_ids[{first[key]}]): each question's id "
                             "must be its own")
        first[key] = i
    return keys


def generate(
    prompts: Union[str, Sequence[Union[str, list[int]]]],
    *,
    target,
    draft="self",
    config: Optional[PolicyConfig] = None,
    calibration="online",
    chat: bool = True,
    progress: bool = True,
    question_ids: Optional[Sequence[object]] = None,
    sample_indices: Optional[Sequence[Sequence[int]]] = None,
    on_sample: Optional[Callable[[int, SampleResult], None]] = None,
    on_step: Optional[Callable] = None,
    kv_cache_gb: Optional[float] = None,
    calibration_update: Optional[bool] = None,
    prompt_source: Optional[Mapping] = None,
    **settings,
) -> list[A1Result]:
    """Run A1 on every prompt with num_samples samples each; one A1Result per prompt, in order.

    The run's settings are `config` (a PolicyConfig; default: its defaults) with any of its fields
    given as keywords on top (`alpha=0.2, num_samples=8, on_reject="append", ...`; see
    PolicyConfig's fields: an unknown name is refused naming the known ones).

    calibration: "online", "per-question", a file of `a1 calibrate` (its metadata must match this
    run's: calibration_metadata) or a Calibrator. question_ids (default: the prompt's index) key
    per-question calibration and the samples' seeds, so a sample's tokens do not depend on which
    other samples run with it; sample_indices restricts each prompt to some of its samples (a
    resumed evaluation runs only the unfinished ones). on_sample(prompt_index, SampleResult) is
    called as each sample finishes; on_step(sample_run, step) as each step joins a sample.
    calibration_update: whether tested scores join the calibrator (default: yes for
    "online"/"per-question", no for a file or a Calibrator, whose p-values then come from the fixed
    calibration set: the offline guarantee). prompt_source: what the prompts are (e.g.
    {"dataset": "gsm8k"}), recorded in and checked against calibration files. Any exit (an
    error, a callback's exception, Ctrl-C) leaves the engines without this run's sequences.
    """
    run = prepare(prompts, target=target, draft=draft, config=config, calibration=calibration, chat=chat,
                  question_ids=question_ids, sample_indices=sample_indices, on_step=on_step, kv_cache_gb=kv_cache_gb,
                  calibration_update=calibration_update, prompt_source=prompt_source, **settings)
    start = time.perf_counter()
    driver = Driver(run.ctx, on_sample, progress)
    try:
        runs: list[QuestionRun] = driver.run(run.encoded, run.sample_indices)
    except Exception as err:
        if not hasattr(err, "name_samples"):
            raise
        # a remote engine's requests failed (a1.remote): say which samples were waiting on them
        raise err.name_samples(driver.waiting_samples()) from err
    results = []
    for prompt, question in zip(run.prompts, runs):
        samples = [question.results[i] for i in sorted(question.results)]
        results.append(A1Result(prompt, vote(samples), samples, question_stats(samples, question, run.cfg)))
    for result in results:
        result.stats["call_wall_time"] = time.perf_counter() - start
        result.stats["warm_start_scores"] = run.ctx.warm_scores
        result.stats["speculative"] = run.ctx.speculative.metrics.as_dict() if run.ctx.speculative is not None else None
    return results
