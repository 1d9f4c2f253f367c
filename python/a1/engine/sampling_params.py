"""Per-request sampling parameters, validated at construction (names follow vLLM)."""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any, Optional, Union

_FLOAT32 = struct.Struct("f")
FLOAT32_MAX = 3.4028234663852886e38
FLOAT32_TINY = 1.401298464324817e-45  # the smallest float32 above 0 (a subnormal)


def as_float32(value: float) -> float:
    """value as the float32 the kernels receive: rounded, +-inf beyond float32's range."""
    try:
        return _FLOAT32.unpack(_FLOAT32.pack(value))[0]
    except OverflowError:  # struct refuses what rounds past FLOAT32_MAX
        return math.copysign(math.inf, value)


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    try:
        return float(value)
    except OverflowError:  # an int beyond float64
        raise ValueError(f"{name} must be finite, got an int of {value.bit_length()} bits") from None


def check_temperature(value: Any, name: str = "temperature") -> float:
    """A sampling temperature as the kernels take it (float32): finite and >= 0 in float32, so a
    value that is finite in Python but inf in the kernel is refused here, not in a batch of others.
    Values that round to 0 are greedy, like every temperature below the kernels' threshold."""
    t = _number(value, name)
    if not (math.isfinite(as_float32(t)) and t >= 0):
        raise ValueError(f"{name} must be finite and >= 0 in float32 (at most {FLOAT32_MAX:.7g}), got {value!r}")
    return t


def check_top_p(value: Any, name: str = "top_p") -> float:
    """top_p as the kernels take it (float32): in (0, 1] after rounding to float32 (a value that
    underflows to 0 would keep no token)."""
    p = _number(value, name)
    if not (0.0 < p <= 1.0 and as_float32(p) > 0.0):
        raise ValueError(f"{name} must be in (0, 1] and at least {FLOAT32_TINY:.7g} in float32, got {value!r}")
    return p


@dataclass
class SamplingParams:
    """How one request samples and when it stops.

    temperature: 0 is greedy. top_k: 0 (or -1) keeps every token, and so does any value >= the
    model's vocabulary size (the engine clamps it to 0, so any int is accepted). top_p: 1 keeps every token.
    max_tokens: tokens to generate at most (finish_reason 'length'). stop: strings that end the
    output when they appear in the decoded text (e.g. "\\n\\n" for a reasoning step); the output text
    is cut before the stop string unless include_stop_str_in_output. stop_token_ids: extra ids that
    end the output (kept in token_ids). ignore_eos: do not stop at the model's EOS ids. seed: a
    per-request seed (None: drawn from the engine's seed). logprobs: return the raw log-prob of every
    generated token. min_tokens: EOS, stop ids and stop strings are suppressed before this many tokens.
    """

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    max_tokens: int = 16
    stop: Optional[Union[str, list[str]]] = None
    stop_token_ids: Optional[list[int]] = None
    ignore_eos: bool = False
    seed: Optional[int] = None
    logprobs: bool = False
    min_tokens: int = 0
    include_stop_str_in_output: bool = False
    skip_special_tokens: bool = True

    def __post_init__(self) -> None:
        self.temperature = check_temperature(self.temperature)
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < -1:
            raise ValueError(f"top_k must be an int >= -1 (0 or -1 disable it), got {self.top_k!r}")
        self.top_k = max(self.top_k, 0)
        self.top_p = check_top_p(self.top_p)
        if isinstance(self.max_tokens, bool) or not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            raise ValueError(f"max_tokens must be an int >= 1, got {self.max_tokens!r}")
        if isinstance(self.min_tokens, bool) or not isinstance(self.min_tokens, int) or self.min_tokens < 0:
            raise ValueError(f"min_tokens must be an int >= 0, got {self.min_tokens!r}")
        if self.min_tokens > self.max_tokens:
            raise ValueError(f"min_tokens ({self.min_tokens}) must be <= max_tokens ({self.max_tokens})")
        if self.stop is None:
            self.stop = []
        elif isinstance(self.stop, str):
            self.stop = [self.stop]
        elif isinstance(self.stop, (list, tuple)):
            self.stop = list(self.stop)
        else:
            raise TypeError(f"stop must be a string or a list of strings, got {self.stop!r}")
        for s in self.stop:
            if not isinstance(s, str) or not s:
                raise ValueError(f"stop must hold non-empty strings, got {s!r}")
        if self.stop_token_ids is not None and not isinstance(self.stop_token_ids, (list, tuple)):
            raise TypeError(f"stop_token_ids must be a list of ints, got {self.stop_token_ids!r}")
        self.stop_token_ids = list(self.stop_token_ids or [])
        for t in self.stop_token_ids:
            if isinstance(t, bool) or not isinstance(t, int) or t < 0:
                raise ValueError(f"stop_token_ids must hold ints >= 0, got {t!r}")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise TypeError(f"seed must be an int or None, got {self.seed!r}")
        for name in ("ignore_eos", "logprobs", "include_stop_str_in_output", "skip_special_tokens"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    @property
    def max_stop_len(self) -> int:
        return max((len(s) for s in self.stop), default=0)
