"""Per-request and engine-wide counters. Plain dataclasses: the engine fills them, nobody else."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional


@dataclass
class RequestMetrics:
    """Times are time.perf_counter() seconds; derived figures are None until known."""

    arrival_time: float = field(default_factory=time.perf_counter)
    num_prompt_tokens: int = 0
    num_generated_tokens: int = 0
    num_cached_tokens: int = 0  # prompt tokens already in the KV (prefix cache) when first scheduled
    first_scheduled_time: Optional[float] = None
    first_token_time: Optional[float] = None
    finished_time: Optional[float] = None

    @property
    def time_to_first_token(self) -> Optional[float]:
        return None if self.first_token_time is None else self.first_token_time - self.arrival_time

    @property
    def latency(self) -> Optional[float]:
        return None if self.finished_time is None else self.finished_time - self.arrival_time

    def as_dict(self) -> dict:
        return {
            "prompt_tokens": self.num_prompt_tokens,
            "generated_tokens": self.num_generated_tokens,
            "cached_tokens": self.num_cached_tokens,
            "time_to_first_token": self.time_to_first_token,
            "latency": self.latency,
        }


@dataclass
class EngineMetrics:
    """Counters over the engine's life. Prefix-cache figures count tokens looked up at allocation."""

    num_steps: int = 0
    num_tokens_processed: int = 0  # tokens fed through the model
    num_tokens_sampled: int = 0
    num_tokens_scored: int = 0
    num_prefix_queries: int = 0  # tokens of sequences allocated from scratch
    num_prefix_hits: int = 0  # of which served from the prefix cache
    num_preemptions: int = 0  # running sequences freed to be recomputed
    num_idle_evictions: int = 0  # idle sequences whose KV was freed for others
    peak_blocks_used: int = 0
    total_step_time: float = 0.0

    @property
    def prefix_cache_hit_rate(self) -> float:
        return self.num_prefix_hits / self.num_prefix_queries if self.num_prefix_queries else 0.0

    @property
    def mean_step_time(self) -> float:
        return self.total_step_time / self.num_steps if self.num_steps else 0.0

    def record_step(self, seconds: float, num_tokens: int, blocks_used: int) -> None:
        self.num_steps += 1
        self.total_step_time += seconds
        self.num_tokens_processed += num_tokens
        self.peak_blocks_used = max(self.peak_blocks_used, blocks_used)

    def as_dict(self) -> dict:
        return {
            "steps": self.num_steps,
            "tokens_processed": self.num_tokens_processed,
            "tokens_sampled": self.num_tokens_sampled,
            "tokens_scored": self.num_tokens_scored,
            "prefix_cache_hit_rate": self.prefix_cache_hit_rate,
            "prefix_cache_hit_tokens": self.num_prefix_hits,
            "preemptions": self.num_preemptions,
            "idle_evictions": self.num_idle_evictions,
            "peak_blocks_used": self.peak_blocks_used,
            "mean_step_time": self.mean_step_time,
        }


@dataclass
class SpeculativeMetrics:
    """Speculative decoding counters (speculative.py). A verify is one request's check of its drafts
    in a round; a target forward is one step of the target engine (all requests of a round together).
    accepted counts drafts speculative_verify accepted, before any stop condition cut them."""

    num_rounds: int = 0
    num_verifies: int = 0
    num_proposed: int = 0
    num_accepted: int = 0
    num_emitted: int = 0  # tokens that went into outputs (accepted drafts, corrections, bonus tokens)
    num_target_forwards: int = 0
    num_draft_forwards: int = 0
    draft_time: float = 0.0
    verify_time: float = 0.0
    accepted_at: list[int] = field(default_factory=list)  # [i]: verifies that accepted draft i (0-based)
    proposed_at: list[int] = field(default_factory=list)  # [i]: verifies that proposed draft i

    def record_verify(self, num_proposed: int, num_accepted: int, num_emitted: int) -> None:
        self.num_verifies += 1
        self.num_proposed += num_proposed
        self.num_accepted += num_accepted
        self.num_emitted += num_emitted
        for counts, n in ((self.proposed_at, num_proposed), (self.accepted_at, num_accepted)):
            counts.extend([0] * (num_proposed - len(counts)))
            for i in range(n):
                counts[i] += 1

    @property
    def acceptance_rate(self) -> float:
        return self.num_accepted / self.num_proposed if self.num_proposed else 0.0

    @property
    def mean_accepted_length(self) -> float:
        """Tokens a verify yields: accepted drafts plus the correction or bonus token."""
        return (self.num_accepted + self.num_verifies) / self.num_verifies if self.num_verifies else 0.0

    @property
    def tokens_per_target_forward(self) -> float:
        return self.num_emitted / self.num_target_forwards if self.num_target_forwards else 0.0

    def as_dict(self) -> dict:
        return {
            "rounds": self.num_rounds,
            "verifies": self.num_verifies,
            "proposed": self.num_proposed,
            "accepted": self.num_accepted,
            "emitted": self.num_emitted,
            "acceptance_rate": self.acceptance_rate,
            "mean_accepted_length": self.mean_accepted_length,
            "target_forwards": self.num_target_forwards,
            "draft_forwards": self.num_draft_forwards,
            "tokens_per_target_forward": self.tokens_per_target_forward,
            "acceptance_by_position": [a / p for a, p in zip(self.accepted_at, self.proposed_at)],
            "draft_time": self.draft_time,
            "verify_time": self.verify_time,
        }
