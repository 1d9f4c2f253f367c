"""Distillation data: the target's own continuations of calibration-split prompts, with what the
target predicted at each of their positions (DistillSpec's on-policy-for-the-teacher data).

Only calibration splits are read (a1.data.select_split): the test questions the draft will be
evaluated on never shape it. A shard holds, per sequence, its token ids (prompt + continuation), where
the continuation starts, and the target's top-k next-token log-probs at every position that predicts
a continuation token (a sparse teacher: the full 49,152-wide rows would take 192 KB a token).
Shards are written one by one, so an interrupted generation resumes at the next shard.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

from .forward import logits_of, prefill_hidden


@dataclass
class TrainSequence:
    """One training sequence: ids [L] int32, start (first continuation index), the target's top-k
    log-probs [L - start, k] (float16) and their token ids [L - start, k] (int32)."""

    ids: torch.Tensor
    start: int
    top_logprobs: torch.Tensor
    top_ids: torch.Tensor

    @property
    def num_targets(self) -> int:
        return int(self.ids.numel()) - self.start


def calibration_prompts(tokenizer, datasets: Sequence[str], seed: int = 0,
                        limit_per_dataset: Optional[int] = None) -> list[tuple[str, list[int]]]:
    """(question id, chat-formatted prompt ids) of the calibration split of each dataset, shuffled
    by seed (interleaving the datasets), prompts as `a1 eval` formats them."""
    from a1.data import format_prompt, load_dataset
    from a1.models.prompts import encode_prompts

    prompts: list[tuple[str, list[int]]] = []
    for name in datasets:
        problems = load_dataset(name, split="calibration", seed=seed, limit=limit_per_dataset)
        encoded = encode_prompts(tokenizer, [format_prompt(p) for p in problems], chat=True)
        prompts.extend((f"{name}/{p.id}", ids) for p, (_, ids) in zip(problems, encoded))
    random.Random(seed).shuffle(prompts)
    return prompts


@torch.inference_mode()
def teacher_targets(model, ids: list[int], start: int, top_k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The target's top-k log-probs and ids at positions start-1 .. len(ids)-2 (those predicting
    ids[start:]), float16 / int32."""
    hidden = prefill_hidden(model, ids)[start - 1 : len(ids) - 1]
    logprobs = torch.log_softmax(logits_of(model, hidden), dim=-1)
    values, indices = logprobs.topk(top_k, dim=-1)
    return values.to(torch.float16), indices.to(torch.int32)


def make_shard(llm, prompts: Sequence[list[int]], temperatures: Sequence[float], max_new_tokens: int,
               top_k: int, seed: int) -> list[TrainSequence]:
    """Continue every prompt once per temperature on the target (one batched generate: a larger
    decode batch costs less per token), then record the target's top-k predictions along each."""
    from a1.engine.sampling_params import SamplingParams

    jobs = [(prompt, temperature) for prompt in prompts for temperature in temperatures]
    params = [SamplingParams(temperature=t, top_p=0.95 if t > 0 else 1.0, max_tokens=max_new_tokens,
                             seed=seed * 100003 + i) for i, (_, t) in enumerate(jobs)]
    out: list[TrainSequence] = []
    for (prompt, _), result in zip(jobs, llm.generate([list(p) for p, _ in jobs], params)):
        continuation = list(result.outputs[0].token_ids)
        if not continuation:
            continue
        ids = list(prompt) + continuation
        values, indices = teacher_targets(llm.loaded.model, ids, len(prompt), top_k)
        out.append(TrainSequence(torch.tensor(ids, dtype=torch.int32), len(prompt), values, indices))
    return out


def save_shard(path: Path, sequences: list[TrainSequence]) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save([(s.ids, s.start, s.top_logprobs, s.top_ids) for s in sequences], tmp)
    tmp.replace(path)  # atomic: a shard on disk is always complete


def load_shard(path: Path) -> list[TrainSequence]:
    return [TrainSequence(*item) for item in torch.load(path, weights_only=True)]


def build_shards(llm, prompts: list[list[int]], folder: Path, shard_size: int, temperatures: Sequence[float],
                 max_new_tokens: int, top_k: int, seed: int,
                 should_stop: Callable[[], bool] = lambda: False,
                 on_shard: Callable[[int, int], None] = lambda done, total: None) -> list[Path]:
    """Shards of `shard_size` prompts in folder/shard-NNNN.pt, skipping those already written;
    stops early (after a whole shard) when should_stop() says so. Returns the shards on disk."""
    folder.mkdir(parents=True, exist_ok=True)
    total = -(-len(prompts) // shard_size)
    paths = []
    for index in range(total):
        path = folder / f"shard-{index:04d}.pt"
        if not path.exists():
            if should_stop():
                break
            chunk = prompts[index * shard_size : (index + 1) * shard_size]
            save_shard(path, make_shard(llm, chunk, temperatures, max_new_tokens, top_k, seed + index))
        paths.append(path)
        on_shard(len(paths), total)
    return paths
