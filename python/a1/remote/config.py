"""Settings of a remote engine's HTTP traffic."""
from __future__ import annotations

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
        for name in ("score_timeout", "generate_timeout", "connect_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise ValueError(f"max_retries must be an int >= 0, got {self.max_retries!r}")
        if self.backoff < 0 or self.max_backoff < 0:
            raise ValueError(f"backoff and max_backoff must be >= 0, got {self.backoff}, {self.max_backoff}")
        for name in ("max_scores", "max_generations"):
            if isinstance(getattr(self, name), bool) or not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be an int >= 1, got {getattr(self, name)!r}")
        if self.step_timeout < 0:
            raise ValueError(f"step_timeout must be >= 0 (0: derived from the request timeouts), got {self.step_timeout}")
        if not self.probe_tolerance > 0:
            raise ValueError(f"probe_tolerance must be > 0, got {self.probe_tolerance}")

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
