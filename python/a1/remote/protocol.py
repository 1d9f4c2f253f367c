"""What a server protocol does for a remote engine: build the generation and scoring requests and
read their answers into token ids and log-probs, checking that the answer fits the request. The
start-up probe (probe.py) may set a correction: `shift` (the server files the log-prob of token i
at position i + shift) or `requires_bos` (the server's prompt log-probs are right only after a
leading BOS token, as llama-cpp-python's echo)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Union

from a1.engine.sampling_params import SamplingParams

from .errors import RemoteAlignmentError, RemoteProtocolError


@dataclass
class Generation:
    """A generation as the server returned it (before our stop rules trim it). stop_hint: what
    the server says stopped it (a stop string, a token id) or None."""

    token_ids: list[int]
    logprobs: Optional[list[float]]
    finish_reason: str
    stop_hint: Union[str, int, None]


class Protocol:
    name = "base"
    generate_path = score_path = ""

    def __init__(self, where: str, model: Optional[str] = None) -> None:
        self.where, self.model = where, model
        self.shift = 0
        self.requires_bos: Optional[int] = None
        self.seed_bits: Optional[int] = 63  # bits of a seed the server takes; None: send none (identify.py)

    def seed(self, seed: Optional[int]) -> Optional[int]:
        """The request's seed as this server takes it (None: send no seed)."""
        return None if seed is None or self.seed_bits is None else seed & ((1 << self.seed_bits) - 1)

    # the four requests/answers every protocol implements
    def generate_request(self, prompt_ids: list[int], params: SamplingParams) -> dict:
        raise NotImplementedError

    def parse_generation(self, body: Any, params: SamplingParams) -> Generation:
        raise NotImplementedError

    def score_request(self, token_ids: list[int], start: int) -> dict:
        raise NotImplementedError

    def position_logprobs(self, body: Any, token_ids: list[int], start: int) -> dict[int, float]:
        """Log-prob per prompt position as the server files them, positions >= start - 1 at
        least, with no correction applied (the probe compares positions)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ shared
    def parse_score(self, body: Any, token_ids: list[int], start: int) -> list[float]:
        """The log-prob of every token_ids[start:], the first one included, corrected by shift."""
        if self.requires_bos is not None and token_ids[0] != self.requires_bos:
            raise RemoteAlignmentError(
                f"{self.where}: this server's prompt log-probs are right only after a leading BOS token "
                f"(id {self.requires_bos}, found by the start-up probe), and this history starts with token "
                f"{token_ids[0]}; use chat prompts (which start with BOS) or a server with prompt_logprobs (vLLM, SGLang)"
            )
        filed = self.position_logprobs(body, token_ids, start)
        values = []
        for position in range(start, len(token_ids)):
            value = filed.get(position + self.shift)
            if value is None:
                raise RemoteProtocolError(
                    f"{self.where}: the server returned no log-prob for token {position} of {len(token_ids)} "
                    f"(scored from {start}): it returned {len(filed)} usable log-probs for "
                    f"{len(token_ids) - start} scored tokens"
                )
            values.append(value)
        return values

    def field(self, body: Any, *path: Union[str, int]) -> Any:
        """body[path...], or a RemoteProtocolError naming the missing field."""
        node = body
        for i, key in enumerate(path):
            try:
                node = node[key]
            except (KeyError, IndexError, TypeError):
                name = "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in path[: i + 1]).lstrip(".")
                raise RemoteProtocolError(f"{self.where}: the answer lacks {name}: {_short(body)}") from None
        return node


# vLLM writes a -inf log-prob as -9999.0 (JSON has no infinity) and SGLang clamps it to the
# dtype's minimum: no real log-prob is that low (float32's smallest probability is e^-104)
NEG_INF_AT = -9999.0


def check_logprob(where: str, value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value > 1e-3:
        raise RemoteProtocolError(f"{where}: {what} is not a log-prob: {value!r}")
    return float("-inf") if value <= NEG_INF_AT else float(value)


def check_ids(where: str, ids: Any, vocab_size: int, what: str) -> list[int]:
    if not isinstance(ids, list) or any(isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < vocab_size for t in ids):
        raise RemoteProtocolError(f"{where}: {what} must be a list of token ids in [0, {vocab_size}): {_short(ids)}")
    return ids


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 240 else text[:237] + "..."
