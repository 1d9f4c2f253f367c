"""a1::linear on CPU against its twin (F.linear), on every instruction-set path of the fp32
weight-streaming kernel and on the BLAS fallback (more than 32 rows, strided last dim); bf16/fp16
weights: test_linear_half.py."""
import pytest
import torch

from a1_ext import ops, reference
from threads import on_threads

def linear_case(tokens, out_features, in_features, dtype=torch.float32, bias=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(tokens, in_features, generator=g).to(dtype)
    weight = (torch.randn(out_features, in_features, generator=g) / in_features**0.5).to(dtype)
    b = torch.randn(out_features, generator=g).to(dtype) if bias else None
    return x, weight, b


def assert_matches_float64(out, x, weight, bias):
    """The kernel's fp32 sums against float64 ones: rounding error grows like sqrt(K) * eps."""
    want = reference.linear(x.double(), weight.double(), None if bias is None else bias.double())
    assert out.shape == want.shape and out.dtype == x.dtype and out.is_contiguous()
    torch.testing.assert_close(out.double(), want, rtol=1e-5, atol=1e-5 * x.shape[1] ** 0.5)


# T around the register tiles (4 token rows) and the BLAS crossover (32); N around the row blocks
# (4, 8) and a thread split; K around the vector widths (4, 8, 16 floats) with a scalar tail.
@pytest.mark.parametrize("tokens", [1, 2, 3, 4, 5, 7, 8, 13, 32])
@pytest.mark.parametrize("out_features,in_features", [(1, 16), (9, 17), (37, 64), (960, 576), (300, 1539)])
def test_linear_matches_twin(isa, tokens, out_features, in_features):
    x, weight, _ = linear_case(tokens, out_features, in_features)
    assert_matches_float64(ops.linear(x, weight), x, weight, None)


@pytest.mark.parametrize("tokens", [1, 6, 40])
def test_linear_bias(isa, tokens):
    x, weight, bias = linear_case(tokens, 203, 96, bias=True)
    assert_matches_float64(ops.linear(x, weight, bias), x, weight, bias)


def test_linear_large_output_uses_both_threads_and_matches():
    """The LM-head shape of SmolLM2 (49152 x 576) at one token: many row blocks per thread."""
    x, weight, _ = linear_case(1, 49152, 576, seed=3)
    assert_matches_float64(ops.linear(x, weight), x, weight, None)


def test_linear_result_does_not_depend_on_thread_count():
    x, weight, bias = linear_case(5, 4099, 200, bias=True, seed=5)
    one = on_threads(1, lambda: ops.linear(x, weight, bias))
    many = on_threads(max(2, torch.get_num_threads()), lambda: ops.linear(x, weight, bias))
    assert torch.equal(one, many)  # each output is summed by one thread in a fixed order


def test_linear_strided_operands():
    x_wide, weight_wide, _ = linear_case(6, 130, 300, seed=7)
    x, weight = x_wide[:, 20:276], weight_wide[:, 44:]  # row strides larger than K
    assert not x.is_contiguous() and not weight.is_contiguous()
    assert_matches_float64(ops.linear(x, weight), x, weight, None)
    x_t = linear_case(64, 1, 5, seed=8)[0].t()  # [5, 64] with a strided last dim: BLAS path
    assert_matches_float64(ops.linear(x_t, weight_wide[:, :64]), x_t, weight_wide[:, :64], None)


def test_linear_many_rows_is_torchs_linear():
    x, weight, bias = linear_case(33, 70, 48, bias=True)
    assert torch.equal(ops.linear(x, weight, bias), reference.linear(x, weight, bias))


def test_linear_empty_shapes():
    x, weight, bias = linear_case(0, 7, 16, bias=True)
    assert ops.linear(x, weight, bias).shape == (0, 7)
    x, weight, bias = linear_case(3, 7, 0, bias=True)
    torch.testing.assert_close(ops.linear(x, weight, bias), bias.expand(3, 7))
    x, weight, _ = linear_case(3, 0, 16)
    assert ops.linear(x, weight).shape == (3, 0)


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda x, w, b: (x[0], w, None), "x must be 2-D"),
        (lambda x, w, b: (x, w[:, :-1], None), r"weight.size\(1\) must equal x.size\(1\)"),
        (lambda x, w, b: (x, w.double(), None), "weight must have x's dtype"),
        (lambda x, w, b: (x.long(), w.long(), None), "x must be float32, bfloat16 or float16"),
        (lambda x, w, b: (x, w, b[:-1]), r"bias.size\(0\) must equal the weight's N \(8\), got 7"),
        (lambda x, w, b: (x, w, b.half()), "bias must have x's dtype"),
        (lambda x, w, b: (x, w, b[None]), "bias must be 1-D"),
    ],
)
def test_linear_misuse_names_the_argument(make, message):
    x, weight, bias = linear_case(2, 8, 16, bias=True)
    with pytest.raises(RuntimeError, match=message):
        ops.linear(*make(x, weight, bias))


@pytest.mark.parametrize("tokens,with_bias", [(1, False), (4, True), (40, True)])
def test_linear_opcheck(tokens, with_bias):
    x, weight, bias = linear_case(tokens, 24, 32, bias=with_bias)
    torch.library.opcheck(torch.ops.a1.linear.default, (x, weight, bias))
