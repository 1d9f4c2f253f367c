"""a1::linear on bf16 / fp16 weights [N, K] with few token rows (bf16 up to 8, fp16 up to 16): the
16-bit weight-streaming kernel (linear/half_gemm_kernels.h) on every instruction-set path against its
twin, the fp32 product of the same 16-bit values rounded once to the dtype. With more rows the op is
torch's linear (held to the same twin). linear_step_score runs the kernel up to 32 rows with fp32
logits (test_score_ops.py)."""
import pytest
import torch
import torch.nn.functional as F

from a1_ext import ops, reference
from test_linear_ops import linear_case
from threads import on_threads

DTYPES = [torch.bfloat16, torch.float16]


def fp32_twin(x, weight, bias):
    """The kernel's spec: widen to fp32, multiply and sum in fp32, round the result once."""
    return F.linear(x.float(), weight.float(), None if bias is None else bias.float())


def assert_matches_twin(out, x, weight, bias):
    """Sums in another order round to the dtype's neighbouring value at worst (1 ulp: eps relative);
    the fp32 sums themselves differ by rounding that grows like sqrt(K)."""
    want = fp32_twin(x, weight, bias)
    assert out.shape == want.shape and out.dtype == x.dtype and out.is_contiguous()
    eps = torch.finfo(x.dtype).eps
    torch.testing.assert_close(out.float(), want, rtol=eps, atol=2e-5 * x.shape[1] ** 0.5)


# T over every count the kernel handles (token tiles of 4 / 2 rows and their remainders) and past
# the counts that go to torch; N around the row blocks (2, 4, 16); K around the chunks of 8, 16 and 32
# elements, with a scalar tail.
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tokens", range(1, 18))
@pytest.mark.parametrize("out_features,in_features", [(1, 5), (9, 17), (37, 64), (300, 1539)])
def test_half_linear_matches_twin(isa, dtype, tokens, out_features, in_features):
    x, weight, bias = linear_case(tokens, out_features, in_features, dtype=dtype, bias=tokens % 2 == 1,
                                  seed=tokens)
    assert_matches_twin(ops.linear(x, weight, bias), x, weight, bias)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tokens", [1, 4, 8])
def test_half_linear_model_shapes(isa, dtype, tokens):
    """SmolLM2's projections (qkv, down: K of 576 and 1536) with and without bias."""
    for out_features, in_features, with_bias in [(960, 576, True), (576, 1536, False)]:
        x, weight, bias = linear_case(tokens, out_features, in_features, dtype=dtype, bias=with_bias)
        assert_matches_twin(ops.linear(x, weight, bias), x, weight, bias)


def test_half_linear_lm_head_shape():
    """The LM head of SmolLM2 (49152 x 576) at one token: many row blocks per thread."""
    x, weight, _ = linear_case(1, 49152, 576, dtype=torch.bfloat16, seed=3)
    assert_matches_twin(ops.linear(x, weight), x, weight, None)


@pytest.mark.parametrize("dtype", DTYPES)
def test_half_linear_strided_operands(isa, dtype):
    x_wide, weight_wide, bias = linear_case(5, 131, 300, dtype=dtype, bias=True, seed=7)
    x, weight = x_wide[:, 20:276], weight_wide[:, 44:]  # row strides larger than K
    assert not x.is_contiguous() and not weight.is_contiguous()
    assert_matches_twin(ops.linear(x, weight, bias), x, weight, bias)


def test_half_linear_result_does_not_depend_on_thread_count():
    x, weight, bias = linear_case(5, 4099, 200, dtype=torch.bfloat16, bias=True, seed=5)
    one = on_threads(1, lambda: ops.linear(x, weight, bias))
    many = on_threads(max(2, torch.get_num_threads()), lambda: ops.linear(x, weight, bias))
    assert torch.equal(one, many)  # each output is summed by one thread in a fixed order


def test_fp16_weights_widen_exactly(isa):
    """Subnormal, largest-normal, inf and NaN fp16 weights (vcvtph2ps or the SSE2 bit arithmetic): one
    token row of ones picks each weight out through its own output row."""
    values = torch.tensor([2.0**-24, -3 * 2.0**-20, 65504.0, -1.5, float("inf"), float("nan")])
    k = 37  # a whole 32-element chunk (of every ISA) and a tail of 5
    weight = torch.zeros(len(values), k, dtype=torch.float16)
    weight[:, 3] = values.half()  # in the chunk: the vector widening
    x = torch.zeros(1, k, dtype=torch.float16)
    x[0, 3] = 1.0
    torch.testing.assert_close(ops.linear(x, weight).float()[0], values, equal_nan=True, rtol=0, atol=0)
    weight = weight.roll(33, dims=1)  # the same values in the tail: the scalar widening
    x = x.roll(33, dims=1)
    torch.testing.assert_close(ops.linear(x, weight).float()[0], values, equal_nan=True, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_half_linear_with_more_rows_is_torchs_linear(dtype):
    x, weight, bias = linear_case(17, 70, 48, dtype=dtype, bias=True)
    assert torch.equal(ops.linear(x, weight, bias), reference.linear(x, weight, bias))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tokens,with_bias", [(1, False), (5, True)])
def test_half_linear_opcheck(dtype, tokens, with_bias):
    x, weight, bias = linear_case(tokens, 24, 40, dtype=dtype, bias=with_bias)
    torch.library.opcheck(torch.ops.a1.linear.default, (x, weight, bias))
