"""The OpenAI-compatible /v1/completions (vLLM's dialect): token-id or text prompts, generated
token log-probs (`logprobs`), prompt log-probs (`prompt_logprobs`, or `echo` with `logprobs`),
vLLM's `return_token_ids` / `return_tokens_as_token_ids`. One prompt, one choice, no streaming."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional

from .errors import RequestError
from .jobs import JobResult
from .params import (
    Job, check_length, check_object, encode_text, get_bool, get_float, get_int, get_stop, get_token_list, refuse,
    sampling_params,
)

_NAMES = {"include_stop_str_in_output": "include_stop_str_in_output", "min_tokens": "min_tokens"}


@dataclass
class CompletionOptions:
    """How the answer is shaped (what the Job does not say)."""

    prompt_text: Optional[str]
    echo: bool
    logprobs: Optional[int]
    prompt_logprobs: Optional[int]
    return_token_ids: bool
    tokens_as_ids: bool


def parse_completion(body, tokenizer, vocab_size: int, max_model_len: int) -> tuple[Job, CompletionOptions]:
    body = check_object(body)
    if get_bool(body, "stream", False):
        raise RequestError("stream: streaming is not supported by a1 serve", "stream")
    if get_int(body, "n", 1, 1) != 1:
        raise RequestError("n: a1 serve answers one completion per request", "n")
    refuse(body, "best_of", (None, 1))
    refuse(body, "use_beam_search", (None, False))
    refuse(body, "suffix")
    refuse(body, "prompt_embeds")
    refuse(body, "logit_bias", (None, {}))
    for name in ("presence_penalty", "frequency_penalty", "min_p"):
        refuse(body, name, (None, 0, 0.0))
    refuse(body, "repetition_penalty", (None, 1, 1.0))
    prompt, prompt_text = body.get("prompt"), None
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (list, str)):
        prompt = prompt[0]  # a batch of one
    if isinstance(prompt, str):
        if not prompt:
            raise RequestError("prompt must not be empty", "prompt")
        prompt_text = prompt
        prompt_ids = encode_text(tokenizer, prompt, "prompt", get_bool(body, "add_special_tokens", True))
        if not prompt_ids:
            raise RequestError("prompt encodes to no tokens", "prompt")
    elif isinstance(prompt, list) and prompt and not isinstance(prompt[0], (list, str)):
        prompt_ids = get_token_list({"prompt": prompt}, "prompt", vocab_size)
    else:
        raise RequestError("prompt must be a string or a non-empty list of token ids (one prompt per request)", "prompt")
    max_tokens = get_int(body, "max_tokens", 16, 0)
    echo = get_bool(body, "echo", False)
    logprobs = get_int(body, "logprobs", None, 0)
    if logprobs is not None and logprobs > 1:
        raise RequestError("logprobs must be 0 or 1: a1 serve returns the chosen token's log-prob only", "logprobs")
    prompt_logprobs = get_int(body, "prompt_logprobs", None, 0)
    if prompt_logprobs is not None and prompt_logprobs > 1:
        raise RequestError("prompt_logprobs must be 0 or 1: a1 serve returns the prompt token's log-prob only",
                           "prompt_logprobs")
    wants_prompt_logprobs = prompt_logprobs is not None or (echo and logprobs is not None)
    if max_tokens == 0 and not wants_prompt_logprobs:
        raise RequestError("max_tokens must be >= 1 unless the request asks for prompt log-probs", "max_tokens")
    check_length(len(prompt_ids), max_tokens, max_model_len, "prompt", "max_tokens")
    params = None
    if max_tokens > 0:
        fields = dict(
            temperature=get_float(body, "temperature", 1.0), top_p=get_float(body, "top_p", 1.0),
            top_k=get_int(body, "top_k", 0), max_tokens=max_tokens, stop=get_stop(body, "stop"),
            stop_token_ids=get_token_list(body, "stop_token_ids", vocab_size, True) if body.get("stop_token_ids") else [],
            ignore_eos=get_bool(body, "ignore_eos", False), seed=get_int(body, "seed", None),
            logprobs=logprobs is not None, min_tokens=get_int(body, "min_tokens", 0, 0),
            include_stop_str_in_output=get_bool(body, "include_stop_str_in_output", False),
            skip_special_tokens=get_bool(body, "skip_special_tokens", True),
        )
        params = sampling_params(fields, _NAMES)
    job = Job(body.get("model"), prompt_ids, params, 0 if wants_prompt_logprobs else None)
    options = CompletionOptions(
        prompt_text, echo, logprobs, prompt_logprobs, get_bool(body, "return_token_ids", False),
        get_bool(body, "return_tokens_as_token_ids", False),
    )
    return job, options


def completion_response(job: Job, options: CompletionOptions, result: JobResult, model_name: str, request_id: str,
                        tokenizer) -> dict:
    out = result.output
    generated = list(out.token_ids) if out is not None else []
    text = out.text if out is not None else ""
    if options.echo:
        prompt_text = options.prompt_text
        if prompt_text is None:
            prompt_text = tokenizer.decode(job.prompt_ids, skip_special_tokens=False)
        text = prompt_text + text
    choice: dict = {
        "index": 0, "text": text, "logprobs": None,
        "finish_reason": out.finish_reason if out is not None else "length",
        "stop_reason": out.outputs[0].stop_reason if out is not None else None,
    }
    if options.return_token_ids:
        choice["token_ids"] = generated
        choice["prompt_token_ids"] = list(job.prompt_ids)
    piece = (lambda t: f"token_id:{t}") if options.tokens_as_ids else (lambda t: tokenizer.decode([t]))
    if options.prompt_logprobs is not None:
        choice["prompt_logprobs"] = [
            None if lp is None else {str(t): {"logprob": lp, "rank": None, "decoded_token": piece(t)}}
            for t, lp in zip(job.prompt_ids, result.prompt_logprobs)
        ]
    if options.logprobs is not None:
        tokens, values = [], []
        if options.echo:
            tokens.extend(job.prompt_ids)
            values.extend(result.prompt_logprobs)
        tokens.extend(generated)
        values.extend(out.logprobs if out is not None else [])
        strings = [piece(t) for t in tokens]
        offsets, position = [], 0
        for t in tokens:  # characters of the text, whatever names the tokens
            offsets.append(position)
            position += len(tokenizer.decode([t]))
        choice["logprobs"] = {
            "tokens": strings, "token_logprobs": values, "text_offset": offsets,
            "top_logprobs": [None if v is None else {s: v} for s, v in zip(strings, values)],
        }
    return {
        "id": request_id, "object": "text_completion", "created": int(time.time()), "model": model_name,
        "choices": [choice],
        "usage": {"prompt_tokens": len(job.prompt_ids), "completion_tokens": len(generated),
                  "total_tokens": len(job.prompt_ids) + len(generated)},
    }
