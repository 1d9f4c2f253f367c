"""SGLang's native /generate with token ids: `input_ids`, `sampling_params`, `return_logprob`
with `logprob_start_len` (the prefix before it may come from the radix cache). Log-prob entries
are [logprob, token_id, text]: each is checked against the token it claims to score."""
from __future__ import annotations

from typing import Any, Optional

from a1.engine.sampling_params import SamplingParams

from .errors import RemoteAlignmentError, RemoteProtocolError
from .protocol import Generation, Protocol, check_ids, check_logprob


class SGLangProtocol(Protocol):
    name = "sglang"
    generate_path = score_path = "/generate"

    def __init__(self, where: str, model: Optional[str], vocab_size: int) -> None:
        super().__init__(where, model)
        self.vocab_size = vocab_size

    def _base(self, token_ids: list[int], sampling: dict, logprob_start_len: int) -> dict:
        payload = {"input_ids": list(token_ids), "sampling_params": sampling, "return_logprob": True,
                   "logprob_start_len": logprob_start_len}
        if self.model is not None:  # a1 serve serves a pair on one port; SGLang serves one model
            payload["model"] = self.model
        return payload

    def generate_request(self, prompt_ids: list[int], params: SamplingParams) -> dict:
        sampling = {
            "max_new_tokens": params.max_tokens, "temperature": params.temperature, "top_p": params.top_p,
            "top_k": params.top_k if params.top_k > 0 else -1, "min_new_tokens": params.min_tokens,
            "stop": list(params.stop), "stop_token_ids": list(params.stop_token_ids), "ignore_eos": params.ignore_eos,
            "skip_special_tokens": params.skip_special_tokens, "no_stop_trim": True,
            # SGLang fills a field the request leaves out from the model's generation config or
            # --preferred-sampling-params: the embedded engine's neutral values
            "min_p": 0.0, "repetition_penalty": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0,
        }
        if self.seed(params.seed) is not None:  # honoured with --enable-deterministic-inference; see versions.py
            sampling["sampling_seed"] = self.seed(params.seed)
        return self._base(prompt_ids, sampling, -1)

    def parse_generation(self, body: Any, params: SamplingParams) -> Generation:
        meta = self.field(body, "meta_info")
        entries = self.field(meta, "output_token_logprobs")
        if not isinstance(entries, list) or not all(isinstance(e, list) and len(e) >= 2 for e in entries):
            raise RemoteProtocolError(f"{self.where}: malformed meta_info.output_token_logprobs")
        ids = body.get("output_ids") if isinstance(body, dict) else None
        if ids is None:
            ids = [e[1] for e in entries]
        ids = check_ids(self.where, ids, self.vocab_size, "output_ids")
        if len(entries) != len(ids) or any(e[1] != t for e, t in zip(entries, ids)):
            raise RemoteProtocolError(
                f"{self.where}: {len(entries)} generated log-probs do not match the {len(ids)} generated tokens"
            )
        values = [check_logprob(self.where, e[0], f"generated log-prob {i}") for i, e in enumerate(entries)]
        finish = self.field(meta, "finish_reason")
        kind = finish.get("type") if isinstance(finish, dict) else finish
        if kind not in ("stop", "length"):  # "abort": e.g. a prompt over max_req_input_len (older versions)
            message = finish.get("message") if isinstance(finish, dict) else None
            raise RemoteProtocolError(f"{self.where}: the generation ended with {kind!r}: {message or finish!r}")
        hint = finish.get("matched") if isinstance(finish, dict) else None
        return Generation(ids, values if params.logprobs else None, kind, hint)

    def score_request(self, token_ids: list[int], start: int) -> dict:
        # from the position before start: SGLang leaves the first returned entry without a value
        return self._base(token_ids, {"max_new_tokens": 1, "temperature": 0.0}, max(start - 1, 0))

    def position_logprobs(self, body: Any, token_ids: list[int], start: int) -> dict[int, float]:
        entries = self.field(body, "meta_info", "input_token_logprobs")
        requested = max(start - 1, 0)
        if not isinstance(entries, list):
            raise RemoteProtocolError(f"{self.where}: malformed meta_info.input_token_logprobs")
        # entry j scores position requested + skip + j; older SGLang versions return one entry fewer
        # (skip 1), and a server that drops the last one fits skip 0: the token ids tell them apart
        expected = len(token_ids) - requested
        skips = (0,) if len(entries) == expected else (1, 0) if len(entries) == expected - 1 else ()
        if not skips:
            raise RemoteProtocolError(
                f"{self.where}: {len(entries)} prompt log-probs for {expected} tokens from position {requested}"
            )
        for skip in skips:
            if all(isinstance(e, list) and len(e) >= 2 and e[1] == token_ids[requested + skip + j]
                   for j, e in enumerate(entries)):
                break
        else:
            raise RemoteAlignmentError(
                f"{self.where}: the prompt log-prob entries do not score the prompt's tokens from position "
                f"{requested} (first entry {entries[0] if entries else None!r}, token {token_ids[requested]}): misaligned"
            )
        filed = {}
        for j, entry in enumerate(entries):
            position = requested + skip + j
            if entry[0] is not None:
                filed[position] = check_logprob(self.where, entry[0], f"prompt log-prob {position}")
        return filed
