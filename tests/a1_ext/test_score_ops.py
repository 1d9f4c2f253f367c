"""step_score and linear_step_score against their pure-torch twins, opcheck, and misuse errors."""
import math

import pytest
import torch

import a1_ext  # noqa: F401
from a1_ext import ops, reference

DTYPES = [(torch.float32, 1e-5), (torch.bfloat16, 1e-4), (torch.float16, 1e-4)]


def _offsets(lengths: list[int]) -> torch.Tensor:
    return torch.tensor([0] + lengths, dtype=torch.int32).cumsum(0).to(torch.int32)


def _assert_scores_close(actual, expected, atol):
    torch.testing.assert_close(actual[0], expected[0], atol=atol, rtol=1e-5)
    torch.testing.assert_close(actual[1], expected[1], atol=atol, rtol=1e-5, equal_nan=True)


@pytest.mark.parametrize("dtype,atol", DTYPES)
@pytest.mark.parametrize("vocab", [111, 1024, 49157])
@pytest.mark.parametrize("lengths", [[1], [3, 0, 9], [0], [16, 1, 0, 30]])
@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_step_score_matches_twin(dtype, atol, vocab, lengths, temperature):
    torch.manual_seed(vocab + len(lengths))
    num_tokens = sum(lengths)
    logits = (torch.randn(num_tokens, vocab) * 4).to(dtype)
    token_ids = torch.randint(0, vocab, (num_tokens,))
    cu_seqlens = _offsets(lengths)
    expected = reference.step_score(logits, token_ids, cu_seqlens, temperature)
    _assert_scores_close(ops.step_score(logits, token_ids, cu_seqlens, temperature), expected, atol)


def test_step_score_empty_segment_is_nan_not_zero():
    logits = torch.randn(2, 50)
    _, step_nll = ops.step_score(logits, torch.tensor([1, 2]), torch.tensor([0, 2, 2]))
    assert not math.isnan(step_nll[0]) and math.isnan(step_nll[1])


def test_step_score_strided_and_extreme_logits():
    torch.manual_seed(0)
    big = torch.randn(9, 300) * 30
    big[0, 5:40] = -math.inf
    big[1, 7] = 1e4
    token_ids = torch.tensor([3, 7, 0, 1, 2, 3, 4, 5, 6])
    cu_seqlens = torch.tensor([0, 4, 9])
    for logits in (big[:, :200], big[:, ::2]):  # row-strided, then column-strided
        expected = reference.step_score(logits, token_ids, cu_seqlens, 1.0)
        _assert_scores_close(ops.step_score(logits, token_ids, cu_seqlens, 1.0), expected, 1e-4)


@pytest.mark.parametrize("dtype,atol", DTYPES)
@pytest.mark.parametrize("vocab,chunk", [(111, 7), (111, 4096), (1000, 1), (5003, 512)])
@pytest.mark.parametrize("lengths", [[1], [5, 0, 12]])
def test_linear_step_score_matches_twin(isa, dtype, atol, vocab, chunk, lengths):
    """bf16/fp16 LM heads at up to 32 rows are streamed by the 16-bit linear kernel on each ISA path,
    its fp32 sums never rounded to 16 bits."""
    torch.manual_seed(vocab * chunk)
    num_tokens, hidden_size = sum(lengths), 48
    hidden = torch.randn(num_tokens, hidden_size).to(dtype)
    lm_head = (torch.randn(vocab, hidden_size) / 4).to(dtype)
    token_ids = torch.randint(0, vocab, (num_tokens,))
    cu_seqlens = _offsets(lengths)
    expected = reference.linear_step_score(hidden, lm_head, token_ids, cu_seqlens, 0.8, chunk)
    actual = ops.linear_step_score(hidden, lm_head, token_ids, cu_seqlens, 0.8, chunk)
    _assert_scores_close(actual, expected, 10 * atol)


def test_linear_step_score_equals_step_score_on_materialized_logits():
    torch.manual_seed(1)
    hidden, lm_head = torch.randn(20, 32), torch.randn(777, 32)
    token_ids, cu_seqlens = torch.randint(0, 777, (20,)), torch.tensor([0, 8, 20])
    direct = ops.step_score(hidden @ lm_head.T, token_ids, cu_seqlens, 1.0)
    _assert_scores_close(ops.linear_step_score(hidden, lm_head, token_ids, cu_seqlens, 1.0, 100), direct, 1e-4)


@pytest.mark.parametrize("chunk", [1, 16, 100, 4096])
def test_linear_step_score_on_lm_head_panels(chunk):
    """The LM head as panels (how load_model lays out fp32 models): the same scores as on [V, H];
    the CPU rounds chunk up to whole panels."""
    torch.manual_seed(chunk)
    hidden, lm_head = torch.randn(13, 40), torch.randn(784, 40) / 4
    token_ids, cu_seqlens = torch.randint(0, 784, (13,)), torch.tensor([0, 5, 13])
    rows = ops.linear_step_score(hidden, lm_head, token_ids, cu_seqlens, 0.7, chunk)
    panels = ops.linear_step_score(hidden, ops.to_weight_panels(lm_head), token_ids, cu_seqlens, 0.7, chunk)
    _assert_scores_close(panels, rows, 1e-4)
    twin = reference.linear_step_score(hidden, ops.to_weight_panels(lm_head), token_ids, cu_seqlens, 0.7, chunk)
    _assert_scores_close(panels, twin, 1e-4)


def test_opcheck_score_ops():
    torch.manual_seed(2)
    logits, token_ids, cu_seqlens = torch.randn(6, 37), torch.randint(0, 37, (6,)), torch.tensor([0, 2, 6])
    torch.library.opcheck(torch.ops.a1.step_score.default, (logits, token_ids, cu_seqlens, 0.9))
    hidden, lm_head = torch.randn(6, 16), torch.randn(37, 16)
    torch.library.opcheck(torch.ops.a1.linear_step_score.default, (hidden, lm_head, token_ids, cu_seqlens, 1.0, 8))


@pytest.mark.parametrize(
    "change,match",
    [
        (dict(token_ids=torch.tensor([0, 1, 2], dtype=torch.int32)), "token_ids must be Long"),
        (dict(token_ids=torch.tensor([0, 1])), "token_ids.size"),
        (dict(token_ids=torch.tensor([0, 1, 50])), "token_ids must be in"),
        (dict(cu_seqlens=torch.tensor([0, 2])), r"cu_seqlens\[-1\]"),
        (dict(cu_seqlens=torch.tensor([0, 2, 1, 3])), "cu_seqlens must be non-decreasing"),
        (dict(cu_seqlens=torch.tensor([1, 3])), r"cu_seqlens\[0\]"),
        (dict(temperature=0.0), "temperature"),
        (dict(logits=torch.randn(3, 50).to(torch.int64)), "logits must be float32"),
        (dict(logits=torch.randn(3)), "logits must be 2-D"),
    ],
)
def test_step_score_misuse_names_the_argument(change, match):
    args = dict(logits=torch.randn(3, 50), token_ids=torch.tensor([0, 1, 2]), cu_seqlens=torch.tensor([0, 3]),
                temperature=1.0)
    args.update(change)
    with pytest.raises(RuntimeError, match=match):
        ops.step_score(**args)


@pytest.mark.parametrize(
    "change,match",
    [
        (dict(lm_head=torch.randn(50, 9)), r"lm_head.size\(1\)"),
        (dict(lm_head=torch.randn(50, 8).double()), "lm_head must have hidden's dtype"),
        (dict(chunk=0), "chunk must be > 0"),
        (dict(lm_head=torch.randn(5, 8, 10)), r"lm_head.size\(2\) must equal the panel width 16"),
        (dict(lm_head=torch.randn(8, 5, 16).transpose(0, 1)), "lm_head panels .* must be contiguous"),
    ],
)
def test_linear_step_score_misuse_names_the_argument(change, match):
    args = dict(hidden=torch.randn(3, 8), lm_head=torch.randn(50, 8), token_ids=torch.tensor([0, 1, 2]),
                cu_seqlens=torch.tensor([0, 3]), temperature=1.0, chunk=16)
    args.update(change)
    with pytest.raises(RuntimeError, match=match):
        ops.linear_step_score(**args)
