"""Runs one step: per-layer paged KV caches, the step's metadata tensors, ONE model forward, then
`sample` on the rows that need a next token (with the q rows of draft proposals that ask),
`linear_step_score` on the rows being scored and `speculative_verify` on completed verify rows."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import torch

from a1_ext import ops
from a1_ext.reference import GREEDY_TEMPERATURE
from a1.models.attention_metadata import AttentionMetadata
from a1.models.huge_pages import huge_page_zeros

from .scheduler import ScheduledBatch
from .sequence import DraftTask, GenerateTask, ScoreTask, Sequence, VerifyTask


@dataclass
class StepOutput:
    sampled_seqs: list[Sequence] = field(default_factory=list)
    sampled_ids: list[int] = field(default_factory=list)
    sampled_logprobs: Optional[list[float]] = None  # only when a sampled row asked for logprobs
    # per scored sequence: (sequence, token log-probs of this step's rows, mean NLL of those rows)
    scores: list[tuple[Sequence, list[float], float]] = field(default_factory=list)
    sampled_probs: Optional[list[Optional[torch.Tensor]]] = None  # q rows of DraftTasks that want them
    verified: list[tuple[Sequence, tuple]] = field(default_factory=list)  # (sequence, VerifyTask.result)
    # sequences whose rows came out non-finite (NaN logits, ...): left out of the fields above
    failed: list[tuple[Sequence, BaseException]] = field(default_factory=list)


def _effective_top_k(top_k: int, vocab: int) -> int:
    """top_k >= the vocabulary keeps every token: 0 (also keeps huge values inside int64)."""
    return top_k if top_k < vocab else 0


def _non_finite_rows(logits: torch.Tensor) -> list[int]:
    """Rows with a NaN or +inf logit or no finite one (-inf alone is a legitimate mask)."""
    bad = ~torch.isfinite(logits.amax(dim=1))
    return torch.nonzero(bad).flatten().tolist() if bool(bad.any()) else []


def banned_ids(params, eos_token_ids: list[int]) -> list[int]:
    """Token ids masked before params.min_tokens tokens are generated."""
    return params.stop_token_ids + ([] if params.ignore_eos else list(eos_token_ids))


def filtered_probs(
    logits: torch.Tensor, temperature: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor
) -> torch.Tensor:
    """The rows `ops.sample` draws from, batched: softmax of logits / temperature after the top-k
    (ties kept) and top-p (token kept iff the mass of strictly likelier tokens is < top_p) filters
    of a1_ext.reference.filtered_logits; a one-hot first argmax where the temperature is below the
    ops' greedy threshold (as `sample` draws there)."""
    logits = logits.float()
    vocab = logits.shape[1]
    greedy = temperature.float() < torch.tensor(GREEDY_TEMPERATURE, dtype=torch.float32)
    scaled = logits / torch.where(greedy, torch.ones_like(temperature), temperature).unsqueeze(1)
    use_k = (top_k > 0) & (top_k < vocab)
    if bool(use_k.any()):
        k_max = int(top_k[use_k].max())
        kth = scaled.topk(k_max, dim=1).values.gather(1, (top_k.clamp(1, k_max) - 1).unsqueeze(1))
        scaled = scaled.masked_fill(use_k.unsqueeze(1) & (scaled < kth), float("-inf"))
    use_p = top_p < 1
    if bool(use_p.any()):
        probs = torch.softmax(scaled.double(), dim=1)
        ascending = probs.sort(dim=1).values
        at_or_below = ascending.cumsum(dim=1)
        idx = torch.searchsorted(ascending, probs, right=True) - 1
        greater = at_or_below[:, -1:] - at_or_below.gather(1, idx)
        scaled = scaled.masked_fill(use_p.unsqueeze(1) & ~(greater < top_p.double().unsqueeze(1)), float("-inf"))
    probs = torch.softmax(scaled, dim=1)
    if bool(greedy.any()):
        one_hot = torch.zeros_like(probs).scatter_(1, logits.argmax(dim=1, keepdim=True), 1.0)
        probs = torch.where(greedy.unsqueeze(1), one_hot, probs)
    return probs


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
        verify_rows: list[int] = []
        verify_parts: list[tuple[Sequence, int]] = []
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
            if isinstance(task, (GenerateTask, DraftTask)):
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
            elif isinstance(task, VerifyTask):
                first = max(start, task.history - 1)  # rows from the pending token's on are verified
                if first < end:
                    verify_rows.extend(range(row0 + first - start, row0 + n))
                    verify_parts.append((seq, end - first))
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
                rows_lp = logprobs[cu[i] : cu[i + 1]]
                if not math.isfinite(nlls[i]) or any(math.isnan(x) for x in rows_lp):
                    out.failed.append((seq, FloatingPointError(f"sequence {seq.seq_id}: non-finite scores (NaN logits?)")))
                    continue
                out.scores.append((seq, rows_lp, nlls[i]))
        if verify_parts:
            self._collect_verify_rows(hidden, verify_rows, verify_parts, out)
        return out

    def _sample(self, hidden: torch.Tensor, rows: list[int], seqs: list[Sequence], out: StepOutput) -> None:
        logits = self.model.compute_logits(hidden[self._tensor(rows, torch.int64)]).float()
        bad = _non_finite_rows(logits)
        if bad:
            for i in bad:
                out.failed.append((seqs[i], FloatingPointError(f"sequence {seqs[i].seq_id}: non-finite logits (NaN or inf)")))
            keep = [i for i in range(len(seqs)) if i not in set(bad)]
            if not keep:
                return
            logits, seqs = logits[self._tensor(keep, torch.int64)], [seqs[i] for i in keep]
        vocab = logits.shape[1]
        temperature, top_k, top_p, seed, offset = [], [], [], [], []
        want_logprobs = False
        for i, seq in enumerate(seqs):
            task: GenerateTask = seq.task
            p = task.params
            temperature.append(p.temperature)
            top_k.append(_effective_top_k(p.top_k, vocab))
            top_p.append(p.top_p)
            seed.append(task.seed)
            offset.append(task.num_sampled)
            want_logprobs |= p.logprobs
            if len(seq.token_ids) - task.start < p.min_tokens:  # too early to stop
                banned = banned_ids(p, self.eos_token_ids)
                if banned:
                    logits[i, banned] = float("-inf")
        params = (
            self._tensor(temperature, torch.float32),
            self._tensor(top_k, torch.int64),
            self._tensor(top_p, torch.float32),
        )
        ids, logprob = ops.sample(logits, *params, self._tensor(seed, torch.int64), self._tensor(offset, torch.int64))
        out.sampled_seqs, out.sampled_ids = seqs, ids.tolist()
        if want_logprobs:
            out.sampled_logprobs = logprob.tolist()
        want = [i for i, seq in enumerate(seqs) if isinstance(seq.task, DraftTask) and seq.task.want_probs]
        if want:  # the draft's q rows: exactly the distributions sample drew these rows from
            index = self._tensor(want, torch.int64)
            probs = filtered_probs(logits[index], *(t[index] for t in params))
            out.sampled_probs = [None] * len(seqs)
            for j, i in enumerate(want):
                out.sampled_probs[i] = probs[j]

    def _collect_verify_rows(self, hidden: torch.Tensor, rows: list[int], parts: list, out: StepOutput) -> None:
        """Keep each VerifyTask's target rows of this step; verify the tasks whose rows are all in."""
        logits = self.model.compute_logits(hidden[self._tensor(rows, torch.int64)]).float()
        bad = set(_non_finite_rows(logits))
        ready, i = [], 0
        for seq, count in parts:
            task: VerifyTask = seq.task
            if bad.intersection(range(i, i + count)):
                out.failed.append((seq, FloatingPointError(f"sequence {seq.seq_id}: non-finite logits (NaN or inf)")))
                i += count
                continue
            task.rows.append(logits[i : i + count])
            i += count
            if sum(r.shape[0] for r in task.rows) == len(seq.token_ids) - task.history + 1:
                ready.append(seq)
        if ready:
            self._verify(ready, out)

    def _verify(self, seqs: list[Sequence], out: StepOutput) -> None:
        """ONE speculative_verify over every ready request: rows [pending, d1..dk] each."""
        rows, drafts, cu, q_rows, params = [], [], [0], [], ([], [], [], [], [])
        for seq in seqs:
            task: VerifyTask = seq.task
            p, generated = task.params, task.history - task.start
            target = torch.cat(task.rows) if len(task.rows) > 1 else task.rows[0]
            task.rows = []
            ids = seq.token_ids[task.history :]
            num_banned = min(p.min_tokens - generated, len(ids) + 1)  # row i samples output token generated + i
            banned = banned_ids(p, self.eos_token_ids) if num_banned > 0 else []
            if banned:
                target = target.clone()
                target[:num_banned, banned] = float("-inf")
            rows.append(target)
            drafts.extend(ids)
            cu.append(len(drafts))
            q_rows.append(task.draft_probs)
            top_k = _effective_top_k(p.top_k, target.shape[1])
            for values, value in zip(params, (p.temperature, top_k, p.top_p, task.seed, task.offset)):
                values.append(value)
        rows = torch.cat(rows)
        draft_ids = self._tensor(drafts, torch.int64)
        draft_probs = None
        if any(q is not None for q in q_rows):  # a deterministic draft's row is one-hot on its token
            vocab = rows.shape[1]
            for b, q in enumerate(q_rows):
                if q is None:
                    ids = draft_ids[cu[b] : cu[b + 1]]
                    q_rows[b] = torch.zeros(len(ids), vocab, device=rows.device).scatter_(1, ids.unsqueeze(1), 1.0)
            draft_probs = torch.cat(q_rows)
        out_ids, num_accepted, draft_logprob = ops.speculative_verify(
            rows, draft_ids, self._tensor(cu, torch.int64), draft_probs,
            self._tensor(params[0], torch.float32), self._tensor(params[1], torch.int64),
            self._tensor(params[2], torch.float32), self._tensor(params[3], torch.int64),
            self._tensor(params[4], torch.int64),
        )
        out_ids, num_accepted = out_ids.tolist(), num_accepted.tolist()
        for b, seq in enumerate(seqs):
            accepted = num_accepted[b]
            tokens = out_ids[b][: accepted + 1]
            logprobs = None
            if seq.task.params.logprobs:
                last = rows[cu[b] + b + accepted]
                logprobs = draft_logprob[cu[b] : cu[b] + accepted].tolist()
                logprobs.append(float(torch.log_softmax(last, dim=0)[tokens[-1]]))
            out.verified.append((seq, (tokens, logprobs, accepted)))
