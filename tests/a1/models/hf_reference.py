"""transformers as the reference: logits of a full prefill or of the same chunks fed through its
own KV cache, and greedy generate()."""
from __future__ import annotations

from typing import Sequence

import torch

PROMPT = "what is two plus three? the quick brown fox jumps over the lazy dog."
OTHER_PROMPT = "Solve for x: 2x + 3 = 7"


def reset_dynamic_rope(hf_model: torch.nn.Module) -> None:
    """transformers' dynamic NTK RoPE keeps the frequencies of the longest sequence it has seen until
    one shorter than max_position_embeddings comes; start every reference from the initial state."""
    for module in hf_model.modules():
        if hasattr(module, "original_inv_freq") and hasattr(module, "original_max_seq_len"):
            module.inv_freq = module.original_inv_freq.clone()
            module.max_seq_len_cached = module.original_max_seq_len


@torch.no_grad()
def hf_logits(hf_model: torch.nn.Module, ids: Sequence[int], cuts: Sequence[int] = ()) -> torch.Tensor:
    """float32 [len(ids), V] logits from transformers, fed in pieces split at `cuts` through its
    KV cache (no cuts: one full prefill)."""
    reset_dynamic_rope(hf_model)
    bounds = [0, *cuts, len(ids)]
    cache, pieces = None, []
    for begin, end in zip(bounds, bounds[1:]):
        out = hf_model(input_ids=torch.tensor([list(ids[begin:end])]), cache=cache, use_cache=True)
        cache = out.past_key_values
        pieces.append(out.logits[0].float())
    return torch.cat(pieces)


@torch.no_grad()
def hf_greedy(hf_model: torch.nn.Module, ids: Sequence[int], max_new_tokens: int) -> list[int]:
    """transformers generate(do_sample=False) with EOS disabled, so it runs max_new_tokens."""
    reset_dynamic_rope(hf_model)
    out = hf_model.generate(
        torch.tensor([list(ids)]), max_new_tokens=max_new_tokens, do_sample=False,
        eos_token_id=None, pad_token_id=0, attention_mask=torch.ones(1, len(ids), dtype=torch.long),
    )
    return out[0, len(ids):].tolist()
