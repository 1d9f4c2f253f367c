"""What the step's sampling rows are made of, apart from the forward: the top-k a row really uses,
rows that are not distributions, the ids banned before min_tokens, and running an op per request
when its batch is refused. (The draft's q rows come from the sampling_probs op, the kernels' own
filter: no copy of the rule here.)"""
from __future__ import annotations

from typing import Callable, TypeVar, Union

import torch

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
