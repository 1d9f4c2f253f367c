"""Where a run's p-values come from: the calibration metadata a file must agree on, the
calibrator for calibration = "online" | "per-question" | "adaptive" | a file | a Calibrator, and
the warm-up prior file (warmup="prior")."""
from __future__ import annotations

import hashlib
import os
from typing import Mapping, Optional

from a1.calibration import Calibrator
from a1.calibration.strata import split_key

from .config import PolicyConfig


def calibration_metadata(llm, cfg: PolicyConfig, chat: bool = True, prompt_source: Optional[Mapping] = None) -> dict:
    """What a calibration file must agree on with the run that uses it, since each changes the
    distribution of step scores: the models (names and a fingerprint of their weights), the
    sampling parameters, the step rule, the token budgets, the score kind, the strata (turn edges
    and attempt strata), the prompt format (chat template) and, when the caller states it, where the prompts come from
    (prompt_source, e.g. {"dataset": "gsm8k", "prompt_format": ...})."""
    metadata = {
        "target": llm.pair.target_name, "draft": llm.pair.draft_name,
        "target_weights": weights_fingerprint(llm, "target"), "draft_weights": weights_fingerprint(llm, "draft"),
        "temperature": cfg.temperature, "top_p": cfg.top_p, "top_k": cfg.top_k,
        "step_tokens": cfg.step_tokens, "step_stop": list(cfg.step_stop), "min_tokens": cfg.min_tokens,
        "max_tokens": cfg.max_tokens, "score": cfg.score, "turn_edges": list(cfg.turn_edges),
        "attempt_strata": cfg.attempt_strata,
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


CALIBRATIONS = ("online", "per-question", "per_question", "adaptive")


def make_calibrator(calibration, cfg: PolicyConfig, metadata: dict) -> tuple[Optional[Calibrator], bool]:
    """(calibrator, update it online?) for calibration = "online" | "per-question" | "adaptive" |
    a file | a Calibrator. "adaptive" is "online" with the adaptive level (prepare sets
    cfg.level); the level composes with every source (cfg.level="adaptive")."""
    if cfg.mode == "sync" or not cfg.tested:
        return None, False
    rule = cfg.rule
    smoothed = rule == "conformal"  # online smoothed p-values are exactly uniform
    if isinstance(calibration, Calibrator):
        if calibration.settings.rule != rule:  # its p-values would answer another rule's question
            raise ValueError(f"calibration: the Calibrator computes {calibration.settings.rule!r} p-values but mode "
                             f"{cfg.mode!r} tests with the {rule!r} rule; build it with rule={rule!r}")
        return calibration, False
    if calibration in CALIBRATIONS:
        per_question = calibration in ("per-question", "per_question")
        return Calibrator(cfg.turn_edges, per_question=per_question, smoothed=smoothed, seed=cfg.seed, rule=rule,
                          by_attempt=cfg.attempt_strata), True
    if isinstance(calibration, (str, os.PathLike)):
        if not os.path.isfile(calibration):
            raise ValueError(
                f"calibration must be 'online', 'per-question', 'adaptive', a calibration file or a Calibrator; "
                f"{str(calibration)!r} is none of these (no such file)"
            )
        return load_calibration(calibration, cfg, metadata), False
    raise ValueError(f"calibration must be 'online', 'per-question', 'adaptive', a file path or a Calibrator, "
                     f"got {calibration!r}")


def load_calibration(path, cfg: PolicyConfig, metadata: dict) -> Calibrator:
    """A calibration file of `a1 calibrate` checked against this run's metadata, its scores under
    the run's rule (the reference rule reads the same scores)."""
    loaded = Calibrator.load(path, expect=metadata)
    if loaded.settings.rule == cfg.rule:
        return loaded
    settings = loaded.settings
    copy = Calibrator(settings.turn_edges, per_question=settings.per_question, seed=cfg.seed, rule=cfg.rule,
                      by_attempt=settings.by_attempt)
    for key in loaded.strata():
        question, bucket, attempt = split_key(key, settings.per_question)
        turn = settings.turn_edges[bucket - 1] if bucket > 0 else 0  # a turn of that bucket
        for value in loaded.scores(key):
            copy.update(value, turn=turn, question=question, attempt=attempt)
    return copy


def make_prior(cfg: PolicyConfig, warmup_prior, metadata: dict) -> Optional[Calibrator]:
    """warmup="prior": the Calibrator (or calibration file, checked like one: its scores must come
    from this run's settings) whose scores decide warm-up tests. None for the other rules."""
    if not cfg.tested or cfg.mode == "sync":
        return None
    if (cfg.warmup == "prior") != (warmup_prior is not None):
        raise ValueError(f"warmup_prior: give a calibration file exactly when warmup='prior' (warmup={cfg.warmup!r}, "
                         f"warmup_prior={warmup_prior!r})")
    if warmup_prior is None or isinstance(warmup_prior, Calibrator):
        return warmup_prior
    if not isinstance(warmup_prior, (str, os.PathLike)) or not os.path.isfile(warmup_prior):
        raise ValueError(f"warmup_prior: no such calibration file {warmup_prior!r}")
    try:
        return load_calibration(warmup_prior, cfg, metadata)
    except ValueError as err:
        raise ValueError(f"warmup_prior: {err}") from None
