"""generate(): N samples per prompt under the A1 policy, voted; the function behind a1_ext.generate."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Sequence, Union

from a1.calibration import AdaptiveLevels, Calibrator
from a1.engine.interface import PolicyBackend

from .calibration_source import calibration_metadata, make_calibrator, make_prior  # noqa: F401 (re-exported)
from .config import PolicyConfig
from .context import RunContext
from .driver import Driver, QuestionRun
from .results import A1Result, SampleResult
from .stats import question_stats, run_rejection, vote


def build_llm(target, draft="self", **llm_kwargs) -> PolicyBackend:
    """An a1.LLM for (target, draft); an already built backend (a1.engine.interface.PolicyBackend:
    an a1.LLM or an a1.remote.RemoteLLM) is used as it is (it brings its own draft), so repeated
    calls load nothing."""
    from a1.llm import LLM

    if isinstance(target, PolicyBackend):
        if draft not in (None, "self") and draft is not getattr(target, "draft_loaded", None) and str(draft) != target.pair.draft_name:
            raise ValueError(
                "draft: target is an already built a1.LLM, which brings its own draft; build "
                "a1.LLM(target, draft=...) with the draft you want instead"
            )
        return target
    return LLM(target, draft=draft, **llm_kwargs)


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
    levels: Optional[AdaptiveLevels] = None,
    warmup_prior=None,
    **settings,
) -> PreparedRun:
    """Every check generate() makes, in order, without running anything: the settings, the
    prompts, the question ids and sample indices (before any model loads), then the models, each
    prompt's room below max_model_len, the calibration (a file's metadata against this run) and
    the policy's own refusals (RunContext). describe(i) names prompt i in errors (default
    "prompts[i] (question <id>)")."""
    cfg = config.replace(**settings) if config is not None else PolicyConfig.of(settings)
    if calibration == "adaptive" and cfg.level != "adaptive":
        cfg = cfg.replace(level="adaptive")  # "adaptive" = online p-values at adaptive levels
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
    metadata = calibration_metadata(llm, cfg, chat, prompt_source)
    calibrator, update = make_calibrator(calibration, cfg, metadata)
    if calibration_update is not None and calibrator is not None:
        update = bool(calibration_update)
    prior = make_prior(cfg, warmup_prior, metadata)
    ctx = RunContext(llm.pair, cfg, calibrator, update, keys, on_step, levels, prior)
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
    levels: Optional[AdaptiveLevels] = None,
    warmup_prior=None,
    **settings,
) -> list[A1Result]:
    """Run A1 on every prompt with num_samples samples each; one A1Result per prompt, in order.

    The run's settings are `config` (a PolicyConfig; default: its defaults) with any of its fields
    given as keywords on top (`alpha=0.2, num_samples=8, on_reject="append", ...`; see
    PolicyConfig's fields: an unknown name is refused naming the known ones).

    calibration: "online", "per-question", "adaptive" (online, each stratum's level adapted by
    ACI: a1.calibration.adaptive), a file of `a1 calibrate` (its metadata must match this run's:
    calibration_metadata) or a Calibrator; level="adaptive" adapts the level over any of them, and
    `levels` (an AdaptiveLevels) continues the levels a resumed run had reached. warmup_prior: with
    warmup="prior", a calibration file (checked like `calibration`) or Calibrator whose scores
    decide the tests of strata still in warm-up. question_ids (default: the prompt's index) key
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
                  calibration_update=calibration_update, prompt_source=prompt_source, levels=levels,
                  warmup_prior=warmup_prior, **settings)
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
    overall = run_rejection(results, run.keys, run.cfg)  # the call's, clustered by question: one dict for all
    for result in results:
        result.stats["run_rejection"] = overall
        result.stats["call_wall_time"] = time.perf_counter() - start
        result.stats["warm_start_scores"] = run.ctx.warm_scores
        result.stats["speculative"] = run.ctx.speculative.metrics.as_dict() if run.ctx.speculative is not None else None
    return results
