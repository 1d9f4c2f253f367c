"""The synchronous engine: sequences by id, generate and score tasks, fork/truncate/free, and
step() that runs one batched forward and returns what finished."""
from __future__ import annotations

import math
import random
import time
from typing import Optional, Union

from . import validation
from .block_manager import BlockManager
from .config import EngineConfig, check_pool_fits, num_blocks_for_budget
from .detokenizer import check_stop_strings, decode_new_text, start_detokenizer
from .metrics import EngineMetrics, RequestMetrics
from .model_runner import ModelRunner
from .outputs import CompletionOutput, RequestFailed, RequestOutput, ScoreResult
from .sampling_params import SamplingParams
from .scheduler import Scheduler
from .sequence import DraftTask, GenerateTask, ScoreTask, Sequence, SequenceStatus, VerifyTask

Output = Union[RequestOutput, ScoreResult]


def _int64(seed: int) -> int:
    """Any int as the signed 64-bit value with the same low 64 bits (the kernels read uint64)."""
    seed &= (1 << 64) - 1
    return seed - (1 << 64) if seed >= 1 << 63 else seed


def _is_dynamic_rope(model_config) -> bool:
    rope_type = getattr(model_config, "rope_type", None)
    if rope_type is None:
        rope_type = (getattr(model_config, "rope_scaling", None) or {}).get("rope_type")
    return rope_type == "dynamic"


class LLMEngine:
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
        self.seqs: dict[int, Sequence] = {}
        self._next_id = 0
        self._seed_rng = random.Random(config.seed)
        self._ready: list[Output] = []  # finished while score() was driving the steps

    # ------------------------------------------------------------------ sequences
    def _idle(self, seq_id: int) -> Sequence:
        seq = self.seqs.get(seq_id)
        if seq is None:
            raise KeyError(f"seq_id {seq_id} is not a live sequence")
        if seq.status is not SequenceStatus.IDLE:
            raise RuntimeError(f"seq_id {seq_id} is busy with a {type(seq.task).__name__}")
        return seq

    # validation (validation.py) against this model's vocabulary and max_model_len
    def check_sequence(self, token_ids: list[int], name: str = "token_ids") -> list[int]:
        """token_ids as add_sequence() takes them, or ValueError (nothing is changed)."""
        return validation.check_sequence(token_ids, self.vocab_size, self.max_model_len, name)

    def check_params(self, params: SamplingParams, name: str = "params") -> None:
        """TypeError / ValueError unless params suit this model (stop ids in the vocabulary, and
        some token left to sample before min_tokens)."""
        validation.check_params(params, self.vocab_size, name, self.eos_token_ids)

    def check_request(self, prompt_token_ids: list[int], params: Optional[SamplingParams] = None, name: str = "prompt") -> list[int]:
        """Validate a one-shot add_request(prompt_token_ids, params) without submitting it (a
        front checks a whole batch before submitting any of it); returns the token ids."""
        token_ids = self.check_sequence(prompt_token_ids, name)
        self.check_params(SamplingParams() if params is None else params)
        return token_ids

    def check_score(self, num_history: int, token_ids: list[int], temperature: float, name: str = "token_ids") -> list[int]:
        """Validate scoring token_ids after num_history tokens at temperature; returns the ids."""
        return validation.check_score(num_history, token_ids, temperature, self.vocab_size, self.max_model_len, name)

    def add_sequence(self, token_ids: list[int]) -> int:
        """A new idle sequence holding token_ids (nothing is computed until a task runs on it)."""
        token_ids = self.check_sequence(token_ids)
        seq = Sequence(self._next_id, token_ids)
        self._next_id += 1
        self.seqs[seq.seq_id] = seq
        return seq.seq_id

    def token_ids(self, seq_id: int) -> list[int]:
        return list(self.seqs[seq_id].token_ids)

    def append(self, seq_id: int, token_ids: list[int], commit: bool = True) -> None:
        """Append tokens to an idle sequence; they are computed by its next task."""
        seq = self._idle(seq_id)
        token_ids = validation.check_tokens(token_ids, self.vocab_size, "token_ids")
        if len(seq) + len(token_ids) >= self.max_model_len:
            raise ValueError(f"appending {len(token_ids)} tokens to {len(seq)} exceeds max_model_len {self.max_model_len}")
        seq.append_tokens(token_ids, commit)

    def commit(self, seq_id: int) -> None:
        """Mark all of the sequence's tokens as verified: they may enter the prefix cache."""
        seq = self._idle(seq_id)
        seq.num_committed = len(seq)
        self.block_manager.cache_blocks(seq)

    def fork(self, seq_id: int) -> int:
        """A new idle sequence sharing seq_id's history and KV blocks (copy-on-write)."""
        seq = self._idle(seq_id)
        child = self.block_manager.fork(seq, self._next_id)
        self._next_id += 1
        self.seqs[child.seq_id] = child
        self.scheduler.update_idle(child)
        self.scheduler.update_idle(seq)
        return child.seq_id

    def truncate(self, seq_id: int, num_tokens: int) -> None:
        """Roll an idle sequence back to its first num_tokens tokens."""
        seq = self._idle(seq_id)
        self.block_manager.truncate(seq, num_tokens)
        self.scheduler.update_idle(seq)

    def free(self, seq_id: int) -> None:
        self.scheduler.remove(self._idle(seq_id))
        del self.seqs[seq_id]

    def abort(self, seq_id: int) -> None:
        """Drop a sequence whatever it is doing (its pending task produces no output)."""
        seq = self.seqs.pop(seq_id, None)
        if seq is None:
            raise KeyError(f"seq_id {seq_id} is not a live sequence")
        self.scheduler.abort(seq)
        # an output already made for it (an empty score) must not surface later
        self._drop_ready_score(seq_id)

    def cancel(self, seq_id: int, num_tokens: Optional[int] = None) -> None:
        """Undo a request whose caller gave up, whatever its state (queued, running, finished). With
        num_tokens None the request made the sequence: it is aborted. Otherwise the sequence is the
        caller's: it stays live and idle, its task dropped (no output) and its history rolled back to
        its first num_tokens tokens. A sequence no longer live (a finished one-shot request, a failed
        one) is left alone."""
        seq = self.seqs.get(seq_id)
        if seq is None:
            return
        if num_tokens is None:
            self.abort(seq_id)
            return
        if seq.task is not None:
            self.scheduler.drop_task(seq)
        self._drop_ready_score(seq_id)
        # even at its full length: blocks taken ahead for tokens not computed yet go back, and the
        # prefix blocks it was computing are no longer in flight (others would wait for them)
        self.truncate(seq_id, min(num_tokens, len(seq)))

    def _drop_ready_score(self, seq_id: int) -> None:
        """Forget a score made for seq_id but not yet returned (in place: score() extends the list)."""
        self._ready[:] = [out for out in self._ready if getattr(out, "seq_id", None) != seq_id]

    def is_live(self, seq_id: int) -> bool:
        """Whether seq_id names a sequence of this engine (not yet freed, aborted or released)."""
        return seq_id in self.seqs

    def num_tokens(self, seq_id: int) -> int:
        """Length of the sequence's history (no copy, unlike token_ids())."""
        return len(self.seqs[seq_id])

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
        seq.task = GenerateTask(params, _int64(seed), len(seq), release, commit, metrics)
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
        self._append_sampled(seq, token, logprob)
        return seq.task.finish_reason is not None

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
            task = seq.task
            if isinstance(task, GenerateTask) and task.metrics.first_scheduled_time is None:
                task.metrics.first_scheduled_time = t0
                task.metrics.num_cached_tokens = seq.num_computed_tokens  # prompt tokens not recomputed
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
        finished: list[Output] = []
        logprobs = out.sampled_logprobs
        for i, (seq, token) in enumerate(zip(out.sampled_seqs, out.sampled_ids)):
            try:
                if isinstance(seq.task, DraftTask):
                    seq.task.add(seq, token, out.sampled_probs[i] if out.sampled_probs is not None else None)
                    continue
                self._append_sampled(seq, token, logprobs[i] if logprobs is not None else None)
            except Exception as err:  # e.g. the tokenizer failing on a stop-string check
                failed.setdefault(seq.seq_id, err)
        for seq, result in out.verified:
            seq.task.result = result
        for seq, token_logprobs, nll in out.scores:
            seq.task.token_logprobs.extend(token_logprobs)
            seq.task.nll_sum += nll * len(token_logprobs)
        now = time.perf_counter()
        for seq in batch.seqs:
            task = seq.task
            if seq.seq_id in failed:
                finished.append(self._fail(seq, failed[seq.seq_id]))
                continue
            try:
                self.block_manager.cache_blocks(seq)
                if isinstance(task, GenerateTask) and task.finish_reason is not None:
                    task.metrics.finished_time = now
                    finished.append(self._finish_generation(seq))
                elif isinstance(task, ScoreTask) and seq.num_computed_tokens == seq.feed_end:
                    finished.append(self._finish_score(seq))
                elif isinstance(task, (DraftTask, VerifyTask)) and task.done(seq):
                    self.scheduler.finish(seq)
                    finished.append(task)  # speculative.py reads the proposals / the verdict off the task
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
        task = seq.task
        if isinstance(task, GenerateTask):
            task.metrics.finished_time = time.perf_counter()
            prompt_ids = seq.token_ids[: task.start] if task.release else None
            completion = CompletionOutput(0, "", [], [] if task.params.logprobs else None, "error", None)
            out: Output = RequestOutput(seq.seq_id, None, prompt_ids, [completion], True, task.metrics, task.start, err)
        elif isinstance(task, ScoreTask):
            out = ScoreResult(seq.seq_id, [], math.nan, err)
        else:  # DraftTask / VerifyTask: speculative.py finds the error on the task
            task.error = err
            out = task
        if self.seqs.get(seq.seq_id) is seq:
            self.abort(seq.seq_id)
        return out

    def _append_sampled(self, seq: Sequence, token: int, logprob: Optional[float]) -> None:
        task: GenerateTask = seq.task
        params = task.params
        if task.num_sampled == 0:
            task.metrics.first_token_time = time.perf_counter()
        seq.append_tokens([token], task.commit)
        task.num_sampled += 1
        if params.logprobs:
            task.logprobs.append(logprob)
        num_generated = len(seq) - task.start
        can_stop = num_generated >= params.min_tokens
        if params.stop:
            new_text = decode_new_text(self.tokenizer, seq)
            if not can_stop:  # stop strings count only from min_tokens on
                task.text += new_text
            elif (stop := check_stop_strings(task, new_text)) is not None:
                task.finish_reason, task.stop_reason = "stop", stop
                return
        if can_stop and token in params.stop_token_ids:
            task.finish_reason, task.stop_reason = "stop", token
        elif can_stop and not params.ignore_eos and token in self.eos_token_ids:
            task.finish_reason, task.stop_reason = "stop", token
        elif num_generated >= params.max_tokens or len(seq) >= self.max_model_len:
            task.finish_reason = "length"

    def _finish_generation(self, seq: Sequence) -> RequestOutput:
        task: GenerateTask = seq.task
        output_ids = seq.token_ids[task.start :]
        if not (params := task.params).stop or not isinstance(task.stop_reason, str):
            task.text = self.tokenizer.decode(output_ids, skip_special_tokens=params.skip_special_tokens)
        task.metrics.num_generated_tokens = len(output_ids)
        completion = CompletionOutput(
            0, task.text, output_ids, list(task.logprobs) if params.logprobs else None, task.finish_reason, task.stop_reason
        )
        # A kept sequence's history is not copied into every output (a policy stepping a long trace
        # would pay O(L^2)): num_prompt_tokens gives its length, engine.token_ids() the tokens.
        prompt_ids = seq.token_ids[: task.start] if task.release else None
        output = RequestOutput(seq.seq_id, None, prompt_ids, [completion], True, task.metrics, task.start)
        self.scheduler.finish(seq)
        if task.release:
            self.free(seq.seq_id)
        return output

    def _finish_score(self, seq: Sequence) -> ScoreResult:
        task: ScoreTask = seq.task
        result = ScoreResult(seq.seq_id, list(task.token_logprobs), task.nll_sum / task.num_tokens)
        self.scheduler.finish(seq)
        if not task.keep:
            self.truncate(seq.seq_id, task.start)
        elif task.commit:
            self.commit(seq.seq_id)
        return result
