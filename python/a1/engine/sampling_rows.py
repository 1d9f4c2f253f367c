"""What the step's sampling rows are made of, apart from the forward: the top-k a row really uses,
rows that are not distributions, the ids banned before min_tokens, the q rows of draft proposals,
and running an op per request when its batch is refused."""
from __future__ import annotations

from typing import Callable, TypeVar, Union

import torch

from a1_ext.reference import GREEDY_TEMPERATURE

R = TypeVar("R")


def effective_top_k(top_k: int, vocab: int) -> int:
    """top_k >= the vocabulary keeps every token: 0 (also keeps huge values inside int64)."""
    return top_k if top_k < vocab else 0


def non_finite_rows(logits: torch.Tensor) -> list[int]:
    """Rows with a NaN or +inf logit or no finite one (-inf alone is a legitimate mask)."""
    bad = ~torch.isfinite(logits.amax(dim=1))
    return torch.nonzero(bad).flatten().tolist() if bool(bad.any()) else []


def each_alone_on_failure(run: Callable[[list[int]], list[R]], items: list[int]) -> list[Union[R, Exception]]:
    """run(items) gives one result per item, batched. If the batched op refuses (a row it cannot
    take), each item runs alone: a row the kernel refuses fails only its own request, as the
    item's exception in its place, and the others get what the batch would have given them
    (every op's row depends only on that row and its own seed and offset)."""
    try:
        return run(items)
    except Exception as err:
        if len(items) == 1:
            return [err]
    results: list[Union[R, Exception]] = []
    for item in items:
        try:
            results.extend(run([item]))
        except Exception as err:
            results.append(err)
    return results


def banned_ids(params, eos_token_ids: list[int]) -> list[int]:
    """Token ids masked before params.min_tokens tokens are generated."""
    return params.stop_token_ids + ([] if params.ignore_eos else list(eos_token_ids))


def filtered_probs(
    logits: torch.Tensor, temperature: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor
) -> torch.Tensor:
    """The rows `ops.sample` draws from, batched: softmax of logits / temperature after the top-k
    (ties kept) and top-p (token kept iff the mass of strictly likelier tokens is < top_p) filters
    of a1_ext.reference.filtered_logits; a one-hot first argmax where the temperature is below the
    ops' greedy threshold (as `sample` draws there)."""
    logits = logits.float()
    vocab = logits.shape[1]
    greedy = temperature.float() < torch.tensor(GREEDY_TEMPERATURE, dtype=torch.float32)
    scaled = logits / torch.where(greedy, torch.ones_like(temperature), temperature).unsqueeze(1)
    use_k = (top_k > 0) & (top_k < vocab)
    if bool(use_k.any()):
        k_max = int(top_k[use_k].max())
        kth = scaled.topk(k_max, dim=1).values.gather(1, (top_k.clamp(1, k_max) - 1).unsqueeze(1))
        scaled = scaled.masked_fill(use_k.unsqueeze(1) & (scaled < kth), float("-inf"))
    use_p = top_p < 1
    if bool(use_p.any()):
        probs = torch.softmax(scaled.double(), dim=1)
        ascending = probs.sort(dim=1).values
        at_or_below = ascending.cumsum(dim=1)
        idx = torch.searchsorted(ascending, probs, right=True) - 1
        greater = at_or_below[:, -1:] - at_or_below.gather(1, idx)
        scaled = scaled.masked_fill(use_p.unsqueeze(1) & ~(greater < top_p.double().unsqueeze(1)), float("-inf"))
    probs = torch.softmax(scaled, dim=1)
    if bool(greedy.any()):
        one_hot = torch.zeros_like(probs).scatter_(1, logits.argmax(dim=1, keepdim=True), 1.0)
        probs = torch.where(greedy.unsqueeze(1), one_hot, probs)
    return probs
