"""Checks of a server's log-probs (which server it is: identify.py): at start-up, whether its
prompt log-probs line up with the tokens; at the first generation with log-probs at a sampling
setting, whether its generation log-probs are the model's raw ones at that setting.

The alignment probe generates a few tokens after a known text (a generation's log-prob of each
token it samples is unambiguous: it comes from the last position's logits), then scores the same
tokens as part of a prompt and compares, at the scored positions and one position either side.
A server whose prompt log-probs match at the scored positions passes; one whose values sit one
position off is corrected (`protocol.shift`); one that matches only when the prompt starts with a
BOS token (llama-cpp-python pairs each echoed token with the next position's distribution unless
it strips a leading BOS first) is accepted for BOS-led histories only (`protocol.requires_bos`);
any other server is refused with the differences it showed.

Self mode scores a step with its generation log-probs, which must be the model's raw
log_softmax(logits). SGLang returns log_softmax(logits / T) unless started with
SGLANG_RETURN_ORIGINAL_LOGPROB=1 (and vLLM with --logprobs-mode processed_logprobs), which the
start-up probe at T = 1 cannot see: probe_temperature() compares generation and prompt log-probs
at the run's own setting, after a text whose next tokens are uncertain (there the scaling moves
the log-probs most), and the engine then re-reads such a server's step log-probs with a scoring
request (prompt log-probs are scored at T = 1: raw)."""
from __future__ import annotations

import statistics
import warnings
from dataclasses import replace

from a1.engine.sampling_params import SamplingParams

from .errors import RemoteAlignmentError, RemoteProtocolError

PROBE_TEXT = ("The capital of France is Paris. The capital of Italy is Rome. Count with me: one, two, three, "
              "four, five. The capital of Spain is")
PROBE_SEEDS = (1234, 4321, 2024)
PROBE_TOKENS = 8
# unrelated words: the next token is uncertain, so temperature scaling moves its log-prob far
TEMPERATURE_TEXT = "velvet harbor seventeen quantum lantern oblique marble thunder cactus"
TEMPERATURE_TOKENS = 12


def _errors(filed: dict[int, float], positions: list[int], logprobs: list[float], shift: int) -> float:
    diffs = []
    for position, expected in zip(positions, logprobs):
        value = filed.get(position + shift)
        if value is None:
            return float("inf")
        diffs.append(0.0 if value == expected else abs(value - expected))  # -inf == -inf: no difference
    return statistics.median(diffs)


def _generate(server, prompt: list[int], params: SamplingParams, what: str):
    """A generation of at least 2 tokens after prompt, trying each probe seed."""
    protocol, last_error = server.protocol, None
    for seed in PROBE_SEEDS:
        seeded = replace(params, seed=seed)
        try:
            reply = server.transport.call("POST", server.url + protocol.generate_path,
                                          protocol.generate_request(prompt, seeded), "gen")
            generated = protocol.parse_generation(reply.body, seeded)
        except RemoteProtocolError as err:  # e.g. a token llama.cpp names by a text we cannot map: another seed
            last_error = err
            continue
        if len(generated.token_ids) >= 2:
            return generated
        last_error = RemoteProtocolError(f"{server.name}: the probe's generation gave {len(generated.token_ids)} tokens")
    raise RemoteAlignmentError(f"{server.name}: the {what} probe could not run: {last_error}")


def _scored(server, prompt: list[int], generated) -> tuple[dict[int, float], list[int]]:
    ids = prompt + generated.token_ids
    reply = server.transport.call("POST", server.url + server.protocol.score_path,
                                  server.protocol.score_request(ids, len(prompt)), "score")
    return server.protocol.position_logprobs(reply.body, ids, len(prompt)), list(range(len(prompt), len(ids)))


def _probe_once(server, prompt: list[int]) -> dict[int, float]:
    """Median |prompt log-prob - generation log-prob| per shift in (0, 1, -1)."""
    params = SamplingParams(temperature=1.0, top_p=1.0, top_k=0, max_tokens=PROBE_TOKENS, logprobs=True,
                            ignore_eos=True)
    generated = _generate(server, prompt, params, "alignment")
    filed, positions = _scored(server, prompt, generated)
    return {shift: _errors(filed, positions, generated.logprobs, shift) for shift in (0, 1, -1)}


def probe_temperature(server, params: SamplingParams) -> bool:
    """Whether server's generation log-probs at params' temperature / top-p / top-k are NOT the
    raw ones (median |difference| to its prompt log-probs of the same tokens above the probe
    tolerance, after the alignment correction); see the module doc."""
    prompt = server.tokenizer.encode(TEMPERATURE_TEXT, add_special_tokens=False)
    if server.protocol.requires_bos is not None:  # llama-cpp-python's prompt log-probs need it
        prompt = [server.protocol.requires_bos] + prompt
    probe = SamplingParams(temperature=params.temperature, top_p=params.top_p, top_k=params.top_k,
                           max_tokens=TEMPERATURE_TOKENS, logprobs=True, ignore_eos=True)
    generated = _generate(server, prompt, probe, "temperature")
    filed, positions = _scored(server, prompt, generated)
    return _errors(filed, positions, generated.logprobs, server.protocol.shift) > server.config.probe_tolerance


def probe_alignment(server) -> str:
    """Check a server (anything with url, name, protocol, tokenizer, transport, config: a
    Replica; see the module doc); returns what was found, raises RemoteAlignmentError for a
    server that cannot be trusted."""
    tolerance = server.config.probe_tolerance
    prompt = server.tokenizer.encode(PROBE_TEXT, add_special_tokens=False)
    errors = _probe_once(server, prompt)
    if errors[0] <= tolerance:
        return "aligned"
    for shift in (1, -1):
        if errors[shift] <= tolerance and errors[shift] * 4 < errors[0]:  # clearly better than unshifted
            server.protocol.shift = shift
            warnings.warn(f"{server.name}: prompt log-probs are filed {shift:+d} position(s) off; corrected")
            return f"shifted {shift:+d} (corrected)"
    bos = getattr(server.tokenizer, "bos_token_id", None)
    if bos is not None and prompt and prompt[0] != bos:
        with_bos = _probe_once(server, [bos] + prompt)
        if with_bos[0] <= tolerance:
            server.protocol.requires_bos = bos
            warnings.warn(f"{server.name}: prompt log-probs are right only after a leading BOS (id {bos}): histories "
                          f"must start with it (chat prompts do)")
            return "aligned after a leading BOS only"
    shown = ", ".join(f"{shift:+d}: {value:.3g}" for shift, value in errors.items())
    raise RemoteAlignmentError(
        f"{server.name}: the server's prompt log-probs do not match its own generation log-probs of the same tokens "
        f"(median |difference| in nats by position shift: {shown}; tolerance {tolerance}): refusing this server"
    )
