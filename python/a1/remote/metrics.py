"""Counters of a remote engine (the EngineMetrics of a server we only talk to)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RemoteMetrics:
    num_steps: int = 0
    num_generations: int = 0  # finished generation requests
    num_scores: int = 0  # finished scoring requests
    num_retries: int = 0  # attempts beyond the first, over finished requests
    num_failures: int = 0  # requests that failed for good
    num_failovers: int = 0  # requests re-sent to another replica (theirs was taken out)
    num_tokens_sent: int = 0  # prompt tokens sent (every request carries its whole history)
    num_tokens_sampled: int = 0  # generated tokens kept
    num_tokens_dropped: int = 0  # generated tokens past the step's end (trimmed in token space)
    num_tokens_scored: int = 0
    num_tokens_rescored: int = 0  # generated tokens whose log-probs a scoring request re-read
    total_request_time: float = 0.0  # seconds, summed over finished requests
    total_wait_time: float = 0.0  # seconds step() waited for the server

    @property
    def mean_request_time(self) -> float:
        done = self.num_generations + self.num_scores
        return self.total_request_time / done if done else 0.0

    def as_dict(self) -> dict:
        return {
            "steps": self.num_steps, "generations": self.num_generations, "scores": self.num_scores,
            "retries": self.num_retries, "failures": self.num_failures, "failovers": self.num_failovers,
            "tokens_sent": self.num_tokens_sent,
            "tokens_sampled": self.num_tokens_sampled, "tokens_dropped": self.num_tokens_dropped,
            "tokens_scored": self.num_tokens_scored, "tokens_rescored": self.num_tokens_rescored,
            "mean_request_time": self.mean_request_time,
            "wait_time": self.total_wait_time,
        }
