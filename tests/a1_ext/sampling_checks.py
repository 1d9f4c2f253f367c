"""Statistical checks of the random ops (`sample`, `speculative_verify`), written against a callable
with the op's signature so one check runs on the CPU kernel, the CUDA kernel and the pure-torch twin
(and, in a mutation audit, on deliberately broken copies of the twin).

The expected distributions come from transformers' logits warpers (Temperature -> TopK -> TopP, the
order of `generate`), a definition independent of a1's own. A check fails when a chi-square or a
G-test rejects the draws at p < 1e-6, when a token of probability 0 is drawn, or when a token whose
expected count exceeds 20 never appears: samplers whose top-k keeps k-1 tokens or whose top-p drops
the token that crosses the threshold fail on the last rule alone, whatever their chi-square.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from scipy import stats

P_VALUE_FLOOR = 1e-6
MUST_APPEAR = 20.0  # a token expected this many times and never drawn is a bug, not bad luck
POOL_BELOW = 5.0  # cells expected fewer times are pooled: the chi-square approximation needs ~5

SampleFn = Callable[..., tuple[torch.Tensor, torch.Tensor]]
VerifyFn = Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


def warped_probs(logits_row: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """The filtered distribution (float64) as transformers' warpers define it; top_k 0 and top_p 1
    are off, as in transformers' generate."""
    from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    scores = logits_row.detach().double().cpu()[None]
    scores = TemperatureLogitsWarper(float(temperature))(None, scores)
    if top_k > 0:
        scores = TopKLogitsWarper(int(top_k))(None, scores)
    if top_p < 1.0:
        scores = TopPLogitsWarper(float(top_p))(None, scores)
    return torch.softmax(scores[0], -1)


def assert_draws_follow(counts: torch.Tensor, probs: torch.Tensor, label: str) -> None:
    """counts[v] draws of token v are a multinomial sample of probs (see the module docstring)."""
    counts, probs = counts.double().cpu(), probs.double().cpu()
    n = float(counts.sum())
    assert n > 0, f"{label}: no draws"
    expected = probs * n
    drawn_impossible = torch.nonzero((probs == 0) & (counts > 0)).flatten().tolist()
    assert not drawn_impossible, f"{label}: tokens of probability 0 drawn: {drawn_impossible}"
    missing = torch.nonzero((expected > MUST_APPEAR) & (counts == 0)).flatten().tolist()
    assert not missing, f"{label}: tokens never drawn though expected > {MUST_APPEAR:g} times: " + ", ".join(
        f"{v} (expected {float(expected[v]):.0f})" for v in missing)
    big = expected >= POOL_BELOW
    observed = torch.cat([counts[big], counts[~big].sum()[None]])
    wanted = torch.cat([expected[big], expected[~big].sum()[None]])
    keep = wanted > 0  # the pooled cell is empty when every token is likely enough
    observed, wanted = observed[keep].numpy(), wanted[keep].numpy()
    if observed.size < 2:
        return  # one possible outcome: the zero-probability rule above was the whole test
    for name, lambda_ in (("chi-square", "pearson"), ("G-test", "log-likelihood")):
        statistic, p_value = stats.power_divergence(observed, wanted, lambda_=lambda_)
        assert p_value > P_VALUE_FLOOR, (
            f"{label}: {name} {statistic:.1f} on {observed.size - 1} dof, p = {p_value:.2e} < {P_VALUE_FLOOR:g}\n"
            f"observed {observed.tolist()}\nexpected {[round(float(w), 1) for w in wanted]}")


def row_params(rows: int, temperature: float, top_k: int, top_p: float, seed: int, offset: int = 0) -> dict:
    """Per-row tensors for `rows` independent draws: one seed per row, the same offset."""
    return dict(
        temperature=torch.full((rows,), float(temperature), dtype=torch.float32),
        top_k=torch.full((rows,), int(top_k), dtype=torch.int64),
        top_p=torch.full((rows,), float(top_p), dtype=torch.float32),
        seed=torch.arange(rows, dtype=torch.int64) * 7919 + seed,
        offset=torch.full((rows,), offset, dtype=torch.int64),
    )


def on_device(op: Callable, device: str) -> Callable:
    """op with every tensor argument moved to device and every tensor result moved back."""
    def move(value):
        return value.to(device) if isinstance(value, torch.Tensor) else value

    def call(*args, **kwargs):
        out = op(*[move(a) for a in args], **{k: move(v) for k, v in kwargs.items()})
        return tuple(t.cpu() for t in out)
    return call


def implementation(name: str, op: Callable, twin: Callable) -> Callable:
    """The twin, or op on the CPU / on CUDA (skipping the test where CUDA cannot run)."""
    if name == "twin":
        return twin
    if name == "cuda":
        import pytest
        from cuda_cases import cuda_skip_reason

        reason = cuda_skip_reason()
        if reason:
            pytest.skip(reason)
    return on_device(op, name)


def check_sample_distribution(sample_fn: SampleFn, logits_row: torch.Tensor, temperature: float, top_k: int,
                              top_p: float, draws: int, seed: int = 17) -> None:
    """`draws` rows of the same logits, one seed each: the tokens follow the warped distribution."""
    vocab = logits_row.numel()
    logits = logits_row.expand(draws, vocab).contiguous()
    ids, _ = sample_fn(logits, **row_params(draws, temperature, top_k, top_p, seed))
    counts = torch.bincount(ids.cpu(), minlength=vocab)
    assert_draws_follow(counts, warped_probs(logits_row, temperature, top_k, top_p),
                        f"sample(T={temperature}, top_k={top_k}, top_p={top_p})")


def check_verify_distribution(verify_fn: VerifyFn, target_rows: torch.Tensor, draft_dists: Optional[torch.Tensor],
                              fixed_drafts: Optional[list[int]], temperature: float, top_k: int, top_p: float,
                              requests: int, seed: int = 23) -> None:
    """Every request verifies k drafts against the same k + 1 target rows. Drafts are drawn from
    draft_dists [k, V] (passed as draft_probs), or are fixed_drafts (a deterministic draft: no
    draft_probs). Whatever the draft, output token i of the requests that reached position i
    (num_accepted >= i) must follow the warped target row i: the first token, the tokens after
    accepted drafts and the bonus token after all k."""
    k, vocab = target_rows.shape[0] - 1, target_rows.shape[1]
    g = torch.Generator().manual_seed(seed)
    if draft_dists is not None:
        drafts = torch.multinomial(draft_dists, requests, replacement=True, generator=g).T.contiguous()
        draft_probs = draft_dists.repeat(requests, 1)
    else:
        drafts, draft_probs = torch.tensor(fixed_drafts).expand(requests, k).contiguous(), None
    target = target_rows.repeat(requests, 1)
    cu = torch.arange(requests + 1, dtype=torch.int64) * k
    out_ids, num_accepted, _ = verify_fn(target, drafts.reshape(-1), cu, draft_probs,
                                         **row_params(requests, temperature, top_k, top_p, seed))
    out_ids, num_accepted = out_ids.cpu(), num_accepted.cpu()
    for i in range(k + 1):
        reached = num_accepted >= i
        counts = torch.bincount(out_ids[reached, i], minlength=vocab)
        assert_draws_follow(counts, warped_probs(target_rows[i], temperature, top_k, top_p),
                            f"verify position {i} (T={temperature}, top_k={top_k}, top_p={top_p}, "
                            f"{'q drafts' if draft_dists is not None else 'fixed drafts'})")
