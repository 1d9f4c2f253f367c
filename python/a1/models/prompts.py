"""Prompts to token ids, one rule for every front (a1.LLM, a1.remote.RemoteLLM): a string is
tokenized with the tokenizer's special tokens or, with chat=True, becomes one user message of the
chat template; a list of ints is taken as token ids as it is."""
from __future__ import annotations

from typing import Any, Optional


def is_token_ids(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and len(value) > 0 and all(
        isinstance(t, int) and not isinstance(t, bool) for t in value
    )


def encode_prompts(tokenizer, prompts: Any, chat: bool = False) -> list[tuple[Optional[str], list[int]]]:
    """(text or None, token ids) per prompt; one prompt (a string or a list of ids) is a list of one."""
    if isinstance(prompts, str) or is_token_ids(prompts):
        prompts = [prompts]
    out = []
    for i, prompt in enumerate(prompts):
        if isinstance(prompt, str):
            if chat:
                text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True)
                out.append((prompt, tokenizer.encode(text, add_special_tokens=False)))
            else:
                out.append((prompt, tokenizer.encode(prompt, add_special_tokens=True)))
        elif is_token_ids(prompt):
            if chat:
                raise ValueError(f"prompts[{i}]: chat=True needs string prompts, got token ids")
            out.append((None, list(prompt)))
        else:
            raise TypeError(f"prompts[{i}] must be a non-empty string or list of token ids, got {prompt!r}")
    return out
