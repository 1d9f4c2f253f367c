"""SGLang's native /generate: `input_ids` (or `text`), `sampling_params`, `return_logprob` with
`logprob_start_len` (prompt log-probs from that position on: the prefix before it may come from
the prefix cache). Entries are [logprob, token_id, text-or-null] as SGLang answers them."""
from __future__ import annotations

from dataclasses import dataclass

from .errors import RequestError, brief
from .jobs import JobResult
from .params import (
    Job, check_length, check_object, encode_text, get_bool, get_float, get_int, get_stop, get_token_list, refuse,
    sampling_params,
)

_NAMES = {"max_tokens": "max_new_tokens", "min_tokens": "min_new_tokens", "seed": "sampling_seed",
          "include_stop_str_in_output": "no_stop_trim"}


@dataclass
class GenerateOptions:
    return_logprob: bool
    text_in_logprobs: bool


def _sampling_fields(sp: dict, vocab_size: int, logprobs: bool) -> dict:
    refuse(sp, "n", (None, 1))
    for name in ("frequency_penalty", "presence_penalty", "min_p"):
        refuse(sp, name, (None, 0, 0.0))
    refuse(sp, "repetition_penalty", (None, 1, 1.0))
    for name in ("json_schema", "regex", "ebnf", "structural_tag"):
        refuse(sp, name)
    return dict(
        temperature=get_float(sp, "temperature", 1.0), top_p=get_float(sp, "top_p", 1.0),
        top_k=get_int(sp, "top_k", 0), max_tokens=get_int(sp, "max_new_tokens", 128, 0),
        min_tokens=get_int(sp, "min_new_tokens", 0, 0), stop=get_stop(sp, "stop"),
        stop_token_ids=get_token_list(sp, "stop_token_ids", vocab_size, True) if sp.get("stop_token_ids") else [],
        ignore_eos=get_bool(sp, "ignore_eos", False), seed=get_int(sp, "sampling_seed", None),
        include_stop_str_in_output=get_bool(sp, "no_stop_trim", False),
        skip_special_tokens=get_bool(sp, "skip_special_tokens", True), logprobs=logprobs,
    )


def parse_generate(body, tokenizer, vocab_size: int, max_model_len: int) -> tuple[Job, GenerateOptions]:
    body = check_object(body)
    if get_bool(body, "stream", False):
        raise RequestError("stream: streaming is not supported by a1 serve", "stream")
    refuse(body, "token_ids_logprob")
    refuse(body, "input_embeds")
    if get_int(body, "top_logprobs_num", 0, 0):
        raise RequestError("top_logprobs_num must be 0: a1 serve returns the chosen token's log-prob only",
                           "top_logprobs_num")
    has_ids, has_text = body.get("input_ids") is not None, body.get("text") is not None
    if has_ids == has_text:
        raise RequestError("give exactly one of input_ids and text", "input_ids")
    if has_ids:
        ids = body["input_ids"]
        if isinstance(ids, list) and ids and isinstance(ids[0], list):
            raise RequestError("input_ids: one prompt per request (a batch is not supported)", "input_ids")
        prompt_ids = get_token_list(body, "input_ids", vocab_size)
    else:
        text = body["text"]
        if not isinstance(text, str) or not text:
            raise RequestError("text must be a non-empty string (one prompt per request)", "text")
        prompt_ids = encode_text(tokenizer, text, "text")
    sp = body.get("sampling_params")
    sp = {} if sp is None else sp
    if not isinstance(sp, dict):
        raise RequestError(f"sampling_params must be an object, got {brief(sp)}", "sampling_params")
    return_logprob = get_bool(body, "return_logprob", False)
    start = get_int(body, "logprob_start_len", -1, -1)
    if start > len(prompt_ids):
        raise RequestError(f"logprob_start_len {start} is past the {len(prompt_ids)}-token prompt", "logprob_start_len")
    try:
        fields = _sampling_fields(sp, vocab_size, return_logprob)
        check_length(len(prompt_ids), fields["max_tokens"], max_model_len, "input_ids", "max_new_tokens")
        params = sampling_params(fields, _NAMES) if fields["max_tokens"] > 0 else None
    except RequestError as err:
        if err.field in (None, "input_ids"):
            raise
        raise RequestError(f"sampling_params.{err.message}", f"sampling_params.{err.field}", err.status) from None
    job = Job(body.get("model"), prompt_ids, params, start if return_logprob and start >= 0 else None)
    return job, GenerateOptions(return_logprob, get_bool(body, "return_text_in_logprobs", False))


def generate_response(job: Job, options: GenerateOptions, result: JobResult, request_id: str, tokenizer) -> dict:
    out = result.output
    generated = list(out.token_ids) if out is not None else []
    if out is None or out.finish_reason == "length":
        finish = {"type": "length", "length": len(generated)}
    else:
        finish = {"type": "stop", "matched": out.outputs[0].stop_reason}
    meta = {
        "id": request_id, "prompt_tokens": len(job.prompt_ids), "completion_tokens": len(generated),
        "cached_tokens": out.metrics.num_cached_tokens if out is not None else 0, "finish_reason": finish,
    }
    if options.return_logprob:
        text = (lambda t: tokenizer.decode([t])) if options.text_in_logprobs else (lambda t: None)
        if job.score_from is not None:
            meta["input_token_logprobs"] = [
                [lp, t, text(t)] for t, lp in zip(job.prompt_ids[job.score_from:], result.prompt_logprobs[job.score_from:])
            ]
        else:
            meta["input_token_logprobs"] = []
        meta["output_token_logprobs"] = [[lp, t, text(t)] for t, lp in zip(generated, out.logprobs if out else [])]
    return {"text": out.text if out is not None else "", "output_ids": generated, "meta_info": meta}
