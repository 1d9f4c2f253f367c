"""How good and how cheap a draft is against its target, the three figures `a1 distill-draft` and
benchmarks report:

- top-1 agreement: teacher-forced on the target's greedy continuations, the share of positions where
  the draft's argmax equals the target's (the token the target wrote);
- speculative acceptance: lossless speculative decoding at temperature 0 with the draft proposing k
  tokens per round, accepted / proposed (a1.LLM(..., num_speculative_tokens=k));
- per-token cost: the wall time of a batched decode step of the draft over the target's, both on the
  engine (same batch, same prompts, interleaved repeats, fastest of each).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Optional, Sequence

import torch

from .forward import logits_of, prefill_hidden


@dataclass
class DraftQuality:
    agreement: float  # top-1 agreement with the target's greedy continuation, teacher-forced
    positions: int
    acceptance: Optional[float] = None  # speculative decoding accepted / proposed at T=0
    speculative_k: Optional[int] = None
    tokens_per_verify: Optional[float] = None
    first_token_acceptance: Optional[float] = None  # share of verifies that accepted their first proposal
    cost_ratio: Optional[float] = None  # draft decode step time / target decode step time
    cost_batch: Optional[int] = None
    draft_step_ms: Optional[float] = None
    target_step_ms: Optional[float] = None

    def as_dict(self) -> dict:
        return asdict(self)


def greedy_continuations(llm, prompts: Sequence[list[int]], max_new_tokens: int) -> list[list[int]]:
    """The target's greedy continuation of each prompt (token ids, prompt excluded)."""
    from a1.engine.sampling_params import SamplingParams

    outs = llm.generate([list(p) for p in prompts], SamplingParams(temperature=0.0, max_tokens=max_new_tokens))
    return [list(o.outputs[0].token_ids) for o in outs]


@torch.inference_mode()
def top1_agreement(target, draft, sequences: Sequence[tuple[list[int], list[int]]]) -> tuple[float, int]:
    """(share of agreeing positions, positions) over (prompt, continuation) pairs: at every position
    that predicts a continuation token, does the draft's argmax equal the target's? Both run their
    own forward (a1 ops) over the whole sequence."""
    agree = total = 0
    for prompt, continuation in sequences:
        if not continuation:
            continue
        ids = list(prompt) + list(continuation)
        rows = slice(len(prompt) - 1, len(ids) - 1)
        want = logits_of(target, prefill_hidden(target, ids)[rows]).argmax(-1)
        got = logits_of(target, prefill_hidden(draft, ids)[rows]).argmax(-1)
        agree += int((want == got).sum())
        total += len(continuation)
    if not total:
        raise ValueError("no continuation tokens to compare")
    return agree / total, total


def speculative_acceptance(target_loaded, draft_loaded, prompts: Sequence[list[int]], k: int,
                           max_new_tokens: int) -> tuple[float, float, float]:
    """(accepted / proposed, tokens per verify: what one request gains per target check, the share of
    verifies whose first proposal was accepted) of greedy speculative decoding. accepted / proposed
    counts the proposals after a round's first rejection, which never had a chance: it is about
    a(1 - a^k) / (k(1 - a)) for a per-token acceptance a."""
    from a1.engine.sampling_params import SamplingParams
    from a1.llm import LLM

    llm = LLM(target_loaded, draft=draft_loaded, num_speculative_tokens=k, kv_cache_gb=0.25)
    llm.generate([list(p) for p in prompts], SamplingParams(temperature=0.0, max_tokens=max_new_tokens))
    spec = llm.get_metrics()["speculative"]
    proposed = max(1, spec["proposed"])
    by_position = spec.get("acceptance_by_position") or [0.0]
    return spec["accepted"] / proposed, spec["emitted"] / max(1, spec["verifies"]), by_position[0]


def decode_step_ms(loaded, prompts: Sequence[list[int]], batch: int, steps: int) -> float:
    """Milliseconds of one decode step of `batch` sequences on the model's own engine (prefill
    excluded): the time of generating steps + 1 tokens minus that of 1 token, over steps."""
    from a1.engine.sampling_params import SamplingParams
    from a1.llm import LLM

    llm = LLM(loaded, kv_cache_gb=0.25)
    chosen = [list(prompts[i % len(prompts)]) for i in range(batch)]

    def run(tokens: int) -> float:
        params = SamplingParams(temperature=0.0, max_tokens=tokens, ignore_eos=True)
        start = time.perf_counter()
        llm.generate(chosen, params)
        return time.perf_counter() - start

    run(2)  # warm-up: caches, OpenMP pool, prefix cache of the prompts
    return 1000 * (run(steps + 1) - run(1)) / steps


def cost_ratio(target_loaded, draft_loaded, prompts: Sequence[list[int]], batch: int = 16, steps: int = 32,
               repeats: int = 3) -> tuple[float, float, float]:
    """(draft ms / target ms, draft ms, target ms) per decode step at `batch`: interleaved repeats,
    the fastest of each (a shared machine only ever slows a run down)."""
    from a1.models.loader import LoadedModel

    draft_alone = LoadedModel(draft_loaded.model, draft_loaded.tokenizer, draft_loaded.config, draft_loaded.source)
    best = {"draft": float("inf"), "target": float("inf")}
    for _ in range(repeats):
        best["target"] = min(best["target"], decode_step_ms(target_loaded, prompts, batch, steps))
        best["draft"] = min(best["draft"], decode_step_ms(draft_alone, prompts, batch, steps))
    return best["draft"] / best["target"], best["draft"], best["target"]
