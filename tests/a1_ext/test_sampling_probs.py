"""`sampling_probs`: the distribution `sample` draws each row from, computed by the kernels' own
filter: equal to the twin and to transformers' warpers, `sample`'s draws follow it (so speculative
decoding's q rows are exactly what the draft sampled from), greedy and empty rows one-hot, misuse
refused as `sample` refuses it, opcheck."""
import pytest
import torch

import a1_ext  # noqa: F401
from a1_ext import ops, reference
from sampling_checks import assert_draws_follow, implementation, row_params, warped_probs

FILTERS = [(1.0, 0, 1.0), (0.7, 0, 1.0), (1.0, 8, 1.0), (1.3, 0, 0.8), (1.0, 12, 0.9), (0.5, 3, 0.5)]


def params(rows, temperature, top_k, top_p):
    p = row_params(rows, temperature, top_k, top_p, seed=0)
    return p["temperature"], p["top_k"], p["top_p"]


@pytest.mark.parametrize("impl", ["cpu", "cuda"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("vocab", [1, 111, 4099])
def test_matches_the_twin(impl, dtype, vocab):
    op = implementation(impl, lambda *a: (ops.sampling_probs(*a),), lambda *a: (reference.sampling_probs(*a),))
    torch.manual_seed(vocab)
    rows = 24
    logits = (torch.randn(rows, vocab) * 3).to(dtype)
    temperature = torch.rand(rows) * 1.5 + 0.2
    temperature[:4] = 0.0  # greedy rows
    top_k = torch.randint(0, 30, (rows,))
    top_p = torch.where(torch.rand(rows) < 0.5, torch.rand(rows) * 0.9 + 0.05, torch.ones(rows))
    got = op(logits, temperature, top_k, top_p)[0]
    want = reference.sampling_probs(logits, temperature, top_k, top_p)
    torch.testing.assert_close(got, want, atol=2e-6, rtol=1e-5)
    assert torch.equal(got > 0, want > 0)  # the same kept tokens
    assert torch.allclose(got.sum(1), torch.ones(rows), atol=1e-5)


@pytest.mark.parametrize("temperature,top_k,top_p", FILTERS)
def test_equals_transformers_warpers(temperature, top_k, top_p):
    torch.manual_seed(1)
    row = torch.randn(57) * 2.5
    got = ops.sampling_probs(row[None], *params(1, temperature, top_k, top_p))[0]
    torch.testing.assert_close(got.double(), warped_probs(row, temperature, top_k, top_p), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("temperature,top_k,top_p", FILTERS)
def test_sample_draws_follow_it(temperature, top_k, top_p):
    """40,000 draws of `sample` (one seed each) against sampling_probs at p < 1e-6: the q rows are
    the distribution the tokens came from. A q without the top-p filter fails (the broken variant)."""
    torch.manual_seed(3)
    row = torch.randn(40) * 2.5
    draws = 40000
    ids, _ = ops.sample(row.expand(draws, 40).contiguous(), **row_params(draws, temperature, top_k, top_p, seed=9))
    counts = torch.bincount(ids, minlength=40)
    q = ops.sampling_probs(row[None], *params(1, temperature, top_k, top_p))[0].double()
    assert_draws_follow(counts, q / q.sum(), f"sample vs sampling_probs (T={temperature}, k={top_k}, p={top_p})")
    if top_p < 1.0:
        unfiltered = ops.sampling_probs(row[None], *params(1, temperature, top_k, 1.0))[0].double()
        with pytest.raises(AssertionError):
            assert_draws_follow(counts, unfiltered / unfiltered.sum(), "q without top-p")


def test_greedy_and_ties_and_empty_batch():
    logits = torch.tensor([[1.0, 3.0, 3.0, 0.5], [0.0, -1.0, 2.0, 2.0]])
    greedy = ops.sampling_probs(logits, torch.zeros(2), torch.zeros(2, dtype=torch.int64), torch.ones(2))
    assert torch.equal(greedy, torch.tensor([[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]]))  # the first argmax
    tied = ops.sampling_probs(logits[:1], torch.ones(1), torch.tensor([2]), torch.ones(1))[0]
    assert tied[0] == 0 and tied[3] == 0 and tied[1] == tied[2] == 0.5  # top-k keeps ties
    empty = ops.sampling_probs(torch.empty(0, 7), torch.ones(0), torch.zeros(0, dtype=torch.int64), torch.ones(0))
    assert empty.shape == (0, 7)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_row_that_is_no_distribution_is_refused(bad):
    logits = torch.randn(3, 10)
    logits[1, 4] = bad
    with pytest.raises(RuntimeError, match=r"logits\[1\] is not a distribution"):
        ops.sampling_probs(logits, torch.ones(3), torch.zeros(3, dtype=torch.int64), torch.ones(3))
    with pytest.raises(RuntimeError, match=r"top_p\[0\] must be in \(0, 1\]"):
        ops.sampling_probs(torch.randn(1, 5), torch.ones(1), torch.zeros(1, dtype=torch.int64), torch.zeros(1))


def test_opcheck():
    args = (torch.randn(4, 33), torch.tensor([0.0, 1.0, 0.7, 1.2]), torch.tensor([0, 5, 0, 2]),
            torch.tensor([1.0, 1.0, 0.8, 0.5]))
    torch.library.opcheck(torch.ops.a1.sampling_probs.default, args)
