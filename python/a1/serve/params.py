"""Typed reading of request JSON: every check names the field it rejects (RequestError -> 4xx),
and the Job both APIs reduce a request to: a prompt, an optional generation, optional prompt
log-probs."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

from a1.engine.sampling_params import SamplingParams

from .errors import RequestError, brief

_MISSING = object()


@dataclass
class Job:
    """model: the served model asked for (None: the target). params: the generation after the
    prompt (None: none, i.e. max_tokens 0). score_from: prompt positions [score_from, len) get their
    log-probs (position 0 has none: it is reported as null); None: no prompt log-probs."""

    model: Optional[str]
    prompt_ids: list[int]
    params: Optional[SamplingParams]
    score_from: Optional[int]


def check_object(body: Any) -> dict:
    if not isinstance(body, dict):
        raise RequestError(f"the request body must be a JSON object, got {type(body).__name__}")
    return body


def get_bool(body: dict, name: str, default: bool) -> bool:
    value = body.get(name, _MISSING)
    if value is _MISSING or value is None:
        return default
    if not isinstance(value, bool):
        raise RequestError(f"{name} must be a boolean, got {brief(value)}", name)
    return value


def get_int(body: dict, name: str, default: Optional[int], minimum: Optional[int] = None) -> Optional[int]:
    value = body.get(name, _MISSING)
    if value is _MISSING or value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(f"{name} must be an integer, got {brief(value)}", name)
    if minimum is not None and value < minimum:
        raise RequestError(f"{name} must be >= {minimum}, got {value}", name)
    return value


def get_float(body: dict, name: str, default: float) -> float:
    value = body.get(name, _MISSING)
    if value is _MISSING or value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RequestError(f"{name} must be a finite number, got {brief(value)}", name)
    return float(value)


def get_stop(body: dict, name: str) -> list[str]:
    value = body.get(name)
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(s, str) and s for s in value):
        raise RequestError(f"{name} must be a non-empty string or a list of them, got {brief(value)}", name)
    return value


def get_token_list(body: dict, name: str, vocab_size: int, allow_empty: bool = False) -> list[int]:
    value = body.get(name)
    if not isinstance(value, list) or (not value and not allow_empty):
        raise RequestError(f"{name} must be a non-empty list of token ids, got {brief(value)}", name)
    for token in value:
        if isinstance(token, bool) or not isinstance(token, int) or not 0 <= token < vocab_size:
            raise RequestError(f"{name} must hold token ids in [0, {vocab_size}), got {brief(token)}", name)
    return value


def encode_text(tokenizer, text: str, field: str, add_special_tokens: bool = True) -> list[int]:
    """A client's text as token ids. The body's strings are valid Unicode (body.check_values), but a
    tokenizer may still refuse a text (a character outside its vocabulary): the text's fault, a 400."""
    try:
        return list(tokenizer.encode(text, add_special_tokens=add_special_tokens))
    except Exception as err:
        raise RequestError(f"{field} cannot be tokenized: {type(err).__name__}: {err}", field) from None


def refuse(body: dict, name: str, allowed: tuple = (None,), why: str = "is not supported by a1 serve") -> None:
    """A field this server cannot honour is refused unless it holds a neutral value."""
    if name in body and body[name] not in allowed:
        raise RequestError(f"{name} {why} (got {brief(body[name])})", name)


def sampling_params(fields: dict, names: dict[str, str]) -> SamplingParams:
    """SamplingParams from already typed fields; its own range checks become 400s naming the
    request's field (names maps SamplingParams' names to the API's)."""
    try:
        return SamplingParams(**fields)
    except (ValueError, TypeError) as err:
        message = str(err)
        attribute = message.split(" ", 1)[0]
        field = names.get(attribute, attribute if attribute in fields else None)
        if field is not None and attribute != field:
            message = f"{field}: {message}"
        raise RequestError(message, field) from None


def check_length(prompt_len: int, max_tokens: int, max_model_len: int, prompt_field: str, tokens_field: str) -> None:
    """Requests longer than the model's context are refused, never truncated."""
    if prompt_len > max_model_len or (max_tokens > 0 and prompt_len >= max_model_len):
        raise RequestError(
            f"{prompt_field} holds {prompt_len} tokens: over the model's max_model_len {max_model_len}", prompt_field
        )
    if prompt_len + max_tokens > max_model_len:
        raise RequestError(
            f"{tokens_field}={max_tokens} after a {prompt_len}-token prompt exceeds max_model_len {max_model_len} "
            f"(at most {max_model_len - prompt_len})", tokens_field,
        )
