"""`sample`: token-for-token agreement with the twin (same Philox streams), frequencies against
probabilities (CPU and CUDA kernels and the twin), greedy, seeding, opcheck and misuse errors."""
import math

import pytest
import torch

import a1_ext  # noqa: F401
from a1_ext import ops, reference
from sampling_checks import check_sample_distribution
from sampling_checks import implementation as pick


def _params(batch, temperature=1.0, top_k=0, top_p=1.0, seed=None, offset=0):
    seeds = torch.arange(batch, dtype=torch.int64) * 7919 + 11 if seed is None else torch.full((batch,), seed)
    return dict(
        temperature=torch.full((batch,), temperature, dtype=torch.float32),
        top_k=torch.full((batch,), top_k, dtype=torch.int64),
        top_p=torch.full((batch,), top_p, dtype=torch.float32),
        seed=seeds.to(torch.int64),
        offset=torch.full((batch,), offset, dtype=torch.int64),
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("vocab", [1, 111, 4099])
def test_sample_matches_twin_token_for_token(dtype, vocab):
    torch.manual_seed(vocab)
    batch = 48
    logits = (torch.randn(batch, vocab) * 3).to(dtype)
    params = _params(batch)
    params["temperature"] = torch.rand(batch) * 1.5 + 0.2
    params["temperature"][:5] = 0.0  # greedy rows
    params["top_k"] = torch.randint(0, 30, (batch,))
    params["top_p"] = torch.where(torch.rand(batch) < 0.5, torch.rand(batch) * 0.9 + 0.05, torch.ones(batch))
    params["offset"] = torch.randint(0, 2**40, (batch,))
    ids, logprob = ops.sample(logits, **params)
    ref_ids, ref_logprob = reference.sample(logits, **params)
    assert torch.equal(ids, ref_ids)
    torch.testing.assert_close(logprob, ref_logprob, atol=1e-5, rtol=1e-5)


# Each implementation with its number of draws: the twin loops over rows in Python (~0.4 ms a row).
IMPLEMENTATIONS = {"cpu": 40000, "cuda": 40000, "twin": 4000}


def implementation(name: str):
    return pick(name, ops.sample, reference.sample)


@pytest.mark.parametrize("impl", list(IMPLEMENTATIONS))
@pytest.mark.parametrize("temperature,top_k,top_p",
                         [(1.0, 0, 1.0), (0.7, 0, 1.0), (1.0, 8, 1.0), (1.3, 0, 0.8), (1.0, 12, 0.9)])
def test_sample_frequencies_follow_filtered_probabilities(impl, temperature, top_k, top_p):
    """Chi-square and G-test at p < 1e-6 against transformers' warpers, every token expected > 20
    times drawn, none of probability 0 (sampling_checks.py). Logits spread like a real model's (std
    2.5): on flat logits a wrong race (e.g. exponential noise in place of Gumbel noise) is nearly
    unbiased and would pass."""
    torch.manual_seed(3)
    vocab = 40
    logits = torch.randn(vocab) * 2.5
    logits[::9] = -math.inf  # zero-probability tokens
    check_sample_distribution(implementation(impl), logits, temperature, top_k, top_p, IMPLEMENTATIONS[impl])


def test_sample_greedy_is_argmax_and_logprob_is_raw():
    torch.manual_seed(4)
    logits = torch.randn(10, 333)
    ids, logprob = ops.sample(logits, **_params(10, temperature=0.0))
    assert torch.equal(ids, logits.argmax(-1))
    torch.testing.assert_close(logprob, torch.log_softmax(logits, -1).gather(1, ids[:, None])[:, 0])


@pytest.mark.parametrize("vocab", [1, 7, 8, 9, 333, 49152])
def test_greedy_takes_the_first_of_tied_maxima_anywhere_in_the_row(vocab):
    rows = torch.zeros(6, vocab)
    rows[0, -1] = 1.0  # in the scalar tail
    rows[1, :] = float("-inf")  # one finite value in a masked row (no finite value at all is refused)
    rows[1, -1] = -5.0
    rows[2, vocab // 2 :] = 3.0  # a tie from the middle on
    rows[3, vocab // 3] = 3e38  # the largest floats (+inf is refused: test_extreme_numerics.py)
    rows[4, -1], rows[4, vocab // 2] = 2.0, 2.0  # tie between the middle and the tail
    rows[5] = torch.linspace(-1, 1, vocab).flip(0)  # the first element
    ids, _ = ops.sample(rows, **_params(6, temperature=0.0))
    want = [vocab - 1, vocab - 1, vocab // 2, vocab // 3, vocab // 2, 0]
    assert ids.tolist() == want and torch.equal(ids, rows.argmax(-1))


def test_greedy_over_many_softmax_chunks():
    """Greedy rows take their token and logprob in one chunked pass (1024-float chunks): a tie across
    a chunk boundary goes to the first index, and the logprob is the full row's."""
    torch.manual_seed(6)
    rows = torch.randn(3, 5000)
    rows[0, 1023] = rows[0, 1024] = 9.0  # the last of one chunk and the first of the next
    rows[1, 4999] = 9.0  # the partial last chunk
    rows[2, 2048:] = float("-inf")  # whole chunks masked
    ids, logprob = ops.sample(rows, **_params(3, temperature=0.0))
    assert ids[0] == 1023 and ids[1] == 4999 and torch.equal(ids, rows.argmax(-1))
    torch.testing.assert_close(logprob, torch.log_softmax(rows, -1).gather(1, ids[:, None])[:, 0])


def test_sample_is_reproducible_per_seed_and_offset():
    torch.manual_seed(5)
    logits = torch.randn(64, 500)
    first, _ = ops.sample(logits, **_params(64, seed=123, offset=9))
    again, _ = ops.sample(logits, **_params(64, seed=123, offset=9))
    moved, _ = ops.sample(logits, **_params(64, seed=123, offset=10))
    assert torch.equal(first, again)
    assert not torch.equal(first, moved)
    # a row's draw does not depend on the other rows of the batch
    alone, _ = ops.sample(logits[7:8], **_params(1, seed=123, offset=9))
    assert alone[0] == first[7]


def test_opcheck_sample():
    torch.manual_seed(6)
    params = _params(4, temperature=0.9, top_k=5, top_p=0.9)
    torch.library.opcheck(torch.ops.a1.sample.default, (torch.randn(4, 50), *params.values()))


@pytest.mark.parametrize(
    "name,value,match",
    [
        ("temperature", torch.tensor([1.0, -1.0]), r"temperature\[1\] must be finite and >= 0"),
        ("temperature", torch.tensor([1.0, 1.0], dtype=torch.float64), "temperature must be Float"),
        ("top_k", torch.tensor([-1, 0]), r"top_k\[0\] must be >= 0"),
        ("top_p", torch.tensor([0.0, 1.0]), r"top_p\[0\] must be in \(0, 1\]"),
        ("top_p", torch.tensor([1.0, 1.5]), r"top_p\[1\]"),
        ("seed", torch.tensor([1, 2, 3]), r"seed.size\(0\) must equal the batch size"),
        ("offset", torch.tensor([1, 2], dtype=torch.int32), "offset must be Long"),
        ("logits", torch.randn(2, 5, 5), "logits must be 2-D"),
    ],
)
def test_sample_misuse_names_the_argument(name, value, match):
    args = dict(logits=torch.randn(2, 5), **_params(2))
    args[name] = value
    with pytest.raises(RuntimeError, match=match):
        ops.sample(**args)
