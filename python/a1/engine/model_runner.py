"""Runs one step: per-layer paged KV caches, the step's metadata tensors, ONE model forward, then
`sample` on the rows that need a next token and `linear_step_score` on the rows being scored."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch

from a1_ext import ops
from a1.models.base import AttentionMetadata
from a1.models.huge_pages import huge_page_zeros

from .scheduler import ScheduledBatch
from .sequence import GenerateTask, ScoreTask, Sequence


@dataclass
class StepOutput:
    sampled_seqs: list[Sequence] = field(default_factory=list)
    sampled_ids: list[int] = field(default_factory=list)
    sampled_logprobs: Optional[list[float]] = None  # only when a sampled row asked for logprobs
    # per scored sequence: (sequence, token log-probs of this step's rows, mean NLL of those rows)
    scores: list[tuple[Sequence, list[float], float]] = field(default_factory=list)


class ModelRunner:
    def __init__(self, model, num_blocks: int, block_size: int, eos_token_ids: list[int], score_chunk: int = 4096):
        self.model, self.block_size, self.score_chunk = model, block_size, score_chunk
        self.eos_token_ids = list(eos_token_ids)
        self.device = model.lm_head_weight.device
        shape = tuple(model.kv_cache_shape(num_blocks, block_size))
        if len(shape) != 4 or shape[:2] != (num_blocks, block_size):
            raise ValueError(f"model.kv_cache_shape must be [num_blocks, block_size, kv_heads, head_dim], got {shape}")
        self.kv_caches: list[tuple[torch.Tensor, torch.Tensor]] = []
        for _ in range(model.config.num_layers):  # one tensor per layer: K and V are its halves
            if self.device.type == "cpu":  # zero pages on first touch, 2 MiB at a time (a1.models.huge_pages)
                kv = huge_page_zeros((2, *shape), model.dtype)
            else:
                kv = torch.zeros((2, *shape), dtype=model.dtype, device=self.device)
            self.kv_caches.append((kv[0], kv[1]))

    def _tensor(self, values: list, dtype: torch.dtype) -> torch.Tensor:
        return torch.tensor(values, dtype=dtype, device=self.device)

    def copy_blocks(self, pairs: list[tuple[int, int]]) -> None:
        if pairs:
            ops.copy_blocks(
                [k for k, _ in self.kv_caches], [v for _, v in self.kv_caches], self._tensor(pairs, torch.int64)
            )

    @torch.inference_mode()
    def run(self, batch: ScheduledBatch) -> StepOutput:
        self.copy_blocks(batch.copies)
        bs = self.block_size
        input_ids: list[int] = []
        positions: list[int] = []
        slots: list[int] = []
        tables: list[list[int]] = []
        seq_lens: list[int] = []
        query_start = [0]
        sample_rows: list[int] = []
        sample_seqs: list[Sequence] = []
        score_groups: dict[float, tuple[list[int], list[int], list[int], list[Sequence]]] = {}
        for seq, n in zip(batch.seqs, batch.num_tokens):
            start, end, row0 = seq.num_computed_tokens, seq.num_computed_tokens + n, len(input_ids)
            table = seq.block_table
            input_ids.extend(seq.token_ids[start:end])
            positions.extend(range(start, end))
            slots.extend(table[p // bs] * bs + p % bs for p in range(start, end))
            tables.append(table)
            seq_lens.append(end)
            query_start.append(row0 + n)
            task = seq.task
            if isinstance(task, GenerateTask):
                if end == len(seq.token_ids):
                    sample_rows.append(row0 + n - 1)
                    sample_seqs.append(seq)
            elif isinstance(task, ScoreTask):
                first = max(start, task.start - 1)  # rows at positions p predict token p + 1
                if first < end:
                    rows, targets, cu, seqs = score_groups.setdefault(task.temperature, ([], [], [0], []))
                    rows.extend(range(row0 + first - start, row0 + n))
                    targets.extend(seq.token_ids[first + 1 : end + 1])
                    cu.append(len(rows))
                    seqs.append(seq)
        width = max(len(t) for t in tables)
        meta = AttentionMetadata(
            slot_mapping=self._tensor(slots, torch.int64),
            block_table=self._tensor([t + [0] * (width - len(t)) for t in tables], torch.int32),
            seq_lens=self._tensor(seq_lens, torch.int32),
            query_start_loc=self._tensor(query_start, torch.int32),
        )
        hidden = self.model.forward(
            self._tensor(input_ids, torch.int64), self._tensor(positions, torch.int64), self.kv_caches, meta
        )
        out = StepOutput()
        if sample_seqs:
            self._sample(hidden, sample_rows, sample_seqs, out)
        for temperature, (rows, targets, cu, seqs) in score_groups.items():
            token_logprob, step_nll = ops.linear_step_score(
                hidden[self._tensor(rows, torch.int64)], self.model.lm_head_weight, self._tensor(targets, torch.int64),
                self._tensor(cu, torch.int32), temperature, self.score_chunk,
            )
            logprobs, nlls = token_logprob.tolist(), step_nll.tolist()
            for i, seq in enumerate(seqs):
                out.scores.append((seq, logprobs[cu[i] : cu[i + 1]], nlls[i]))
        return out

    def _sample(self, hidden: torch.Tensor, rows: list[int], seqs: list[Sequence], out: StepOutput) -> None:
        logits = self.model.compute_logits(hidden[self._tensor(rows, torch.int64)]).float()
        temperature, top_k, top_p, seed, offset = [], [], [], [], []
        want_logprobs = False
        for i, seq in enumerate(seqs):
            task: GenerateTask = seq.task
            p = task.params
            temperature.append(p.temperature)
            top_k.append(p.top_k)
            top_p.append(p.top_p)
            seed.append(task.seed)
            offset.append(task.num_sampled)
            want_logprobs |= p.logprobs
            if len(seq.token_ids) - task.start < p.min_tokens:  # too early to stop
                banned = p.stop_token_ids + ([] if p.ignore_eos else self.eos_token_ids)
                if banned:
                    logits[i, banned] = float("-inf")
        ids, logprob = ops.sample(
            logits, self._tensor(temperature, torch.float32), self._tensor(top_k, torch.int64),
            self._tensor(top_p, torch.float32), self._tensor(seed, torch.int64), self._tensor(offset, torch.int64),
        )
        out.sampled_seqs, out.sampled_ids = seqs, ids.tolist()
        if want_logprobs:
            out.sampled_logprobs = logprob.tolist()
