"""Checks of what callers submit to an engine, run before anything is queued so that a bad request
fails alone with an error naming the argument (LLMEngine's check_* methods bind the model's limits).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from a1_ext.reference import GREEDY_TEMPERATURE

from .sampling_params import SamplingParams, check_temperature


def check_tokens(token_ids: Any, vocab_size: int, name: str = "token_ids") -> list[int]:
    """token_ids as a list of ints in [0, vocab_size), or TypeError / ValueError naming `name`."""
    if isinstance(token_ids, (str, bytes, Mapping)) or not isinstance(token_ids, Iterable):
        raise TypeError(f"{name} must be a list of token ids, got {type(token_ids).__name__}")
    token_ids = list(token_ids)
    for t in token_ids:
        if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < vocab_size:
            raise ValueError(f"{name} must hold ints in [0, {vocab_size}), got {t!r}")
    return token_ids


def check_sequence(token_ids: Any, vocab_size: int, max_model_len: int, name: str = "token_ids") -> list[int]:
    """token_ids as add_sequence() takes them: 1 to max_model_len - 1 valid ids (one slot stays
    free for the token a task adds)."""
    token_ids = check_tokens(token_ids, vocab_size, name)
    if not 1 <= len(token_ids) < max_model_len:
        raise ValueError(f"{name} must hold 1 to {max_model_len - 1} tokens, got {len(token_ids)}")
    return token_ids


def check_params(params: Any, vocab_size: int, name: str = "params", eos_token_ids: Sequence[int] = ()) -> None:
    """TypeError unless params is a SamplingParams, ValueError unless its stop ids are in the
    vocabulary and, before min_tokens (where stop and EOS ids are masked), some token is left to
    sample (else the sampler would refuse the row). top_k needs no check: values >= the
    vocabulary size keep every token, like 0."""
    if not isinstance(params, SamplingParams):
        hint = " (build one with SamplingParams(**...))" if isinstance(params, Mapping) else ""
        raise TypeError(f"{name} must be SamplingParams, got {type(params).__name__}{hint}")
    for t in params.stop_token_ids:
        if not 0 <= t < vocab_size:
            raise ValueError(f"{name}.stop_token_ids must hold ints in [0, {vocab_size}), got {t!r}")
    if params.min_tokens > 0:
        masked = set(params.stop_token_ids) | (set() if params.ignore_eos else set(eos_token_ids))
        if len(masked) >= vocab_size:
            raise ValueError(f"{name}.stop_token_ids (with the EOS ids) cover all {vocab_size} tokens: before "
                             f"min_tokens={params.min_tokens} no token is left to sample")


def check_score(
    num_history: int, token_ids: Any, temperature: Any, vocab_size: int, max_model_len: int, name: str = "token_ids"
) -> list[int]:
    """Scoring token_ids after num_history tokens at temperature: valid ids, a finite temperature
    > 0, and room in max_model_len. Returns the ids as a list."""
    token_ids = check_tokens(token_ids, vocab_size, name)
    check_score_temperature(temperature)
    if num_history + len(token_ids) > max_model_len:
        raise ValueError(f"scoring {len(token_ids)} tokens after {num_history} exceeds max_model_len {max_model_len}")
    return token_ids


def check_score_temperature(temperature: Any, name: str = "temperature") -> float:
    """A scoring temperature as the kernels divide by it (float32): finite there, and at least the
    sampler's greedy threshold (1e-5): far below it logits / temperature leave float32's range (NaN
    scores), and sampling at such a temperature is greedy anyway."""
    t = check_temperature(temperature, name)
    if not t >= GREEDY_TEMPERATURE:
        raise ValueError(f"{name} must be >= {GREEDY_TEMPERATURE:g} for scoring (and finite in float32), got {temperature!r}")
    return t


def params_per_prompt(sampling_params: Any, num_prompts: int, name: str = "sampling_params") -> list[SamplingParams]:
    """One SamplingParams per prompt from None (defaults), one SamplingParams (shared) or a list of
    them (one each). A dict or a string is refused by name: iterating it would yield its keys."""
    if sampling_params is None or isinstance(sampling_params, SamplingParams):
        return [sampling_params or SamplingParams()] * num_prompts
    if isinstance(sampling_params, (str, bytes, Mapping)) or not isinstance(sampling_params, Sequence):
        raise TypeError(
            f"{name} must be a SamplingParams or a list of them, got {type(sampling_params).__name__}"
            + (" (build one with SamplingParams(**...))" if isinstance(sampling_params, Mapping) else "")
        )
    params = list(sampling_params)
    if len(params) != num_prompts:
        raise ValueError(f"{name} has {len(params)} entries for {num_prompts} prompts")
    for i, p in enumerate(params):
        if not isinstance(p, SamplingParams):
            raise TypeError(f"{name}[{i}] must be SamplingParams, got {type(p).__name__}")
    return params


def _is_id_list(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(isinstance(t, int) and not isinstance(t, bool) for t in value)


def score_pairs(prompt_token_ids: Any, continuation_token_ids: Any) -> tuple[bool, list[list[int]], list[list[int]]]:
    """(single, prompts, continuations) for LLM.score: one pair of token-id lists, or two lists of
    token-id lists of the same length. Text is refused (score takes token ids: tokenize first)."""
    for name, value in (("prompt_token_ids", prompt_token_ids), ("continuation_token_ids", continuation_token_ids)):
        if isinstance(value, (str, bytes)):
            raise TypeError(f"{name} must be token ids (a list of ints, or a list of such lists), got a string; "
                            "tokenize it first (llm.tokenizer.encode)")
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"{name} must be a list of token ids or a list of such lists, got {type(value).__name__}")
    # one pair: a list of ids (an empty prompt too, when the continuation is ids: check_sequence names it)
    single = _is_id_list(prompt_token_ids) and (
        len(prompt_token_ids) > 0 or (len(continuation_token_ids) > 0 and _is_id_list(continuation_token_ids))
    )
    if single:
        if not _is_id_list(continuation_token_ids):
            raise TypeError("continuation_token_ids must be a list of token ids when prompt_token_ids is one, "
                            f"got {continuation_token_ids!r}")
        return True, [list(prompt_token_ids)], [list(continuation_token_ids)]
    prompts, conts = list(prompt_token_ids), list(continuation_token_ids)
    for name, items in (("prompt_token_ids", prompts), ("continuation_token_ids", conts)):
        for i, item in enumerate(items):
            if not _is_id_list(item):
                raise TypeError(f"{name}[{i}] must be a list of token ids (a batch takes one list per pair), got {item!r}")
    if len(prompts) != len(conts):
        raise ValueError(f"{len(prompts)} prompts but {len(conts)} continuations")
    return False, [list(p) for p in prompts], [list(c) for c in conts]

