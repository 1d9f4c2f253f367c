"""One server of a model (a replica): identified, given the protocol it speaks, and checked at
start-up (identify.py, probe.py); the sampling settings at which its generation log-probs must be
re-read by a scoring request are found at their first use (probe.probe_temperature)."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Optional

from a1.engine.sampling_params import SamplingParams

from .identify import ServerInfo, identify
from .openai_protocol import OpenAIProtocol
from .probe import probe_alignment, probe_temperature
from .protocol import Protocol
from .sglang_protocol import SGLangProtocol
from .tokenizer import ClientTokenizer
from .transport import Transport


@dataclass(eq=False)
class Replica:
    url: str
    name: str  # the URL and the served model: how errors name it
    protocol: Protocol
    info: ServerInfo
    transport: Transport
    tokenizer: object
    alignment: str = "not checked"
    rescored: dict[tuple, bool] = field(default_factory=dict)  # (T, top_p, top_k) -> log-probs re-read?

    @property
    def config(self):
        return self.transport.config

    @property
    def alive(self) -> bool:
        """Not taken out (by any engine sharing the transport: routing.Router.reroutes)."""
        return self.url not in self.transport.down

    def rescores(self, params: SamplingParams) -> bool:
        """Whether a generation's log-probs at params' setting must be re-read by scoring (the
        server returns other than raw log-probs there; probed at the setting's first use). At
        T = 1 temperature scaling changes nothing, and greedy log-probs are raw everywhere. A
        server of text prompts (llama-cpp-python) is not probed: it takes its log-probs from the
        raw logits, and its re-tokenization of a sampled step (non-canonical tokens are common at
        high temperature) would make the comparison token by token meaningless."""
        text_prompts = getattr(self.protocol, "text_prompts", False)
        if not params.logprobs or params.temperature in (0.0, 1.0) or text_prompts:
            return False
        key = (params.temperature, params.top_p, params.top_k)
        if key not in self.rescored:
            self.rescored[key] = probe_temperature(self, params)
            if self.rescored[key]:
                warnings.warn(
                    f"{self.name}: its generation log-probs at temperature {params.temperature} are not the model's "
                    f"raw log-probs (SGLang scales them by the temperature unless started with "
                    f"SGLANG_RETURN_ORIGINAL_LOGPROB=1; vLLM with --logprobs-mode other than raw_logprobs): each "
                    f"step's log-probs are re-read with a scoring request; start the server with "
                    f"SGLANG_RETURN_ORIGINAL_LOGPROB=1 (SGLang) or --logprobs-mode raw_logprobs (vLLM) to save it"
                )
        return self.rescored[key]


def connect(url: str, loaded: ClientTokenizer, protocol: str, model: Optional[str], transport: Transport,
            check_alignment: bool) -> Replica:
    """The replica at url, identified and (check_alignment) probed; raises what refuses it."""
    info = identify(transport, url, protocol, model)
    name = url + (f" ({info.model})" if info.model else "")
    if info.protocol == "sglang":
        speaks: Protocol = SGLangProtocol(name, info.model if model is not None else None, loaded.vocab_size)
    else:
        speaks = OpenAIProtocol(name, info.model, loaded.tokenizer, loaded.vocab_size)
    speaks.seed_bits = info.seed_bits
    replica = Replica(url, name, speaks, info, transport, loaded.tokenizer)
    if isinstance(speaks, OpenAIProtocol):
        speaks.accepts_token_ids(transport, url)
        speaks.find_dialect(transport, url)
    if check_alignment:
        replica.alignment = probe_alignment(replica)
    return replica
