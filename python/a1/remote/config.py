"""Settings of a remote engine's HTTP traffic."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

PROTOCOLS = ("auto", "openai", "sglang")


@dataclass
class RemoteConfig:
    """Timeouts are per attempt, in seconds: score_timeout for scoring calls (a prefill: short),
    generate_timeout for generations (a whole step: long), connect_timeout for opening a
    connection. A connection error, a timeout or an HTTP 429/502/503/504 is retried up to
    max_retries times, after backoff, 2*backoff, 4*backoff... seconds (capped at max_backoff).
    max_scores / max_generations: requests of each kind in flight at once (the rest queue on the
    client), so short scoring calls are never stuck behind long generations. step_timeout: the
    most step() waits for a request to end (default: what the slowest request may take, retries
    included, plus a margin). probe_tolerance: largest median |log-prob difference| (nats) accepted
    between a server's generation and its prefill of the same tokens at start-up. api_key: sent as
`Authorization: Bearer <key>` (vLLM's and SGLang's --api-key)."""

    score_timeout: float = 120.0
    generate_timeout: float = 600.0
    connect_timeout: float = 10.0
    max_retries: int = 2
    backoff: float = 0.5
    max_backoff: float = 8.0
    max_scores: int = 64
    max_generations: int = 64
    step_timeout: float = 0.0
    probe_tolerance: float = 0.25
    api_key: Optional[str] = field(default=None, repr=False)

    def __post_init__(self) -> None:
        for name in ("score_timeout", "generate_timeout", "connect_timeout", "probe_tolerance"):
            _number(self, name, "> 0", lambda v: v > 0)
        for name in ("backoff", "max_backoff"):
            _number(self, name, ">= 0", lambda v: v >= 0)
        _number(self, "step_timeout", ">= 0 (0: derived from the request timeouts)", lambda v: v >= 0)
        for name, low in (("max_retries", 0), ("max_scores", 1), ("max_generations", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        if self.api_key is not None and (not isinstance(self.api_key, str) or not self.api_key):
            raise ValueError("api_key must be a non-empty string or None")

    def timeout(self, kind: str) -> float:
        return self.score_timeout if kind == "score" else self.generate_timeout

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number attempt + 1."""
        return min(self.backoff * (2 ** attempt), self.max_backoff)

    def worst_case(self, kind: str) -> float:
        """The longest one request may take: every attempt timing out, plus the backoffs."""
        attempts = self.max_retries + 1
        return attempts * (self.timeout(kind) + self.connect_timeout) + sum(self.delay(i) for i in range(self.max_retries))

    def wait_limit(self) -> float:
        """step()'s bound on waiting for any request to end."""
        if self.step_timeout:
            return self.step_timeout
        return max(self.worst_case("score"), self.worst_case("generate")) + 30.0


def _number(config: RemoteConfig, name: str, rule: str, ok) -> None:
    """A finite real number obeying rule (a bool, a string or an infinity is refused by name)."""
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not ok(value):
        raise ValueError(f"{name} must be a finite number {rule}, got {value!r}")
