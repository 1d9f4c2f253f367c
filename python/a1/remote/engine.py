"""RemoteBackend: the part of LLMEngine the A1 policy uses, over a vLLM /
SGLang / llama.cpp / a1 serve server, or over several replicas of one model (routing.py).
Histories live here as token-id lists and travel as token ids (re-tokenized only by servers that
take text prompts, see text_spans.py): every request carries its sequence's whole history and the
server's prefix cache reuses what it has seen, so rolling back is free (the next request sends the
shorter history) and any replica can continue any sequence. Requests run concurrently on the
transport's loop; step() waits (bounded) until one ends and returns what finished, like
LLMEngine.step() returns what a batch finished; a request whose replica went down is re-sent to
another one before anything comes out of step()."""
from __future__ import annotations

import concurrent.futures
import math
import time
import warnings
from dataclasses import replace
from typing import Optional, Sequence, Union

from a1.engine.outputs import ScoreResult
from a1.engine.sampling_params import SamplingParams

from .config import PROTOCOLS, RemoteConfig
from .context_errors import name_context
from .errors import RemoteError, RemoteProtocolError, RemoteRequestError, RemoteUnavailableError
from .finish import Finishing
from .metrics import RemoteMetrics
from .replica import Replica, connect
from .routing import Router, check_urls
from .sequences import Output, Pending, SequenceTable
from .tokenizer import ClientTokenizer, load_tokenizer
from .transport import Transport


class RemoteBackend(Finishing, SequenceTable):
    """One model's backend over its server(s): the subset of LLMEngine the policy uses (the
    embedded engine is the other implementation). url: the server's base URL, or a list of
    replicas' URLs (see routing.py). tokenizer: a path / built-in name / tokenizer of the served
    model (see tokenizer.load_tokenizer). protocol: "auto" (probe each server), "openai" or
    "sglang". model: the served model the requests name (default: each server's first).
    max_model_len: default the servers' (the smallest), else the tokenizer config's. transport:
    shared with the other engine of a pair (RemoteLLM does it). check_alignment: run the start-up
    probe on each server. A replica that cannot be reached at start-up is left out (with a
    warning) while another one answers."""

    def __init__(self, url: Union[str, Sequence[str]], tokenizer, protocol: str = "auto", *,
                 model: Optional[str] = None, max_model_len: Optional[int] = None,
                 config: Optional[RemoteConfig] = None, transport: Optional[Transport] = None,
                 check_alignment: bool = True) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
        urls = check_urls(url)
        if max_model_len is not None and (isinstance(max_model_len, bool) or not isinstance(max_model_len, int)
                                          or max_model_len < 2):
            raise ValueError(f"max_model_len must be an int >= 2 or None, got {max_model_len!r}")
        loaded = tokenizer if isinstance(tokenizer, ClientTokenizer) else load_tokenizer(tokenizer)
        self.tokenizer = loaded.tokenizer
        self.eos_token_ids = sorted(set(loaded.eos_token_ids))
        self.vocab_size = loaded.vocab_size
        self._owns_transport = transport is None
        self.transport = transport or Transport(config)
        self.config = self.transport.config
        try:
            self.router = Router(self._connect(urls, loaded, protocol, model, check_alignment))
            first = self.router.replicas[0]
            self.name = first.name if len(self.router.replicas) == 1 else \
                f"{first.info.model or 'the model'} on {len(self.router.replicas)} replicas"
            limits = [r.info.max_model_len for r in self.router.replicas if r.info.max_model_len]
            self.max_model_len = max_model_len or (min(limits) if limits else None) or loaded.max_position_embeddings
            if not self.max_model_len:
                raise ValueError(f"max_model_len: {first.url} does not say its context length; give max_model_len")
            self.metrics = RemoteMetrics()
            SequenceTable.__init__(self, self.vocab_size, self.max_model_len)
            self.transport.engines.add(self)
        except BaseException:
            self.close()
            raise

    def _connect(self, urls: list[str], loaded: ClientTokenizer, protocol: str, model: Optional[str],
                 check_alignment: bool) -> list[Replica]:
        replicas, unreachable = [], []
        for url in urls:
            try:
                replicas.append(connect(url, loaded, protocol, model, self.transport, check_alignment))
            except RemoteUnavailableError as err:
                unreachable.append(err)
        if not replicas:
            raise unreachable[0]
        for err in unreachable:
            warnings.warn(f"left out of the run: {err}")
        return replicas

    # the first replica's, for code and tests that drive one server
    url = property(lambda self: self.router.replicas[0].url)
    protocol = property(lambda self: self.router.replicas[0].protocol)
    alignment = property(lambda self: self.router.replicas[0].alignment)
    model = property(lambda self: self.router.replicas[0].info.model)

    @property
    def replicas(self) -> list[Replica]:
        return self.router.replicas

    def close(self) -> None:
        if self._owns_transport:
            self.transport.close()

    # ------------------------------------------------------------------ requests
    def add_request(self, prompt_token_ids: Optional[list[int]] = None, params: Optional[SamplingParams] = None, *,
                    seq_id: Optional[int] = None, release: Optional[bool] = None, commit: bool = True) -> int:
        """LLMEngine.add_request: generate after a new sequence (released when done unless
        release=False) or after the idle sequence seq_id (kept unless release=True)."""
        params = params or SamplingParams()
        if seq_id is None:
            if prompt_token_ids is None:
                raise ValueError("give prompt_token_ids or seq_id")
            seq_id = self.add_sequence(prompt_token_ids)
            release = True if release is None else release
        else:
            self._idle(seq_id)
            if prompt_token_ids:
                self.append(seq_id, prompt_token_ids)
            release = False if release is None else release
        history = self.seqs[seq_id]
        if len(history) >= self.max_model_len:
            raise ValueError(f"sequence {seq_id} already holds max_model_len={self.max_model_len} tokens")
        room = self.max_model_len - len(history)  # servers refuse prompt + max_tokens > max_model_len
        sent = replace(params, max_tokens=min(params.max_tokens, room), min_tokens=min(params.min_tokens, room))
        pending = Pending("gen", None, len(history), params, release, new_tokens=sent.max_tokens)
        pending.build = lambda p: (p.generate_path, p.generate_request(history, sent), "gen")
        self._send(seq_id, pending)
        return seq_id

    def submit_score(self, seq_id: int, token_ids: list[int], keep: bool = True, temperature: float = 1.0,
                     commit: Optional[bool] = None) -> None:
        """LLMEngine.submit_score: the log-prob of every token_ids[i] (the first included) after
        the history; keep=False rolls the sequence back when the result is in."""
        seq = self._idle(seq_id)
        token_ids = self._check_tokens(token_ids, "token_ids")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if temperature != 1.0:
            raise ValueError(f"temperature must be 1.0 for a remote engine (servers return raw log-probs), got {temperature}")
        if len(seq) + len(token_ids) >= self.max_model_len:
            raise ValueError(f"scoring {len(token_ids)} tokens after {len(seq)} leaves the server no room for its one "
                             f"generated token below max_model_len {self.max_model_len}")
        if not token_ids:
            self._ready.append(ScoreResult(seq_id, [], math.nan))
            return
        history_len = len(seq)
        ids = seq + token_ids
        seq.extend(token_ids)
        pending = Pending("score", None, history_len, keep=keep, new_tokens=len(token_ids) + 1)
        pending.build = lambda p: (p.score_path, p.score_request(ids, history_len), "score")
        self._send(seq_id, pending)

    def fork(self, seq_id: int) -> int:
        child = super().fork(seq_id)
        self.router.inherit(child, seq_id)
        return child

    def _send(self, seq_id: int, pending: Pending) -> None:
        """Send pending's request to its sequence's replica; one that cannot be written for that
        server fails like a request (it comes out of step() as a failed request of its sample)."""
        replica = self.router.replica_for(seq_id, self.seqs)
        pending.replica = replica
        pending.submitted = pending.submitted or time.perf_counter()
        try:
            path, body, kind = pending.build(replica.protocol)
        except RemoteProtocolError as err:
            pending.future = concurrent.futures.Future()
            pending.future.set_exception(err)
        else:
            pending.future = self.transport.submit("POST", replica.url + path, body, kind)
            self.metrics.num_tokens_sent += len(self.seqs[seq_id])
        self._busy[seq_id] = pending

    def has_unfinished(self) -> bool:
        return bool(self._ready or self._busy)

    # ------------------------------------------------------------------ step
    def step(self) -> list[Output]:
        """Wait until a request of this engine or of one sharing its transport has ended (at most
        config.wait_limit() seconds); return this engine's finished outputs (maybe none, when only
        the other engine's request ended or a request was re-sent). A failed request raises
        RemoteRequestError naming every failed request of the engines sharing the transport,
        whose state is then reset."""
        self.metrics.num_steps += 1
        self._resend_stranded()
        if not self._ready and self._busy:
            self._wait()
        outputs, self._ready = self._ready, []
        failed = []
        for seq_id in [s for s, p in self._busy.items() if p.future.done()]:
            pending = self._busy[seq_id]
            if not pending.future.done():  # re-sent by a fail-over earlier in this loop
                continue
            try:
                out = self._advance(seq_id, pending)
            except RemoteError as err:
                if self._fail_over(seq_id, pending, err):
                    continue
                del self._busy[seq_id]
                self.metrics.num_failures += 1
                failed.append((self, pending.kind, seq_id, self._named(pending, err)))
                continue
            if out is not None:
                del self._busy[seq_id]
                outputs.append(out)
        if failed:
            for engine in list(self.transport.engines):
                if engine is not self:
                    failed.extend(engine._failed_requests())
            for engine in list(self.transport.engines):
                engine.reset()
            raise RemoteRequestError(failed)
        return outputs

    def _fail_over(self, seq_id: int, pending: Pending, err: RemoteError) -> bool:
        """Re-send pending's request to another replica when err took its replica out."""
        if pending.replica is None or not self.router.reroutes(pending.replica, err):
            return False
        self.metrics.num_failovers += 1
        self._send(seq_id, pending)
        self._resend_stranded()
        return True

    def _resend_stranded(self) -> None:
        """Requests still in flight on a replica taken out (by this engine or one sharing the
        transport) go to a live one now rather than after their own timeouts."""
        if not self.router.live():
            return
        for seq_id, pending in list(self._busy.items()):
            if pending.replica is not None and not pending.replica.alive and not pending.future.done():
                pending.future.cancel()
                self.metrics.num_failovers += 1
                self._send(seq_id, pending)

    def _named(self, pending: Pending, err: RemoteError) -> RemoteError:
        replica = pending.replica
        where = replica.name if replica is not None else self.name
        context = replica.info.context_length if replica is not None else None
        return name_context(err, where, context, pending.history_len, pending.new_tokens, self.max_model_len)

    def _wait(self) -> None:
        limit, start = self.config.wait_limit(), time.perf_counter()
        engines = list(self.transport.engines)
        with self.transport.done:
            while not any(e._ready or any(p.future.done() for p in e._busy.values()) for e in engines):
                remaining = limit - (time.perf_counter() - start)
                if remaining <= 0:
                    busy = sorted(self._busy)
                    raise RemoteUnavailableError(f"{self.name}: no request ended within {limit:.0f} s (sequences {busy})")
                self.transport.done.wait(min(remaining, 1.0))
        self.metrics.total_wait_time += time.perf_counter() - start

    def _failed_requests(self) -> list:
        failed = []
        for seq_id, pending in self._busy.items():
            if pending.future.done() and not pending.future.cancelled() and pending.future.exception() is not None:
                failed.append((self, pending.kind, seq_id, self._named(pending, pending.future.exception())))
        return failed

    def reset(self) -> None:
        """Cancel every request in flight and forget every sequence (after a failed run)."""
        for pending in self._busy.values():
            pending.future.cancel()
        self._busy.clear()
        self._ready.clear()
        self.seqs.clear()
        self.router.placement.clear()

    # ------------------------------------------------------------------ blocking helper
    def score(self, seq_id: int, token_ids: list[int], keep: bool = True, temperature: float = 1.0,
              commit: Optional[bool] = None) -> ScoreResult:
        """submit_score() and wait for its result (other requests' outputs stay for step())."""
        self.submit_score(seq_id, token_ids, keep, temperature, commit)
        for i, out in enumerate(self._ready):
            if isinstance(out, ScoreResult) and out.seq_id == seq_id:
                return self._ready.pop(i)
        pending = self._busy[seq_id]
        while True:
            concurrent.futures.wait([pending.future], self.config.wait_limit())
            if not pending.future.done():
                raise RemoteUnavailableError(f"{self.name}: the score of sequence {seq_id} did not end in time")
            try:
                result = self._advance(seq_id, pending)
            except RemoteError as err:
                if self._fail_over(seq_id, pending, err):
                    continue
                del self._busy[seq_id]
                raise RemoteRequestError([(self, "score", seq_id, self._named(pending, err))]) from err
            del self._busy[seq_id]
            return result
