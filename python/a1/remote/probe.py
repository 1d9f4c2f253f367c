"""Start-up checks of a server: which protocol it speaks, which model it serves with what context,
and whether its prompt log-probs line up with the tokens.

The alignment probe generates a few tokens after a known text (a generation's log-prob of each
token it samples is unambiguous: it comes from the last position's logits), then scores the same
tokens as part of a prompt and compares, at the scored positions and one position either side.
A server whose prompt log-probs match at the scored positions passes; one whose values sit one
position off is corrected (`protocol.shift`); one that matches only when the prompt starts with a
BOS token (llama-cpp-python pairs each echoed token with the next position's distribution unless
it strips a leading BOS first) is accepted for BOS-led histories only (`protocol.requires_bos`);
any other server is refused with the differences it showed."""
from __future__ import annotations

import statistics
import warnings
from dataclasses import dataclass
from typing import Optional

from a1.engine.sampling_params import SamplingParams

from .errors import RemoteAlignmentError, RemoteHTTPError, RemoteProtocolError, RemoteUnavailableError
from .transport import Transport

PROBE_TEXT = ("The capital of France is Paris. The capital of Italy is Rome. Count with me: one, two, three, "
              "four, five. The capital of Spain is")
PROBE_SEEDS = (1234, 4321, 2024)
PROBE_TOKENS = 8


@dataclass
class ServerInfo:
    protocol: str  # "openai" | "sglang"
    model: Optional[str]  # the served model the requests name (None: the server's only one)
    max_model_len: Optional[int]


def _get(transport: Transport, url: str) -> Optional[dict]:
    """GET url's JSON object, None on HTTP 404/405 (the endpoint does not exist there)."""
    try:
        body = transport.call("GET", url).body
    except RemoteHTTPError as err:
        if err.status in (404, 405):
            return None
        raise
    return body if isinstance(body, dict) else None


def identify(transport: Transport, url: str, protocol: str, model: Optional[str]) -> ServerInfo:
    """protocol "auto" picks SGLang's /generate where /get_model_info answers (SGLang, a1 serve),
    else the OpenAI completions (vLLM, llama.cpp)."""
    try:
        info = _get(transport, url + "/get_model_info") if protocol in ("auto", "sglang") else None
        if protocol == "sglang" and info is None:
            raise RemoteProtocolError(f"{url} has no /get_model_info: it is not an SGLang server (protocol='sglang')")
        if protocol == "auto":
            protocol = "sglang" if info is not None else "openai"
        models = _get(transport, url + "/v1/models")
    except RemoteUnavailableError as err:
        raise RemoteUnavailableError(f"cannot reach the server at {url} (is it running?): {err}") from None
    if protocol == "openai" and models is None:
        raise RemoteProtocolError(f"{url} has no /v1/models: it is not an OpenAI-compatible server (protocol='openai')")
    cards = [c for c in (models or {}).get("data", []) if isinstance(c, dict) and isinstance(c.get("id"), str)]
    names = [c["id"] for c in cards]
    if model is not None and names and model not in names:
        raise ValueError(f"model {model!r} is not served at {url}; it serves {names}")
    if model is None and protocol == "openai" and names:
        model = names[0]
    card = next((c for c in cards if c["id"] == model), cards[0] if cards else {})
    max_len = card.get("max_model_len") or (info or {}).get("max_model_len") or (info or {}).get("context_length")
    return ServerInfo(protocol, model, int(max_len) if isinstance(max_len, int) and max_len > 1 else None)


def _errors(filed: dict[int, float], positions: list[int], logprobs: list[float], shift: int) -> float:
    diffs = []
    for position, expected in zip(positions, logprobs):
        value = filed.get(position + shift)
        if value is None:
            return float("inf")
        diffs.append(abs(value - expected))
    return statistics.median(diffs)


def _probe_once(engine, prompt: list[int]) -> dict[int, float]:
    """Median |prompt log-prob - generation log-prob| per shift in (0, 1, -1)."""
    protocol, where = engine.protocol, engine.name
    last_error: Optional[Exception] = None
    for seed in PROBE_SEEDS:
        params = SamplingParams(temperature=1.0, top_p=1.0, top_k=0, max_tokens=PROBE_TOKENS, seed=seed,
                                logprobs=True, ignore_eos=True)
        try:
            reply = engine.transport.call("POST", engine.url + protocol.generate_path,
                                          protocol.generate_request(prompt, params), "gen")
            generated = protocol.parse_generation(reply.body, params)
        except RemoteProtocolError as err:  # e.g. a token llama.cpp names by a text we cannot map: another seed
            last_error = err
            continue
        if len(generated.token_ids) >= 2:
            break
        last_error = RemoteProtocolError(f"{where}: the probe's generation gave {len(generated.token_ids)} tokens")
    else:
        raise RemoteAlignmentError(f"{where}: the alignment probe could not run: {last_error}")
    ids = prompt + generated.token_ids
    reply = engine.transport.call("POST", engine.url + protocol.score_path, protocol.score_request(ids, len(prompt)),
                                  "score")
    filed = protocol.position_logprobs(reply.body, ids, len(prompt))
    positions = list(range(len(prompt), len(ids)))
    return {shift: _errors(filed, positions, generated.logprobs, shift) for shift in (0, 1, -1)}


def probe_alignment(engine) -> str:
    """Check engine's server (see the module doc); returns what was found, raises
    RemoteAlignmentError for a server that cannot be trusted."""
    tolerance = engine.config.probe_tolerance
    prompt = engine.tokenizer.encode(PROBE_TEXT, add_special_tokens=False)
    errors = _probe_once(engine, prompt)
    if errors[0] <= tolerance:
        return "aligned"
    for shift in (1, -1):
        if errors[shift] <= tolerance and errors[shift] * 4 < errors[0]:  # clearly better than unshifted
            engine.protocol.shift = shift
            warnings.warn(f"{engine.name}: prompt log-probs are filed {shift:+d} position(s) off; corrected")
            return f"shifted {shift:+d} (corrected)"
    bos = getattr(engine.tokenizer, "bos_token_id", None)
    if bos is not None and prompt and prompt[0] != bos:
        with_bos = _probe_once(engine, [bos] + prompt)
        if with_bos[0] <= tolerance:
            engine.protocol.requires_bos = bos
            warnings.warn(f"{engine.name}: prompt log-probs are right only after a leading BOS (id {bos}): histories "
                          f"must start with it (chat prompts do)")
            return "aligned after a leading BOS only"
    shown = ", ".join(f"{shift:+d}: {value:.3g}" for shift, value in errors.items())
    raise RemoteAlignmentError(
        f"{engine.name}: the server's prompt log-probs do not match its own generation log-probs of the same tokens "
        f"(median |difference| in nats by position shift: {shown}; tolerance {tolerance}): refusing this server"
    )
