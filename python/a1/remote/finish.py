"""How an answered request becomes the remote engine's output (a mixin of RemoteBackend): a score's
log-probs; a generation cut where the embedded engine would end it (stops.py), ended where the
server stopped when no rule of ours fired, and, where its log-probs cannot be taken as they came,
held until a scoring request re-reads them (the EOS llama.cpp stops at without returning it, or a
server whose generation log-probs are not raw at this temperature: replica.Replica.rescores)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional, Union

from a1.engine.metrics import RequestMetrics
from a1.engine.outputs import CompletionOutput, RequestOutput, ScoreResult
from a1.engine.sampling_params import SamplingParams

from .errors import RemoteProtocolError
from .protocol import Generation
from .sequences import Output, Pending
from .stops import trim


@dataclass
class Held:
    """A generation waiting for the log-probs of token_ids[len(logprobs):], which a scoring
    request of ids (history + token_ids) from position `start` re-reads."""

    token_ids: list[int]
    logprobs: list[float]
    finish: str
    stop_reason: Union[str, int, None]
    text: str
    dropped: int
    ids: list[int]
    start: int


class Finishing:
    def _advance(self, seq_id: int, pending: Pending) -> Optional[Output]:
        """The output of pending's answered request, or None when a follow-up request went out
        (the sequence stays busy); raises the request's RemoteError."""
        reply = pending.future.result()
        self.metrics.num_retries += reply.attempts - 1
        self.metrics.total_request_time += reply.seconds
        if pending.held is not None:
            held = pending.held
            values = pending.replica.protocol.parse_score(reply.body, held.ids, held.start)
            self.metrics.num_tokens_rescored += len(values)
            return self._output(seq_id, pending, held.token_ids, held.logprobs + values, held.finish,
                                held.stop_reason, held.text, held.dropped)
        if pending.kind == "score":
            return self._finish_score(seq_id, pending, reply.body)
        return self._finish_generation(seq_id, pending, reply.body)

    def _finish_score(self, seq_id: int, pending: Pending, body) -> ScoreResult:
        seq = self.seqs[seq_id]
        values = pending.replica.protocol.parse_score(body, seq, pending.history_len)
        if not pending.keep:
            del seq[pending.history_len:]
        self.metrics.num_scores += 1
        self.metrics.num_tokens_scored += len(values)
        return ScoreResult(seq_id, values, -sum(values) / len(values))

    def _finish_generation(self, seq_id: int, pending: Pending, body) -> Optional[RequestOutput]:
        params, seq, replica = pending.params, self.seqs[seq_id], pending.replica
        generated = replica.protocol.parse_generation(body, params)
        cut = trim(self.tokenizer, self.eos_token_ids, seq, generated.token_ids, params, self.max_model_len)
        token_ids = generated.token_ids[: cut.num_tokens]
        logprobs = generated.logprobs[: cut.num_tokens] if params.logprobs else None
        finish, stop_reason = cut.finish_reason, cut.stop_reason
        if finish is None:
            finish, stop_reason, token_ids = self._server_stop(replica.name, generated, token_ids, params)
        text = cut.text if cut.text is not None else self.tokenizer.decode(
            token_ids, skip_special_tokens=params.skip_special_tokens)
        dropped = len(generated.token_ids) - cut.num_tokens
        if logprobs is not None:
            # re-read from the first token whose log-prob is missing (an EOS the server did not
            # return) or, where the server's are not raw at this setting, from the first token
            start = 0 if replica.rescores(params) else len(logprobs)
            if start < len(token_ids):
                ids, first = seq + token_ids, len(seq) + start
                pending.held = Held(token_ids, logprobs[:start], finish, stop_reason, text, dropped, ids, first)
                pending.build = lambda p: (p.score_path, p.score_request(ids, first), "score")
                self._send(seq_id, pending)
                return None
        return self._output(seq_id, pending, token_ids, logprobs, finish, stop_reason, text, dropped)

    def _output(self, seq_id: int, pending: Pending, token_ids: list[int], logprobs: Optional[list[float]],
                finish: str, stop_reason, text: str, dropped: int) -> RequestOutput:
        seq = self.seqs[seq_id]
        self.metrics.num_generations += 1
        self.metrics.num_tokens_sampled += len(token_ids)
        self.metrics.num_tokens_dropped += dropped
        prompt_ids = list(seq) if pending.release else None
        seq.extend(token_ids)
        metrics = RequestMetrics(arrival_time=pending.submitted, num_prompt_tokens=pending.history_len,
                                 num_generated_tokens=len(token_ids), finished_time=time.perf_counter())
        completion = CompletionOutput(0, text, token_ids, logprobs, finish, stop_reason)
        if pending.release:
            del self.seqs[seq_id]
        return RequestOutput(seq_id, None, prompt_ids, [completion], True, metrics, pending.history_len)

    def _server_stop(self, where: str, generated: Generation, token_ids: list[int], params: SamplingParams):
        """The server ended the generation before any of our rules fired on the tokens it returned."""
        if generated.finish_reason == "length":  # its own limit (a full context)
            return "length", None, token_ids
        hint = generated.stop_hint
        if isinstance(hint, str):
            raise RemoteProtocolError(
                f"{where}: the server stopped at stop string {hint!r}, but the {len(token_ids)} tokens it returned "
                f"do not complete it (it drops the stopping token)"
            )
        if token_ids and (hint == token_ids[-1] or (hint is None and self._is_control(token_ids[-1]))):
            # it stopped at a token it returned that is no EOS of ours: a stop id of its own (vLLM and
            # SGLang add the generation config's other EOS ids, e.g. Llama 3's <|eom_id|>): the step ends there
            return "stop", token_ids[-1], token_ids
        if params.ignore_eos or not self.eos_token_ids:
            raise RemoteProtocolError(f"{where}: the server stopped for no reason its tokens show")
        # an EOS the server did not return (llama.cpp never does): it joins the history (its log-prob, where
        # asked, is re-read by a scoring request)
        eos = hint if hint in self.eos_token_ids else self.eos_token_ids[0]
        return "stop", eos, token_ids + [eos]

    def _is_control(self, token_id: int) -> bool:
        """A special token (text only when special tokens are kept): one a server may stop at."""
        decode = self.tokenizer.decode
        return decode([token_id], skip_special_tokens=True) == "" != decode([token_id], skip_special_tokens=False)
