"""What temperature, top-k and top-p mean, tied to a definition independent of a1: transformers'
logits warpers (Temperature -> TopK -> TopP, generate's order), plus hand-worked cases at the top-p
boundary. Checked on the twin's filter (a1_ext.reference.filtered_logits) and on the kernels' draws
(`sample`, and `speculative_verify`'s token after zero drafts), on the CPU and, where there is one, a
CUDA device. The engine's q rows are the twin's filter (tests/a1/engine/test_speculative.py)."""
from __future__ import annotations

import math

import pytest
import torch

from a1_ext import ops, reference
from cuda_cases import cuda_skip_reason
from sampling_checks import assert_draws_follow, on_device, row_params, warped_probs

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(bool(cuda_skip_reason()),
                                                                reason=str(cuda_skip_reason())))]

# probabilities 0.5, 0.3, 0.15, 0.05: top-p keeps a token iff the mass of the tokens likelier than
# it is < top_p, so the token whose cumulative mass crosses top_p is kept.
PROBS = [0.5, 0.3, 0.15, 0.05]
# (temperature, top_k, top_p, kept tokens), worked by hand:
HAND_WORKED = [
    (1.0, 0, 0.7, [0, 1]),  # masses above: 0, 0.5, 0.8, 0.95 -> token 1 crosses 0.7 and is kept
    (1.0, 0, 0.85, [0, 1, 2]),  # token 2 (0.8 above it) crosses 0.85
    (1.0, 0, 0.45, [0]),  # the top token alone exceeds top_p: it is kept
    (1.0, 0, 0.99, [0, 1, 2, 3]),
    (0.5, 0, 0.9, [0, 1]),  # T = 0.5 squares: 0.685, 0.247, 0.062, 0.007; token 2 has 0.932 above it
    (1.0, 2, 0.6, [0]),  # top-k first: 0.625, 0.375 -> token 1 has 0.625 >= 0.6 above it
    (1.0, 2, 1.0, [0, 1]),  # top-k alone keeps k tokens
    (1.0, 3, 0.9, [0, 1, 2]),  # top-k: 0.526, 0.316, 0.158 -> token 2 (0.842 above) crosses 0.9
]


def kept(probs: torch.Tensor) -> list[int]:
    """Token ids a filter left in: those of positive probability."""
    return torch.nonzero(probs > 0).flatten().tolist()


def kept_logits(logits: torch.Tensor) -> list[int]:
    """Token ids a filter left in: those whose logit is not -inf."""
    return torch.nonzero(torch.isfinite(logits)).flatten().tolist()


@pytest.mark.parametrize("temperature,top_k,top_p,want", HAND_WORKED)
def test_hand_worked_filters(temperature, top_k, top_p, want):
    logits = torch.tensor(PROBS).log()
    assert kept(warped_probs(logits, temperature, top_k, top_p)) == want  # the definition itself
    assert kept_logits(reference.filtered_logits(logits, temperature, top_k, top_p)) == want


def test_top_k_keeps_ties_with_the_kth():
    logits = torch.tensor([1.0, 3.0, 3.0, 0.5, 3.0, 2.0])  # the 2nd largest value is tied 3 times
    assert kept(warped_probs(logits, 1.0, 2, 1.0)) == [1, 2, 4]
    assert kept_logits(reference.filtered_logits(logits, 1.0, 2, 1.0)) == [1, 2, 4]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("temperature,top_k,top_p,want", HAND_WORKED)
def test_kernels_draw_exactly_the_hand_worked_sets(device, temperature, top_k, top_p, want):
    """4000 draws each: every kept token appears at its renormalized rate, no dropped one appears."""
    logits, draws = torch.tensor(PROBS).log(), 4000
    expected = torch.tensor(PROBS, dtype=torch.float64) ** (1 / temperature)
    mask = torch.zeros(4, dtype=torch.bool)
    mask[want] = True
    expected = torch.where(mask, expected, torch.zeros_like(expected))
    expected /= expected.sum()
    ids, _ = on_device(ops.sample, device)(logits.expand(draws, 4).contiguous(),
                                           **row_params(draws, temperature, top_k, top_p, seed=5))
    assert_draws_follow(torch.bincount(ids, minlength=4), expected, f"sample on {device}")
    # speculative_verify with no drafts draws its one token from the same filtered row
    out_ids, _, _ = on_device(ops.speculative_verify, device)(
        logits.expand(draws, 4).contiguous(), torch.zeros(0, dtype=torch.int64),
        torch.zeros(draws + 1, dtype=torch.int64), None, **row_params(draws, temperature, top_k, top_p, seed=6))
    assert_draws_follow(torch.bincount(out_ids[:, 0], minlength=4), expected, f"speculative_verify on {device}")


def random_cases(count: int, vocab: int = 50):
    """Rows of spread logits (a few masked) with random temperature, top-k and top-p."""
    g = torch.Generator().manual_seed(21)
    for _ in range(count):
        logits = 2 * torch.randn(vocab, generator=g)
        logits[torch.randint(0, vocab, (3,), generator=g)] = -math.inf
        temperature = float(torch.empty(1).uniform_(0.3, 2.0, generator=g))
        top_k = [0, 1, 3, 10, 30, vocab - 1, vocab, 2 * vocab][int(torch.randint(0, 8, (1,), generator=g))]
        top_p = [1.0, 0.99, 0.9, 0.7, 0.4, 0.1][int(torch.randint(0, 6, (1,), generator=g))]
        yield logits, temperature, top_k, top_p


def near_top_p_boundary(probs: torch.Tensor, top_p: float) -> bool:
    """Whether some token's mass-above lies within float rounding of top_p (either answer is right)."""
    ordered = probs[probs > 0].sort(descending=True).values
    above = torch.cumsum(ordered, 0) - ordered
    return bool(((above - top_p).abs() < 1e-5).any())


def test_twin_keeps_what_transformers_warpers_keep():
    checked = 0
    for logits, temperature, top_k, top_p in random_cases(400):
        want = warped_probs(logits, temperature, top_k, top_p)
        after_k = warped_probs(logits, temperature, top_k, 1.0)
        if top_p < 1.0 and near_top_p_boundary(after_k, top_p):
            continue
        label = f"T={temperature:.3f} top_k={top_k} top_p={top_p}"
        twin = reference.filtered_logits(logits, temperature, top_k, top_p)
        assert kept_logits(twin) == kept(want), label
        torch.testing.assert_close(torch.softmax(twin.double(), -1), want, atol=1e-6, rtol=1e-5, msg=label)
        checked += 1
    assert checked > 380  # the boundary skip is for rounding ties only
