"""The synchronous engine: the sequences (sequence_store.py: add, fork, truncate, free, abort), the
tasks submitted on them (generate, score, and speculative decoding's draft and verify: tasks.py),
and step(), which schedules a batch, runs one forward (model_runner.py) and returns what finished."""
from __future__ import annotations

import math
import random
import time
from typing import Optional, Union

from . import validation
from .block_manager import BlockManager
from .config import EngineConfig, check_pool_fits, num_blocks_for_budget
from .detokenizer import start_detokenizer
from .metrics import EngineMetrics, RequestMetrics
from .model_runner import ModelRunner
from .outputs import RequestFailed, RequestOutput, ScoreResult
from .sampling_params import SamplingParams
from .scheduler import Scheduler
from .sequence import Sequence
from .sequence_store import SequenceStore
from .tasks import DraftTask, GenerateTask, ScoreTask, VerifyTask, as_int64

Output = Union[RequestOutput, ScoreResult]


def _is_dynamic_rope(model_config) -> bool:
    rope_type = getattr(model_config, "rope_type", None)
    if rope_type is None:
        rope_type = (getattr(model_config, "rope_scaling", None) or {}).get("rope_type")
    return rope_type == "dynamic"


class LLMEngine(SequenceStore):
    """Fault isolation: requests are validated against the model when submitted (token and stop
    ids in the vocabulary, lengths, finite scoring temperatures; a top_k >= the vocabulary keeps
    every token, like 0). If a step still fails (the forward raises, or a row's logits or scores are
    not finite), the requests of that step (for non-finite values, just the rows' requests) fail:
    step() returns, for each, a RequestOutput with finish_reason 'error' (or a ScoreResult, or the
    DraftTask / VerifyTask) whose `error` holds the exception, under the same kind and sequence id
    as a success; the failed sequence is aborted (blocks freed, is_live() False) and the engine
    serves the others and new requests."""

    def __init__(self, model, tokenizer, config: Optional[EngineConfig] = None) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.config = config = config or EngineConfig()
        limit = model.config.max_position_embeddings
        if config.max_model_len is not None and config.max_model_len > limit and not _is_dynamic_rope(model.config):
            raise ValueError(
                f"max_model_len={config.max_model_len} exceeds the model's position limit "
                f"(max_position_embeddings={limit})"
            )
        if config.num_blocks:
            num_blocks = config.num_blocks
            check_pool_fits(
                num_blocks * config.block_size * int(model.bytes_per_token(model.dtype)),
                model.lm_head_weight.device, f"num_blocks={num_blocks}",
            )
        else:
            num_blocks = num_blocks_for_budget([model], config.kv_cache_gb, config.block_size)[0]
        self.vocab_size = model.config.vocab_size
        self.eos_token_ids = sorted(set(model.config.eos_token_ids) | set(getattr(tokenizer, "eos_token_ids", [])))
        self.max_model_len = min(config.max_model_len or model.config.max_position_embeddings, num_blocks * config.block_size)
        self.metrics = EngineMetrics()
        self.block_manager = BlockManager(num_blocks, config.block_size, config.enable_prefix_caching)
        self.scheduler = Scheduler(self.block_manager, config.max_num_batched_tokens, config.max_num_seqs, self.metrics)
        self.runner = ModelRunner(model, num_blocks, config.block_size, self.eos_token_ids, config.score_chunk)
        SequenceStore.__init__(self)
        self._seed_rng = random.Random(config.seed)
        self._ready: list[Output] = []  # finished while score() was driving the steps

    # ------------------------------------------------------------------ tasks
    def add_request(
        self,
        prompt_token_ids: Optional[list[int]] = None,
        params: Optional[SamplingParams] = None,
        *,
        seq_id: Optional[int] = None,
        release: Optional[bool] = None,
        commit: bool = True,
    ) -> int:
        """Generate after prompt_token_ids (a new sequence, freed when done unless release=False)
        or after the history of the idle sequence seq_id (kept when done unless release=True; a
        given prompt_token_ids is appended first). commit=False keeps the generated tokens out of
        the prefix cache until commit(). Returns the sequence id, also RequestOutput.request_id."""
        params = SamplingParams() if params is None else params
        self.check_params(params)
        if seq_id is None:
            if prompt_token_ids is None:
                raise ValueError("give prompt_token_ids or seq_id")
            seq = self.seqs[self.add_sequence(prompt_token_ids)]
            release = True if release is None else release
        else:
            seq = self._idle(seq_id)
            if prompt_token_ids:
                self.append(seq_id, prompt_token_ids)
            release = False if release is None else release
        if len(seq) >= self.max_model_len:
            raise ValueError(f"sequence {seq.seq_id} already holds max_model_len={self.max_model_len} tokens")
        seed = params.seed if params.seed is not None else self._seed_rng.getrandbits(63)
        metrics = RequestMetrics(num_prompt_tokens=len(seq))
        seq.task = GenerateTask(params, as_int64(seed), len(seq), release, commit, metrics)
        start_detokenizer(seq.task)
        self.scheduler.add(seq)
        return seq.seq_id

    def submit_score(
        self, seq_id: int, token_ids: list[int], keep: bool = True, temperature: float = 1.0, commit: Optional[bool] = None
    ) -> None:
        """Queue scoring of token_ids after the history of the idle sequence seq_id; the
        ScoreResult comes out of step(). keep=False rolls the sequence back to its history;
        keep=True keeps the tokens (their last one pending), committed unless commit=False, in
        which case they stay out of the prefix cache until commit() (or go with truncate())."""
        seq = self._idle(seq_id)
        token_ids = self.check_score(len(seq), token_ids, temperature)
        if not token_ids:
            self._ready.append(ScoreResult(seq_id, [], math.nan))
            return
        seq.task = ScoreTask(len(seq), len(token_ids), keep, keep if commit is None else commit, float(temperature))
        seq.append_tokens(token_ids, commit=False)
        self.scheduler.add(seq)

    def score(
        self, seq_id: int, token_ids: list[int], keep: bool = True, temperature: float = 1.0, commit: Optional[bool] = None
    ) -> ScoreResult:
        """submit_score() and run steps (other requests progress too) until its result is ready."""
        self.submit_score(seq_id, token_ids, keep, temperature, commit)
        while True:
            for i, out in enumerate(self._ready):
                if isinstance(out, ScoreResult) and out.seq_id == seq_id:
                    out = self._ready.pop(i)
                    if out.error is not None:
                        raise RequestFailed(f"scoring sequence {seq_id}", [(seq_id, out.error)])
                    return out
            self._ready.extend(self._step())

    # ------------------------------------------------------------------ speculative decoding hooks
    def submit_task(self, seq_id: int, task: Union[DraftTask, VerifyTask]) -> None:
        """Queue a DraftTask or VerifyTask (speculative.py) on an idle sequence; step() returns the
        task itself once it is done."""
        seq = self._idle(seq_id)
        seq.task = task
        self.scheduler.add(seq)

    def settle(self, seq_id: int, num_tokens: int, token: int, commit: bool = True) -> None:
        """Make an idle sequence's history token_ids[:num_tokens] + [token], token pending: the
        kept tokens keep their KV, the rest is rolled back; token may replace an uncommitted one.
        commit marks the whole history verified (it may enter the prefix cache)."""
        seq = self._idle(seq_id)
        validation.check_tokens([token], self.vocab_size, "token")
        if not 1 <= num_tokens <= len(seq):
            raise ValueError(f"num_tokens must be in [1, {len(seq)}], got {num_tokens}")
        if num_tokens < len(seq):
            self.block_manager.truncate(seq, num_tokens + 1)  # token_ids[num_tokens] is now uncomputed
            if seq.token_ids[num_tokens] != token:
                if num_tokens < seq.num_committed:
                    raise ValueError(f"token {num_tokens} of sequence {seq_id} is committed: it cannot be replaced")
                seq.token_ids[num_tokens] = token
        else:
            seq.append_tokens([token], commit=False)
        if commit:
            seq.num_committed = len(seq)
            self.block_manager.cache_blocks(seq)
        self.scheduler.update_idle(seq)

    def append_generated(self, seq: Sequence, token: int, logprob: Optional[float]) -> bool:
        """Append one token to a sequence with a GenerateTask (speculative decoding's record of a
        request, not one of this engine's) under plain generation's stop rules; True once it stops."""
        seq.task.take_token(self, seq, token, logprob)
        return seq.task.finish_reason is not None

    @property
    def max_num_seqs(self) -> int:
        """Most sequences one step runs."""
        return self.scheduler.max_num_seqs

    def has_unfinished(self) -> bool:
        return bool(self._ready) or self.scheduler.has_work()

    # ------------------------------------------------------------------ one step
    def step(self) -> list[Output]:
        """Run one batched forward; return the requests and scores that finished."""
        ready, self._ready = self._ready, []
        return ready + self._step()

    def _step(self) -> list[Output]:
        batch = self.scheduler.schedule()
        if not batch:
            return []
        t0 = time.perf_counter()
        for seq in batch.seqs:
            seq.task.on_scheduled(seq, t0)
        try:
            out = self.runner.run(batch)
        except Exception as err:  # the whole step failed: its requests fail, the engine goes on
            finished = [self._fail(seq, err) for seq in batch.seqs]
            self.metrics.record_step(time.perf_counter() - t0, batch.total_tokens, self.block_manager.num_used_blocks)
            return finished
        finally:  # the forward that copied the partial tails has run (the only place they are released)
            self.block_manager.copies_done()
        failed: dict[int, BaseException] = {seq.seq_id: err for seq, err in out.failed}
        for seq, n in zip(batch.seqs, batch.num_tokens):
            seq.num_computed_tokens += n
        logprobs, probs = out.sampled_logprobs, out.sampled_probs
        for i, (seq, token) in enumerate(zip(out.sampled_seqs, out.sampled_ids)):
            try:
                seq.task.take_token(self, seq, token, logprobs[i] if logprobs is not None else None,
                                    probs[i] if probs is not None else None)
            except Exception as err:  # e.g. the tokenizer failing on a stop-string check
                failed.setdefault(seq.seq_id, err)
        for seq, result in out.verified:
            seq.task.result = result
        for seq, token_logprobs, nll in out.scores:
            seq.task.take_scores(token_logprobs, nll)
        finished: list[Output] = []
        for seq in batch.seqs:
            task = seq.task
            if seq.seq_id in failed:
                finished.append(self._fail(seq, failed[seq.seq_id]))
                continue
            try:
                self.block_manager.cache_blocks(seq)
                if task.is_finished(seq):
                    self.scheduler.finish(seq)
                    finished.append(task.finish(self, seq))  # its output (tasks.py), the sequence freed if one-shot
            except Exception as err:
                seq.task = seq.task or task
                finished.append(self._fail(seq, err))
        bm = self.block_manager
        self.metrics.num_prefix_queries, self.metrics.num_prefix_hits = bm.num_prefix_queries, bm.num_prefix_hits
        self.metrics.num_tokens_sampled += len(out.sampled_ids)
        self.metrics.num_tokens_scored += sum(len(s[1]) for s in out.scores)
        self.metrics.record_step(time.perf_counter() - t0, batch.total_tokens, self.block_manager.num_used_blocks)
        return finished

    def _fail(self, seq: Sequence, err: BaseException) -> Output:
        """The failure output of seq's task (same kind and id as its success would have); the
        sequence is aborted: its task dropped, its blocks freed, its id no longer live."""
        out = seq.task.failure(seq, err)
        if self.seqs.get(seq.seq_id) is seq:
            self.abort(seq.seq_id)
        return out
