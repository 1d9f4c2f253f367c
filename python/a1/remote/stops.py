"""Where a remotely generated step ends, in token space, by the embedded engine's own rules.

Servers apply stop strings to text and differ in what they return with it (vLLM and SGLang keep
the token that completed the stop string when asked to keep the string; llama.cpp cuts the text
but names every generated token). So the server is asked to include the stop string, and the
returned token ids are replayed through the engine's stop rules (a1.engine.detokenizer: the same
incremental decoding with the same 5 tokens of history as context): the step ends at the first
token whose decoded text completes a stop string (text after the stop string inside that token
stays, as in the embedded engine), at a stop/EOS token, or at max_tokens / max_model_len; the
tokens after that point are dropped."""
from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Optional, Sequence, Union

from a1.engine.detokenizer import _CONTEXT, check_stop_strings, decode_new_text, start_detokenizer
from a1.engine.sampling_params import SamplingParams


@dataclass
class Trimmed:
    """num_tokens: how many returned tokens the step keeps; finish_reason None when no rule
    fired on them (the server stopped for a reason of its own)."""

    num_tokens: int
    finish_reason: Optional[str]
    stop_reason: Union[str, int, None]
    text: Optional[str]  # the step's text when a stop string ended it (cut as the engine cuts it)


def trim(
    tokenizer,
    eos_token_ids: Sequence[int],
    history: Sequence[int],
    generated: Sequence[int],
    params: SamplingParams,
    max_model_len: int,
) -> Trimmed:
    """Replay LLMEngine._append_sampled's stop rules over the generated tokens."""
    context = list(history[-_CONTEXT:])
    task = SimpleNamespace(params=params, start=len(context), text="", prefix_offset=0, read_offset=0)
    start_detokenizer(task)
    seq = SimpleNamespace(token_ids=context, task=task)
    eos = set(eos_token_ids)
    for count, token in enumerate(generated, start=1):
        seq.token_ids.append(token)
        can_stop = count >= params.min_tokens
        if params.stop:
            new_text = decode_new_text(tokenizer, seq)
            if not can_stop:
                task.text += new_text
            elif (stop := check_stop_strings(task, new_text)) is not None:
                return Trimmed(count, "stop", stop, task.text)
        if can_stop and token in params.stop_token_ids:
            return Trimmed(count, "stop", token, None)
        if can_stop and not params.ignore_eos and token in eos:
            return Trimmed(count, "stop", token, None)
        if count >= params.max_tokens or len(history) + count >= max_model_len:
            return Trimmed(count, "length", None, None)
    return Trimmed(len(generated), None, None, None)
