"""Runs one step: per-layer paged KV caches, the step's metadata tensors, ONE model forward, then
`sample` on the rows that need a next token (with the q rows of draft proposals that ask,
`sampling_probs`), `linear_step_score` on the rows being scored and `speculative_verify` on
completed verify rows. Which rows a sequence needs is its task's to say (tasks.py: plan_rows)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import torch

from a1_ext import ops
from a1.models.attention_metadata import AttentionMetadata
from a1.models.huge_pages import huge_page_zeros

from .scheduler import ScheduledBatch
from .sampling_rows import banned_ids, each_alone_on_failure, effective_top_k, non_finite_rows
from .sequence import Sequence
from .tasks import VerifyTask



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


@dataclass
class StepRows:
    """The rows of a step's forward the tasks need (tasks.RowPlan): sampled rows, scored rows
    grouped by temperature (one linear_step_score each), verified rows."""

    sample_rows: list[int] = field(default_factory=list)
    sample_seqs: list[Sequence] = field(default_factory=list)
    score_groups: dict[float, tuple[list[int], list[int], list[int], list[Sequence]]] = field(default_factory=dict)
    verify_rows: list[int] = field(default_factory=list)
    verify_parts: list[tuple[Sequence, int]] = field(default_factory=list)

    def sample(self, row: int, seq: Sequence) -> None:
        self.sample_rows.append(row)
        self.sample_seqs.append(seq)

    def score(self, temperature: float, rows: range, targets: list[int], seq: Sequence) -> None:
        group_rows, group_targets, cu, seqs = self.score_groups.setdefault(temperature, ([], [], [0], []))
        group_rows.extend(rows)
        group_targets.extend(targets)
        cu.append(len(group_rows))
        seqs.append(seq)

    def verify(self, rows: range, seq: Sequence) -> None:
        self.verify_rows.extend(rows)
        self.verify_parts.append((seq, len(rows)))


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
        plan = StepRows()
        for seq, n in zip(batch.seqs, batch.num_tokens):
            start, end, row0 = seq.num_computed_tokens, seq.num_computed_tokens + n, len(input_ids)
            table = seq.block_table
            input_ids.extend(seq.token_ids[start:end])
            positions.extend(range(start, end))
            slots.extend(table[p // bs] * bs + p % bs for p in range(start, end))
            tables.append(table)
            seq_lens.append(end)
            query_start.append(row0 + n)
            seq.task.plan_rows(plan, seq, start, end, row0)  # the rows its task needs (tasks.py)
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
        if plan.sample_seqs:
            self._sample(hidden, plan.sample_rows, plan.sample_seqs, out)
        for temperature, group in plan.score_groups.items():
            self._score(hidden, temperature, *group, out)
        if plan.verify_parts:
            self._collect_verify_rows(hidden, plan.verify_rows, plan.verify_parts, out)
        return out

    def _score(self, hidden: torch.Tensor, temperature: float, rows: list[int], targets: list[int], cu: list[int],
               seqs: list[Sequence], out: StepOutput) -> None:
        """linear_step_score over the scored sequences of one temperature (one call; a sequence
        the op refuses fails alone)."""
        def score(index: list[int]) -> list[tuple[list[float], float]]:
            spans = [(cu[i], cu[i + 1]) for i in index]
            picked = [r for a, b in spans for r in range(a, b)]
            sub_cu = [0]
            for a, b in spans:
                sub_cu.append(sub_cu[-1] + b - a)
            token_logprob, step_nll = ops.linear_step_score(
                hidden[self._tensor([rows[r] for r in picked], torch.int64)], self.model.lm_head_weight,
                self._tensor([targets[r] for r in picked], torch.int64), self._tensor(sub_cu, torch.int32),
                temperature, self.score_chunk,
            )
            logprobs, nlls = token_logprob.tolist(), step_nll.tolist()
            return [(logprobs[sub_cu[j] : sub_cu[j + 1]], nlls[j]) for j in range(len(index))]

        for seq, result in zip(seqs, each_alone_on_failure(score, list(range(len(seqs))))):
            if isinstance(result, Exception):
                out.failed.append((seq, result))
                continue
            rows_lp, nll = result
            if not math.isfinite(nll) or any(math.isnan(x) for x in rows_lp):
                out.failed.append((seq, FloatingPointError(f"sequence {seq.seq_id}: non-finite scores (NaN logits?)")))
                continue
            out.scores.append((seq, rows_lp, nll))

    def _sample(self, hidden: torch.Tensor, rows: list[int], seqs: list[Sequence], out: StepOutput) -> None:
        logits = self.model.compute_logits(hidden[self._tensor(rows, torch.int64)]).float()
        bad = non_finite_rows(logits)
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
            task = seq.task  # a GenerateTask or a DraftTask: both sample under the request's params
            p = task.params
            temperature.append(p.temperature)
            top_k.append(effective_top_k(p.top_k, vocab))
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
            self._tensor(seed, torch.int64),
            self._tensor(offset, torch.int64),
        )

        def sample(index: list[int]) -> list[tuple[int, float]]:
            rows = slice(None) if len(index) == len(seqs) else self._tensor(index, torch.int64)
            ids, logprob = ops.sample(logits[rows], *(t[rows] for t in params))
            return list(zip(ids.tolist(), logprob.tolist()))

        drawn = each_alone_on_failure(sample, list(range(len(seqs))))
        ok = [i for i, result in enumerate(drawn) if not isinstance(result, Exception)]
        out.failed.extend((seqs[i], result) for i, result in enumerate(drawn) if isinstance(result, Exception))
        out.sampled_seqs = [seqs[i] for i in ok]
        out.sampled_ids = [drawn[i][0] for i in ok]
        if want_logprobs:
            out.sampled_logprobs = [drawn[i][1] for i in ok]
        want = [j for j, i in enumerate(ok) if seqs[i].task.want_probs]
        if want:  # the draft's q rows: exactly the distributions sample drew these rows from
            index = self._tensor([ok[j] for j in want], torch.int64)
            probs = ops.sampling_probs(logits[index], *(t[index] for t in params[:3]))
            out.sampled_probs = [None] * len(ok)
            for n, j in enumerate(want):
                out.sampled_probs[j] = probs[n]

    def _collect_verify_rows(self, hidden: torch.Tensor, rows: list[int], parts: list, out: StepOutput) -> None:
        """Keep each VerifyTask's target rows of this step; verify the tasks whose rows are all in."""
        logits = self.model.compute_logits(hidden[self._tensor(rows, torch.int64)]).float()
        bad = set(non_finite_rows(logits))
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
        """ONE speculative_verify over every ready request: rows [pending, d1..dk] each (a request
        the op refuses fails alone)."""
        parts = []  # per request: target rows, draft ids, q rows or None, (temperature, top_k, top_p, seed, offset)
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
            top_k = effective_top_k(p.top_k, target.shape[1])
            parts.append((target, ids, task.draft_probs, (p.temperature, top_k, p.top_p, task.seed, task.offset)))

        def verify(index: list[int]) -> list[tuple[list[int], list[float], int]]:
            chosen = [parts[i] for i in index]
            rows = torch.cat([target for target, _, _, _ in chosen])
            cu = [0]
            for _, ids, _, _ in chosen:
                cu.append(cu[-1] + len(ids))
            draft_ids = self._tensor([t for _, ids, _, _ in chosen for t in ids], torch.int64)
            draft_probs = None
            if any(q is not None for _, _, q, _ in chosen):  # a deterministic draft's row is one-hot on its token
                q_rows = []
                for b, (_, _, q, _) in enumerate(chosen):
                    if q is None:
                        ids = draft_ids[cu[b] : cu[b + 1]]
                        q = torch.zeros(len(ids), rows.shape[1], device=rows.device).scatter_(1, ids.unsqueeze(1), 1.0)
                    q_rows.append(q)
                draft_probs = torch.cat(q_rows)
            columns = list(zip(*(params for _, _, _, params in chosen)))
            out_ids, num_accepted, draft_logprob = ops.speculative_verify(
                rows, draft_ids, self._tensor(cu, torch.int64), draft_probs,
                self._tensor(columns[0], torch.float32), self._tensor(columns[1], torch.int64),
                self._tensor(columns[2], torch.float32), self._tensor(columns[3], torch.int64),
                self._tensor(columns[4], torch.int64),
            )
            out_ids, num_accepted = out_ids.tolist(), num_accepted.tolist()
            results = []
            for b, i in enumerate(index):
                accepted = num_accepted[b]
                tokens = out_ids[b][: accepted + 1]
                logprobs = None
                if seqs[i].task.params.logprobs:
                    last = rows[cu[b] + b + accepted]
                    logprobs = draft_logprob[cu[b] : cu[b] + accepted].tolist()
                    logprobs.append(float(torch.log_softmax(last, dim=0)[tokens[-1]]))
                results.append((tokens, logprobs, accepted))
            return results

        for seq, result in zip(seqs, each_alone_on_failure(verify, list(range(len(seqs))))):
            if isinstance(result, Exception):
                out.failed.append((seq, result))
            else:
                out.verified.append((seq, result))
