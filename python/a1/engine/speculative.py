"""Lossless speculative decoding (Leviathan et al., Chen et al.; vLLM's shape) on a PairEngine.

A round, for every active request at once: the draft proposes k_r tokens (DraftTask: one batched
draft step per position), each sampled by `sample` from the request's filtered draft distribution q,
whose full-vocabulary rows are kept; then the target runs ONE forward over [pending, d1..dk] of
every request (VerifyTask) and `speculative_verify` accepts a prefix of the drafts and draws the
correction (or, all accepted, a bonus) token from the target. The resulting tokens go one at a time
through plain generation's stop rules (LLMEngine.append_generated on a record of the request), so
EOS, stop ids, stop strings, min_tokens and max_tokens cut exactly where plain generation would;
then both sequences are settled: everything after the last kept token is rolled back, that token
is the pending one of both, and the verified history is committed (drafts never are).

k_r = min(k, max_tokens - generated - 1, room left under max_model_len): the round's verify yields
at most k_r + 1 tokens. Randomness: a request's draws take Philox offsets from one counter, the k_r
proposals (purpose `sample`) then the verify (purposes verify-accept / verify-race), so no offset is
used twice within a request and the proposals' streams are independent of the verify's uniforms.
"""
from __future__ import annotations

import random
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Optional, Union

import torch

from .detokenizer import start_detokenizer
from .llm_engine import LLMEngine
from .metrics import RequestMetrics, SpeculativeMetrics
from .outputs import RequestOutput
from .pair import PairEngine
from .sampling_params import SamplingParams
from .validation import params_per_prompt
from .sequence import Sequence
from .tasks import DraftTask, GenerateTask, VerifyTask, as_int64


@dataclass
class _Request:
    index: int
    record: Sequence  # the verified history (prompt + output so far) and the request's GenerateTask
    target_id: int
    draft_id: int
    offset: int = 0  # the next Philox offset
    drafts: list[int] = field(default_factory=list)  # this round's proposals
    probs: Optional[torch.Tensor] = None  # their q rows [k_r, V] (None: greedy, a deterministic draft)
    error: Optional[BaseException] = None  # its draft or verify task failed: it ends with this error

    @property
    def done(self) -> bool:
        return self.error is not None or self.record.task.finish_reason is not None

    @property
    def task(self) -> GenerateTask:
        return self.record.task


class SpeculativeDecoder:
    """generate() with the pair's draft proposing num_speculative_tokens tokens per round and the
    target verifying them; the outputs are distributed exactly as the target's plain generation."""

    def __init__(self, pair: PairEngine, num_speculative_tokens: int) -> None:
        k = num_speculative_tokens
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"num_speculative_tokens must be an int >= 1, got {k!r}")
        self.pair, self.k = pair, num_speculative_tokens
        self.metrics = SpeculativeMetrics()
        self._seed_rng = random.Random(pair.target.config.seed)  # seeds of requests that give none

    # ------------------------------------------------------------------ API
    def generate(
        self, prompts: list[list[int]], params: Union[SamplingParams, list[SamplingParams]], use_tqdm: bool = False
    ) -> list[RequestOutput]:
        """One RequestOutput per prompt, in order (released sequences: prompt_token_ids filled).
        At most the target's max_num_seqs requests are in flight; the rest wait their turn. A
        request whose draft or verify step fails ends alone, as plain generation's do: its output
        has finish_reason 'error' and the exception in `error`; the others go on."""
        params = params_per_prompt(params, len(prompts), "params")
        # the engine's own checks (the pair's engines share max_model_len and the vocabulary)
        prompts = [self.pair.target.check_sequence(p, f"prompts[{i}]") for i, p in enumerate(prompts)]
        for i, p in enumerate(params):
            self.pair.target.check_params(p, f"params[{i}]")
        waiting = deque(range(len(prompts)))
        results: list[Optional[RequestOutput]] = [None] * len(prompts)
        active: list[_Request] = []
        bar = None
        if use_tqdm:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(prompts), desc="generate (speculative)")
        try:
            while waiting or active:
                while waiting and len(active) < self.pair.target.max_num_seqs:
                    i = waiting.popleft()
                    active.append(self._start(i, prompts[i], params[i]))
                self._round(active)
                for r in [r for r in active if r.done]:
                    results[r.index] = self._finish(r)
                    active.remove(r)
                    if bar is not None:
                        bar.update(1)
        finally:
            for r in active:  # only after an error: drop what is left of the unfinished requests
                for engine, seq_id in ((self.pair.target, r.target_id), (self.pair.draft, r.draft_id)):
                    if engine.is_live(seq_id):
                        engine.abort(seq_id)
            if bar is not None:
                bar.close()
        return results

    def verify_probs(self, probs: torch.Tensor) -> torch.Tensor:
        """The q rows handed to speculative_verify: the ones the draft sampled from (a test swaps in a
        deliberately wrong q here to show that the distribution test can fail)."""
        return probs

    # ------------------------------------------------------------------ one request
    def _start(self, index: int, prompt: list[int], params: SamplingParams) -> _Request:
        target_id = self.pair.target.add_sequence(prompt)
        return self.open(target_id, self.pair.draft.add_sequence(prompt), prompt, params, index=index)

    def open(
        self, target_id: int, draft_id: int, history: list[int], params: SamplingParams, index: int = 0
    ) -> _Request:
        """A request continuing the idle sequences target_id and draft_id (both holding `history`)
        under params; drive it with propose / take_proposal / verify / accept (what one round of
        generate() does for all its requests) until request.task.finish_reason is set."""
        seed = params.seed if params.seed is not None else self._seed_rng.getrandbits(63)
        record = Sequence(target_id, history)  # the request's verified history, named as its output is
        metrics = RequestMetrics(num_prompt_tokens=len(history))
        record.task = GenerateTask(params, as_int64(seed), len(history), True, True, metrics)
        start_detokenizer(record.task)
        return _Request(index, record, target_id, draft_id)

    def _finish(self, r: _Request) -> RequestOutput:
        """The RequestOutput plain generation would give (the GenerateTask's own output, or its
        failure output); both sequences go."""
        for engine, seq_id in ((self.pair.target, r.target_id), (self.pair.draft, r.draft_id)):
            if r.error is not None and engine.is_live(seq_id):  # the failed task's sequence is gone already
                engine.abort(seq_id)
            elif r.error is None:
                engine.free(seq_id)
        if r.error is not None:
            return r.task.failure(r.record, r.error)
        return r.task.output(self.pair.target.tokenizer, r.record)

    # ------------------------------------------------------------------ one round
    def _round(self, active: list[_Request]) -> None:
        draft, target, m = self.pair.draft, self.pair.target, self.metrics
        m.num_rounds += 1
        t0 = time.perf_counter()
        proposing = [r for r in active if self.propose(r)]
        proposals = self._drive(draft, {r.draft_id for r in proposing}, "draft")
        for r in proposing:
            if not self._failed(r, proposals[r.draft_id]):
                self.take_proposal(r, proposals[r.draft_id])
        t1 = time.perf_counter()
        verifying = [r for r in active if r.error is None]
        for r in verifying:
            self.verify(r)
        verdicts = self._drive(target, {r.target_id for r in verifying}, "target")
        for r in verifying:
            if not self._failed(r, verdicts[r.target_id]):
                self.accept(r, verdicts[r.target_id])
        m.draft_time += t1 - t0
        m.verify_time += time.perf_counter() - t1

    def propose(self, r: _Request) -> bool:
        """Start a round: submit the draft's proposals (a DraftTask on the draft sequence); False
        when there is no room for any (the round is a plain target step)."""
        task, history = r.task, len(r.record)
        if task.metrics.first_scheduled_time is None:
            task.metrics.first_scheduled_time = time.perf_counter()
        room = min(task.params.max_tokens - (history - task.start), self.pair.max_model_len - history) - 1
        num_draft = max(0, min(self.k, room))
        r.drafts, r.probs = [], None
        if not num_draft:
            return False
        # q rows only for sampled requests: a greedy draft is deterministic
        end, want_probs = history + num_draft, not task.params.greedy
        self.pair.draft.submit_task(
            r.draft_id, DraftTask(r.draft_id, task.params, task.seed, task.start, r.offset, end, want_probs)
        )
        r.offset += num_draft
        return True

    def take_proposal(self, r: _Request, proposal: DraftTask) -> None:
        r.drafts = self.pair.draft.token_ids(r.draft_id)[len(r.record) :]
        if proposal.want_probs:
            r.probs = self.verify_probs(torch.stack(proposal.probs))

    def verify(self, r: _Request) -> None:
        """Submit the target's one forward over [pending, drafts] (a VerifyTask on the target sequence)."""
        task = r.task
        if r.drafts:
            self.pair.target.append(r.target_id, r.drafts, commit=False)
        verify = VerifyTask(r.target_id, task.params, task.seed, r.offset, task.start, len(r.record), r.probs)
        self.pair.target.submit_task(r.target_id, verify)
        r.offset += 1

    @staticmethod
    def _failed(r: _Request, task: Union[DraftTask, VerifyTask]) -> bool:
        """Whether the engine failed the request's task (its sequence is aborted): it ends with the error."""
        if task.error is not None:
            r.error = task.error
        return r.error is not None

    def _drive(self, engine: LLMEngine, seq_ids: set[int], role: str) -> dict[int, object]:
        """Step engine until the tasks of seq_ids are done (or failed: the task holds the error);
        returns them by sequence id."""
        done: dict[int, object] = {}
        steps = engine.metrics.num_steps
        while len(done) < len(seq_ids):
            if not engine.has_unfinished():
                raise RuntimeError(f"the {role} engine stopped with {len(seq_ids) - len(done)} tasks not done")
            for out in engine.step():
                if isinstance(out, (DraftTask, VerifyTask)) and out.seq_id in seq_ids:
                    done[out.seq_id] = out
        if role == "draft":
            self.metrics.num_draft_forwards += engine.metrics.num_steps - steps
        else:
            self.metrics.num_target_forwards += engine.metrics.num_steps - steps
        return done

    def accept(self, r: _Request, verdict: VerifyTask) -> None:
        """Take the verified tokens one at a time until a stop condition, then settle both sequences
        on the kept history (the rest of the drafts rolled back, its last token pending)."""
        tokens, logprobs, num_accepted = verdict.result
        kept = 0
        for j, token in enumerate(tokens):
            kept += 1
            if self.pair.target.append_generated(r.record, token, logprobs[j] if logprobs is not None else None):
                break
        self.metrics.record_verify(len(r.drafts), num_accepted, kept)
        keep, last = len(r.record) - 1, r.record.token_ids[-1]
        self.pair.target.settle(r.target_id, keep, last)
        self.pair.draft.settle(r.draft_id, keep, last)
