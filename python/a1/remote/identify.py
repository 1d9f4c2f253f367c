"""Which server is at a URL: the protocol it speaks, the model it serves, its version and how
long a history it takes, read from the endpoints each server family has.

SGLang (and `a1 serve`) answer `/model_info` (SGLang >= 0.5.x) or the deprecated
`/get_model_info`; SGLang adds `/server_info` (or `/get_server_info`: its version, its server
arguments, `max_req_input_len`). vLLM answers `/version`; llama.cpp's llama-server `/props`
(`n_ctx`); every OpenAI-compatible server `/v1/models` (vLLM's and SGLang's cards carry
`max_model_len`)."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Optional

from .errors import RemoteHTTPError, RemoteProtocolError, RemoteUnavailableError
from .transport import Transport
from .versions import SGLANG_INPUT_MARGIN, Version, parse_version, sglang_seed_bits, show, vllm_refusal


@dataclass
class ServerInfo:
    protocol: str  # "openai" | "sglang"
    model: Optional[str]  # the served model the requests name (None: the server's only one)
    max_model_len: Optional[int]  # the longest history + generation a1 may send (None: not said)
    family: str = "unknown"  # "vllm" | "sglang" | "llama.cpp" | "unknown" (a1 serve, others)
    version: Optional[Version] = None
    context_length: Optional[int] = None  # the server's own context (for error messages)
    notes: list[str] = field(default_factory=list)  # what the start-up warns about

    @property
    def seed_bits(self) -> Optional[int]:
        """Bits of a seed the server takes (None: it cannot take one)."""
        return sglang_seed_bits(self.version) if self.family == "sglang" else 63


def _get(transport: Transport, url: str, optional: bool = False) -> Optional[dict]:
    """GET url's JSON object, None on HTTP 404/405 (the endpoint does not exist there); an
    optional endpoint (one only some servers have) is None on any HTTP error but a refused key."""
    try:
        body = transport.call("GET", url).body
    except RemoteHTTPError as err:
        if err.status in (404, 405) or (optional and err.status not in (401, 403)):
            return None
        raise
    except RemoteProtocolError:  # not JSON: not the endpoint we mean
        if optional:
            return None
        raise
    return body if isinstance(body, dict) else None


def _first(transport: Transport, url: str, *paths: str) -> Optional[dict]:
    for path in paths:
        body = _get(transport, url + path, optional=True)
        if body is not None:
            return body
    return None


def _length(value: object) -> Optional[int]:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 1 else None


def identify(transport: Transport, url: str, protocol: str, model: Optional[str]) -> ServerInfo:
    """protocol "auto" picks SGLang's /generate where /model_info or /get_model_info answers
    (SGLang, a1 serve), else the OpenAI completions (vLLM, llama.cpp)."""
    try:
        info = _first(transport, url, "/model_info", "/get_model_info") if protocol in ("auto", "sglang") else None
        if protocol == "sglang" and info is None:
            raise RemoteProtocolError(f"{url} has neither /model_info nor /get_model_info: it is not an SGLang server "
                                      f"(protocol='sglang')")
        if protocol == "auto":
            protocol = "sglang" if info is not None else "openai"
        models = _get(transport, url + "/v1/models")
        server = _first(transport, url, "/server_info", "/get_server_info") if info is not None else None
        version = _get(transport, url + "/version", optional=True) if server is None else None
        props = _get(transport, url + "/props", optional=True) if protocol == "openai" and version is None else None
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
    result = ServerInfo(protocol, model, None)
    context = _length(card.get("max_model_len")) or _length((info or {}).get("max_model_len"))
    if server is not None:
        _read_sglang(result, server, context)
    elif version is not None and parse_version(version.get("version")) is not None:
        result.family, result.version = "vllm", parse_version(version.get("version"))
        refusal = vllm_refusal(url, result.version)
        if refusal:
            raise RemoteProtocolError(refusal)
        result.context_length = result.max_model_len = context
    else:
        settings = (props or {}).get("default_generation_settings")
        n_ctx = _length((props or {}).get("n_ctx")) or _length(settings.get("n_ctx") if isinstance(settings, dict) else None)
        if n_ctx is not None:
            result.family = "llama.cpp"
        result.context_length = result.max_model_len = context or n_ctx
    for note in result.notes:
        warnings.warn(f"{url}: {note}")
    return result


def _read_sglang(result: ServerInfo, server: dict, context: Optional[int]) -> None:
    """SGLang's /server_info: its version (sampling_seed's type), max_req_input_len (a longer
    prompt is aborted), and the settings that change what a1 gets from it."""
    result.family, result.version = "sglang", parse_version(server.get("version"))
    context = context or _length(server.get("context_length"))
    result.context_length = context
    max_input = _length(server.get("max_req_input_len"))
    if max_input is not None:  # histories must stay at or below it
        result.max_model_len = min(max_input + 1, context) if context else max_input + 1
    elif context is not None:
        result.max_model_len = context - SGLANG_INPUT_MARGIN + 1
    if result.seed_bits is None:
        result.notes.append(f"SGLang {show(result.version)} has no per-request seed (sampling_seed, from 0.5.3): "
                            f"seeded runs are not reproducible")
    elif server.get("enable_deterministic_inference") is False:
        result.notes.append("SGLang honours per-request seeds only with --enable-deterministic-inference: seeded "
                            "runs are not reproducible")
    if server.get("disable_radix_cache") is True:
        result.notes.append("the radix cache is off (--disable-radix-cache, or deterministic inference on an attention "
                            "backend other than fa3 / triton): every request recomputes its whole history")
