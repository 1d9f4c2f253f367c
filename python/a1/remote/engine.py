"""RemoteBackend (alias RemoteEngine): the part of LLMEngine the A1 policy uses, over a vLLM /
SGLang / llama.cpp / a1 serve server. Histories live here as token-id lists and travel as token ids
(re-tokenized only by servers that take text prompts, see text_spans.py):
every request carries its sequence's whole history and the server's prefix cache reuses what it
has seen, so rolling back is free (the next request sends the shorter history). Requests run
concurrently on the transport's loop; step() waits (bounded) until one ends and returns what
finished, like LLMEngine.step() returns what a batch finished."""
from __future__ import annotations

import concurrent.futures
import math
import time
from dataclasses import replace
from typing import Callable, Optional

from a1.engine.metrics import RequestMetrics
from a1.engine.outputs import CompletionOutput, RequestOutput, ScoreResult
from a1.engine.sampling_params import SamplingParams

from .config import PROTOCOLS, RemoteConfig
from .errors import RemoteError, RemoteProtocolError, RemoteRequestError, RemoteUnavailableError
from .metrics import RemoteMetrics
from .openai_protocol import OpenAIProtocol
from .probe import identify, probe_alignment
from .protocol import Generation
from .sequences import Output, Pending, SequenceTable
from .sglang_protocol import SGLangProtocol
from .stops import trim
from .tokenizer import ClientTokenizer, load_tokenizer
from .transport import Transport

class RemoteBackend(SequenceTable):
    """One model's backend over a server: the subset of LLMEngine the policy uses (the embedded
    engine is the other implementation). url: the server's base URL. tokenizer: a path / built-in name / tokenizer of the served
    model (see tokenizer.load_tokenizer). protocol: "auto" (probe the server), "openai" or
    "sglang". model: the served model the requests name (default: the server's first).
    max_model_len: default the server's, else the tokenizer config's. transport: shared with the
    other engine of a pair (RemoteLLM does it). check_alignment: run the start-up probe."""

    def __init__(self, url: str, tokenizer, protocol: str = "auto", *, model: Optional[str] = None,
                 max_model_len: Optional[int] = None, config: Optional[RemoteConfig] = None,
                 transport: Optional[Transport] = None, check_alignment: bool = True) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError(f"url must be an http(s) URL, got {url!r}")
        loaded = tokenizer if isinstance(tokenizer, ClientTokenizer) else load_tokenizer(tokenizer)
        self.url, self.tokenizer = url.rstrip("/"), loaded.tokenizer
        self.eos_token_ids = sorted(set(loaded.eos_token_ids))
        self.vocab_size = loaded.vocab_size
        self._owns_transport = transport is None
        self.transport = transport or Transport(config)
        self.config = self.transport.config
        try:
            info = identify(self.transport, self.url, protocol, model)
            self.model = info.model
            self.name = self.url + (f" ({info.model})" if info.model else "")
            if info.protocol == "sglang":
                self.protocol = SGLangProtocol(self.name, info.model if model is not None else None, self.vocab_size)
            else:
                self.protocol = OpenAIProtocol(self.name, info.model, self.tokenizer, self.vocab_size)
                self.protocol.accepts_token_ids(self.transport, self.url)
                self.protocol.find_dialect(self.transport, self.url)
            self.max_model_len = max_model_len or info.max_model_len or loaded.max_position_embeddings
            if not self.max_model_len:
                raise ValueError(f"max_model_len: {self.url} does not say its context length; give max_model_len")
            self.metrics = RemoteMetrics()
            SequenceTable.__init__(self, self.vocab_size, self.max_model_len)
            self.transport.engines.add(self)
            self.alignment = probe_alignment(self) if check_alignment else "not checked"
        except BaseException:
            self.close()
            raise

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
        pending = Pending("gen", None, len(history), params, release)
        self._submit(seq_id, self.protocol.generate_path, lambda: self.protocol.generate_request(history, sent), pending)
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
        pending = Pending("score", None, history_len, keep=keep)
        self._submit(seq_id, self.protocol.score_path, lambda: self.protocol.score_request(ids, history_len), pending)

    def _submit(self, seq_id: int, path: str, payload: Callable[[], dict], pending: Pending) -> None:
        """Send the request; one that cannot be written for this server fails like a request (it
        comes out of step() as a failed request of its sample)."""
        pending.submitted = time.perf_counter()
        try:
            body = payload()
        except RemoteProtocolError as err:
            pending.future = concurrent.futures.Future()
            pending.future.set_exception(err)
        else:
            pending.future = self.transport.submit("POST", self.url + path, body, pending.kind)
            self.metrics.num_tokens_sent += len(self.seqs[seq_id])
        self._busy[seq_id] = pending

    def has_unfinished(self) -> bool:
        return bool(self._ready or self._busy)

    # ------------------------------------------------------------------ step
    def step(self) -> list[Output]:
        """Wait until a request of this engine or of one sharing its transport has ended (at most
        config.wait_limit() seconds); return this engine's finished outputs (maybe none, when only
        the other engine's request ended). A failed request raises RemoteRequestError naming
        every failed request of the engines sharing the transport, whose state is then reset."""
        self.metrics.num_steps += 1
        if not self._ready and self._busy:
            self._wait()
        outputs, self._ready = self._ready, []
        failed = []
        for seq_id in [s for s, p in self._busy.items() if p.future.done()]:
            pending = self._busy.pop(seq_id)
            try:
                outputs.append(self._finish(seq_id, pending))
            except RemoteError as err:
                self.metrics.num_failures += 1
                failed.append((self, pending.kind, seq_id, err))
        if failed:
            for engine in list(self.transport.engines):
                if engine is not self:
                    failed.extend(engine._failed_requests())
            for engine in list(self.transport.engines):
                engine.reset()
            raise RemoteRequestError(failed)
        return outputs

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
                failed.append((self, pending.kind, seq_id, pending.future.exception()))
        return failed

    def reset(self) -> None:
        """Cancel every request in flight and forget every sequence (after a failed run)."""
        for pending in self._busy.values():
            pending.future.cancel()
        self._busy.clear()
        self._ready.clear()
        self.seqs.clear()

    def _finish(self, seq_id: int, pending: Pending) -> Output:
        reply = pending.future.result()  # raises the request's RemoteError
        self.metrics.num_retries += reply.attempts - 1
        self.metrics.total_request_time += reply.seconds
        if pending.kind == "score":
            return self._finish_score(seq_id, pending, reply.body)
        return self._finish_generation(seq_id, pending, reply.body)

    def _finish_score(self, seq_id: int, pending: Pending, body) -> ScoreResult:
        seq = self.seqs[seq_id]
        values = self.protocol.parse_score(body, seq, pending.history_len)
        if not pending.keep:
            del seq[pending.history_len:]
        self.metrics.num_scores += 1
        self.metrics.num_tokens_scored += len(values)
        return ScoreResult(seq_id, values, -sum(values) / len(values))

    def _finish_generation(self, seq_id: int, pending: Pending, body) -> RequestOutput:
        params, seq = pending.params, self.seqs[seq_id]
        generated = self.protocol.parse_generation(body, params)
        cut = trim(self.tokenizer, self.eos_token_ids, seq, generated.token_ids, params, self.max_model_len)
        token_ids = generated.token_ids[: cut.num_tokens]
        logprobs = generated.logprobs[: cut.num_tokens] if params.logprobs else None
        finish, stop_reason = cut.finish_reason, cut.stop_reason
        if finish is None:
            finish, stop_reason, token_ids = self._server_stop(generated, token_ids, params)
            if logprobs is not None and len(logprobs) < len(token_ids):  # an EOS the server did not return
                logprobs = logprobs + self._last_logprob(seq + token_ids)
        text = cut.text if cut.text is not None else self.tokenizer.decode(
            token_ids, skip_special_tokens=params.skip_special_tokens)
        self.metrics.num_generations += 1
        self.metrics.num_tokens_sampled += len(token_ids)
        self.metrics.num_tokens_dropped += len(generated.token_ids) - cut.num_tokens
        prompt_ids = list(seq) if pending.release else None
        seq.extend(token_ids)
        metrics = RequestMetrics(arrival_time=pending.submitted, num_prompt_tokens=pending.history_len,
                                 num_generated_tokens=len(token_ids), finished_time=time.perf_counter())
        completion = CompletionOutput(0, text, token_ids, logprobs, finish, stop_reason)
        if pending.release:
            del self.seqs[seq_id]
        return RequestOutput(seq_id, None, prompt_ids, [completion], True, metrics, pending.history_len)

    def _last_logprob(self, ids: list[int]) -> list[float]:
        """The log-prob of ids[-1] after the rest, asked of the server at once (llama.cpp stops at
        an EOS without returning it or its log-prob, and self mode scores the step with it)."""
        reply = self.transport.call("POST", self.url + self.protocol.score_path,
                                    self.protocol.score_request(ids, len(ids) - 1), "score")
        return self.protocol.parse_score(reply.body, ids, len(ids) - 1)

    def _server_stop(self, generated: Generation, token_ids: list[int], params: SamplingParams):
        """The server ended the generation before any of our rules fired on the tokens it returned."""
        if generated.finish_reason == "length":  # its own limit (a full context)
            return "length", None, token_ids
        if isinstance(generated.stop_hint, str):
            raise RemoteProtocolError(
                f"{self.name}: the server stopped at stop string {generated.stop_hint!r}, but the {len(token_ids)} "
                f"tokens it returned do not complete it (it drops the stopping token)"
            )
        if params.ignore_eos or not self.eos_token_ids:
            raise RemoteProtocolError(f"{self.name}: the server stopped for no reason its tokens show")
        # an EOS the server did not return (llama.cpp never does): it joins the history (its log-prob, where
        # asked, comes from one scoring request: _last_logprob)
        eos = generated.stop_hint if generated.stop_hint in self.eos_token_ids else self.eos_token_ids[0]
        return "stop", eos, token_ids + [eos]

    # ------------------------------------------------------------------ blocking helper
    def score(self, seq_id: int, token_ids: list[int], keep: bool = True, temperature: float = 1.0,
              commit: Optional[bool] = None) -> ScoreResult:
        """submit_score() and wait for its result (other requests' outputs stay for step())."""
        self.submit_score(seq_id, token_ids, keep, temperature, commit)
        for i, out in enumerate(self._ready):
            if isinstance(out, ScoreResult) and out.seq_id == seq_id:
                return self._ready.pop(i)
        pending = self._busy[seq_id]
        concurrent.futures.wait([pending.future], self.config.wait_limit())
        if not pending.future.done():
            raise RemoteUnavailableError(f"{self.name}: the score of sequence {seq_id} did not end in time")
        del self._busy[seq_id]
        try:
            return self._finish(seq_id, pending)
        except RemoteError as err:
            raise RemoteRequestError([(self, "score", seq_id, err)]) from err


RemoteEngine = RemoteBackend  # the name of its first releases (it mirrors LLMEngine's interface)
