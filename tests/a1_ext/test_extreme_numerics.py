"""Numerics at the extremes, identical on every implementation of an op: the CPU kernel, the
pure-torch twin, the CUDA kernel on a device (skipped without one) and the same CUDA kernel in the
CPU emulator (cuda_emu/, skipped without the CUDA headers).

- log-probs are (x - max) - log(sum exp(x - max)) of the scaled logits x: exact at temperatures
  1e-6 / 1e-8 and at raw logits of 1e8, on every op that returns them (step_score,
  linear_step_score, sample, speculative_verify), against float64;
- a row that is not a distribution (NaN, +inf, every value -inf) is refused by sample and
  speculative_verify, greedy or not, naming the row;
- temperatures below 1e-5 are greedy.
"""
from __future__ import annotations

import math

import pytest
import torch

from cuda_cases import cuda_skip_reason

import a1_ext  # noqa: F401
from a1_ext import ops, reference

IMPLS = ["cpu", "twin", "cuda", "emulated"]


def _emu():
    from cuda_emu import build

    if build.cuda_include_dir() is None:
        pytest.skip("CUDA toolkit headers not found: the emulated kernels cannot be built")
    from cuda_emu import ops_emu

    return ops_emu


def call(impl: str, name: str, *args):
    """Op `name` of implementation `impl` on CPU tensors; results come back on the CPU."""
    if impl == "cpu":
        return getattr(ops, name)(*args)
    if impl == "twin":
        return getattr(reference, name)(*args)
    if impl == "emulated":
        return getattr(_emu(), name)(*args)
    reason = cuda_skip_reason()
    if reason:
        pytest.skip(reason)
    moved = [a.cuda() if isinstance(a, torch.Tensor) else a for a in args]
    out = getattr(ops, name)(*moved)
    return tuple(o.cpu() for o in out) if isinstance(out, tuple) else out.cpu()


def params(batch: int, temperature: float = 1.0, seed: int = 0) -> list[torch.Tensor]:
    return [torch.full((batch,), temperature), torch.zeros(batch, dtype=torch.int64), torch.ones(batch),
            torch.arange(batch, dtype=torch.int64) + seed, torch.zeros(batch, dtype=torch.int64)]


def exact_logprob(logits: torch.Tensor, ids: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """float64 log_softmax of the float32 scaled logits (every kernel divides in float32 first)."""
    scaled = (logits.float() / temperature).double()
    return torch.log_softmax(scaled, -1).gather(1, ids.long()[:, None])[:, 0]


def extreme_rows(scale: str) -> torch.Tensor:
    """Rows of scaled logits ~1e6..1e8 with O(1) gaps between the top values and zeros far below."""
    g = torch.Generator().manual_seed(0)
    if scale == "raw 1e8":  # float32 spacing at 1e8 is 8: gaps of a few steps
        top = 1e8 + 8.0 * torch.randint(-3, 4, (5, 9), generator=g).float()
    elif scale == "T=0.7 at 7e5":  # x / 0.7 and x * (1 / 0.7) differ by an ulp (0.0625) for some x
        top = 7e5 + 0.0625 * torch.randint(-40, 40, (5, 9), generator=g).float()
    else:  # near 1 in steps of 2^-24: gaps of ~0.1 to ~10 after dividing by 1e-6 or 1e-8
        top = 1.0 - torch.randint(0, 40, (5, 9), generator=g).float() * 2.0**-24
    return torch.cat([top, torch.zeros(5, 3)], 1)


def issue_example(scale: str) -> torch.Tensor:
    """The issue's row: logits [1, 1, 0] (times 1e8 for raw logits); token 0 has log-prob log(1/2)."""
    return torch.tensor([[1.0, 1.0, 0.0]]) * (1e8 if scale == "raw 1e8" else 1.0)


ISSUE_SCALES = [("T=1e-6", 1e-6), ("T=1e-8", 1e-8), ("raw 1e8", 1.0)]
# every kernel divides by the temperature like the twin: multiplying by 1 / T rounds differently
SCALES = ISSUE_SCALES + [("T=0.7 at 7e5", 0.7)]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("scale,temperature", SCALES)
def test_step_score_logprobs_are_exact_at_extreme_scales(impl, scale, temperature):
    logits = extreme_rows(scale)
    ids = torch.tensor([0, 1, 2, 9, 7])
    token_logprob, step_nll = call(impl, "step_score", logits, ids, torch.tensor([0, 2, 5]), temperature)
    want = exact_logprob(logits, ids, temperature)
    torch.testing.assert_close(token_logprob.double(), want, atol=2e-6, rtol=1e-6)
    torch.testing.assert_close(step_nll.double(), -torch.stack([want[:2].mean(), want[2:].mean()]), atol=2e-6,
                               rtol=1e-6)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("scale,temperature", SCALES)
@pytest.mark.parametrize("chunk", [5, 4096])  # several vocab tiles, or one
def test_linear_step_score_logprobs_are_exact_at_extreme_scales(impl, scale, temperature, chunk):
    logits = extreme_rows(scale)
    hidden = torch.ones(logits.shape[0], 1)  # hidden @ lm_head.T: one exact product per logit
    lm_head = logits[:1].T.contiguous()  # [V, 1]: every row scores the first row's logits
    ids = torch.tensor([0, 1, 2, 3, 7])
    token_logprob, _ = call(impl, "linear_step_score", hidden, lm_head, ids, torch.tensor([0, 5]), temperature, chunk)
    want = exact_logprob(logits[:1].expand(5, -1), ids, temperature)
    torch.testing.assert_close(token_logprob.double(), want, atol=2e-6, rtol=1e-6)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("scale,temperature", ISSUE_SCALES)
def test_the_issue_example_scores_log_one_half(impl, scale, temperature):
    """[1, 1, 0] at T = 1e-6 gave -0.6875 and at 1e-8 gave 0.0; so did [1e8, 1e8, 0] at T = 1."""
    logits, one = issue_example(scale), torch.tensor([0, 1])
    token_logprob, _ = call(impl, "step_score", logits, one[:1], one, temperature)
    assert token_logprob.item() == pytest.approx(math.log(0.5), abs=1e-6)
    token_logprob, _ = call(impl, "linear_step_score", torch.ones(1, 1), logits.T.contiguous(), one[:1], one,
                            temperature, 16)
    assert token_logprob.item() == pytest.approx(math.log(0.5), abs=1e-6)
    if temperature == 1.0:  # sample and verify report raw log-probs
        _, logprob = call(impl, "sample", logits, *params(1, 0.0))
        assert logprob.item() == pytest.approx(math.log(0.5), abs=1e-6)
        _, _, target_logprob = call(impl, "speculative_verify", logits.expand(2, 3).contiguous(), one[:1], one, None,
                                    *params(1, 0.0))
        assert target_logprob.item() == pytest.approx(math.log(0.5), abs=1e-6)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_sample_logprob_is_exact_for_huge_raw_logits(impl, temperature):
    logits = extreme_rows("raw 1e8")
    ids, logprob = call(impl, "sample", logits, *params(5, temperature))
    torch.testing.assert_close(logprob.double(), exact_logprob(logits, ids), atol=2e-6, rtol=1e-6)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_speculative_verify_target_logprob_is_exact_for_huge_raw_logits(impl, temperature):
    rows = extreme_rows("raw 1e8")  # request 0: 3 drafts + bonus row; request 1: 0 drafts + bonus
    drafts = torch.tensor([0, 1, 4])
    _, _, target_logprob = call(impl, "speculative_verify", rows, drafts, torch.tensor([0, 3, 3]), None,
                                *params(2, temperature))
    torch.testing.assert_close(target_logprob.double(), exact_logprob(rows[:3], drafts), atol=2e-6, rtol=1e-6)


# ----------------------------------------------------------------------------- rows with no distribution
BAD_ROWS = {
    "nan": lambda row: row.index_fill_(0, torch.tensor([5]), math.nan),
    "all nan": lambda row: row.fill_(math.nan),
    "+inf": lambda row: row.index_fill_(0, torch.tensor([2]), math.inf),
    "all -inf": lambda row: row.fill_(-math.inf),
}


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("bad", list(BAD_ROWS))
@pytest.mark.parametrize("temperature", [0.0, 0.8])  # greedy must not hide a NaN either
def test_sample_refuses_a_row_that_is_not_a_distribution(impl, bad, temperature):
    logits = torch.randn(4, 40, generator=torch.Generator().manual_seed(1))
    logits[:, 7] = -math.inf  # a masked token is fine
    BAD_ROWS[bad](logits[2])
    if impl == "emulated":  # the kernel's half of the contract: it flags the row for the glue
        ids, logprob = _emu().sample(logits, *params(4, temperature))
        assert ids[2] == -1 and math.isnan(logprob[2]) and bool((ids[[0, 1, 3]] >= 0).all())
        return
    with pytest.raises(RuntimeError, match=r"logits\[2\] is not a distribution to sample from"):
        call(impl, "sample", logits, *params(4, temperature))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("bad", list(BAD_ROWS))
@pytest.mark.parametrize("temperature", [0.0, 0.8])
@pytest.mark.parametrize("row", [1, 2, 3, 4])  # request 0: drafts 0-1, bonus 2; request 1: draft 3, bonus 4
def test_speculative_verify_refuses_a_target_row_that_is_not_a_distribution(impl, bad, temperature, row):
    rows = torch.randn(5, 30, generator=torch.Generator().manual_seed(2))
    BAD_ROWS[bad](rows[row])
    args = (rows, torch.tensor([1, 2, 3]), torch.tensor([0, 2, 3]), None, *params(2, temperature))
    request = 0 if row < 3 else 1
    if impl == "emulated":  # the kernel flags the request (num_accepted -1) for the glue
        out_ids, num_accepted, _ = _emu().speculative_verify(*args)
        assert num_accepted.tolist()[request] == -1 and num_accepted[1 - request] >= 0
        assert bool((out_ids[request] == -1).all())
        return
    with pytest.raises(RuntimeError, match=rf"target_logits\[{row}\] is not a distribution to sample from"):
        call(impl, "speculative_verify", *args)


# ----------------------------------------------------------------------------- tiny temperatures
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("temperature", [1e-38, 1e-30, 9e-6])
def test_temperatures_below_1e_5_are_greedy(impl, temperature):
    logits = torch.randn(16, 50, generator=torch.Generator().manual_seed(3)) * 5
    ids, _ = call(impl, "sample", logits, *params(16, temperature))
    assert torch.equal(ids, logits.argmax(-1))
    # requests of 2, 3 and 4 drafts (rows 0-2, 3-6, 7-11), each draft the argmax of its row ...
    rows, drafts, cu = logits[:12], logits[:12].argmax(-1)[[0, 1, 3, 4, 5, 7, 8, 9, 10]], torch.tensor([0, 2, 5, 9])
    drafts[6] = (drafts[6] + 1) % 50  # ... but request 2's second, which greedy rejects
    got = call(impl, "speculative_verify", rows, drafts, cu, None, *params(3, temperature))
    want = call(impl, "speculative_verify", rows, drafts, cu, None, *params(3, 0.0))
    assert all(torch.equal(a, b) for a, b in zip(got[:2], want[:2]))


@pytest.mark.parametrize("impl", IMPLS)
def test_sampling_starts_at_1e_5(impl):
    """Two tied maxima: a draw picks either across seeds; greedy (just below 1e-5) always the first."""
    logits = torch.tensor([[3.0, 3.0, -2.0]]).expand(64, 3).contiguous()
    drawn, _ = call(impl, "sample", logits, *params(64, 1e-5, seed=11))
    assert set(drawn.tolist()) == {0, 1}
    greedy, _ = call(impl, "sample", logits, *params(64, 0.99e-5, seed=11))
    assert set(greedy.tolist()) == {0}


# ----------------------------------------------------------------------------- paged attention
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("seq_len", [20, 45])  # partial tiles of 32 keys: lanes past the end hold no key
def test_attention_never_reads_slots_past_the_sequence(impl, seq_len):
    """Cache block 0 (no row's) holds NaN and inf: it must not leak into any output. The CUDA kernel
    once read V at slot 0 with weight 0 for the unused lanes of a partial tile (0 * NaN = NaN)."""
    g = torch.Generator().manual_seed(4)
    k_cache, v_cache = torch.randn(6, 16, 2, 32, generator=g), torch.randn(6, 16, 2, 32, generator=g)
    k_cache[0], v_cache[0] = math.inf, math.nan
    table = torch.tensor([[1, 2, 3], [5, 4, 0]], dtype=torch.int32)  # row 1's third block is past its keys
    args = (torch.randn(3, 4, 32, generator=g), k_cache, v_cache, table,
            torch.tensor([seq_len, 30], dtype=torch.int32), torch.tensor([0, 2, 3], dtype=torch.int32), 0.2)
    out = call(impl, "paged_attention", *args)
    assert bool(torch.isfinite(out).all())
    torch.testing.assert_close(out, reference.paged_attention(*args), atol=1e-5, rtol=1e-5)
