"""a1::linear on panel-packed weights [N / 16, K, 16] (ops.to_weight_panels): the layout, the CPU
fp32 outer-product kernel on every instruction-set path against float64 sums, and the library path
(bf16/fp16, strided or empty inputs)."""
import pytest
import torch

from a1_ext import ops, reference
from test_linear_ops import assert_matches_float64, linear_case
from threads import on_threads


def panel_case(tokens, out_features, in_features, dtype=torch.float32, bias=False, seed=0):
    x, weight, b = linear_case(tokens, out_features, in_features, dtype=dtype, bias=bias, seed=seed)
    return x, weight, ops.to_weight_panels(weight), b


def test_panel_layout_and_round_trip():
    weight = torch.arange(48 * 5, dtype=torch.float32).view(48, 5)
    panels = ops.to_weight_panels(weight)
    assert panels.shape == (3, 5, 16) and panels.is_contiguous()
    for p, k, i in [(0, 0, 0), (1, 3, 7), (2, 4, 15)]:
        assert panels[p, k, i] == weight[16 * p + i, k]
    assert torch.equal(ops.from_weight_panels(panels), weight)
    assert ops.linear_out_features(panels) == 48 and ops.linear_out_features(weight) == 48


@pytest.mark.parametrize("bad", [torch.zeros(40, 8), torch.zeros(16), torch.zeros(2, 16, 8)])
def test_to_weight_panels_rejects_other_shapes(bad):
    with pytest.raises(ValueError, match="weight must be \\[N, K\\] with N a multiple of 16"):
        ops.to_weight_panels(bad)
    with pytest.raises(ValueError, match="panels must be \\[N / 16, K, 16\\]"):
        ops.from_weight_panels(bad[None] if bad.dim() == 2 else bad.view(-1, 8))


# T around the token tiles (8 rows on AVX-512, 6 on AVX2, 2 on SSE) and the 64-row chunks; N around
# the panel groups (3 panels) with one or two panels left over; K around the 128-step blocks.
@pytest.mark.parametrize("tokens", [1, 2, 3, 5, 7, 8, 9, 13, 24, 32, 33, 64, 65, 130])
@pytest.mark.parametrize("out_features,in_features", [(16, 1), (32, 17), (48, 64), (80, 130), (176, 1539), (960, 576)])
def test_panels_match_float64(isa, tokens, out_features, in_features):
    x, weight, panels, _ = panel_case(tokens, out_features, in_features)
    assert_matches_float64(ops.linear(x, panels), x, weight, None)


@pytest.mark.parametrize("tokens", [1, 6, 40, 200])
def test_panels_bias(isa, tokens):
    x, weight, panels, bias = panel_case(tokens, 208, 96, bias=True)
    assert_matches_float64(ops.linear(x, panels, bias), x, weight, bias)


def test_panels_twin_is_linear_on_the_unpacked_weight():
    x, weight, panels, bias = panel_case(5, 64, 40, bias=True)
    assert torch.equal(reference.linear(x, panels, bias), reference.linear(x, weight, bias))


def test_panels_large_output_splits_over_threads():
    """The LM-head shape of SmolLM2 (49152 x 576) at 32 tokens: many panel groups per thread."""
    x, weight, panels, _ = panel_case(32, 49152, 576, seed=3)
    assert_matches_float64(ops.linear(x, panels), x, weight, None)


def test_panels_result_does_not_depend_on_thread_count():
    x, _, panels, bias = panel_case(21, 4096, 200, bias=True, seed=5)
    one = on_threads(1, lambda: ops.linear(x, panels, bias))
    many = on_threads(max(2, torch.get_num_threads()), lambda: ops.linear(x, panels, bias))
    assert torch.equal(one, many)  # each output is summed by one thread in a fixed order


def test_panels_strided_rows_of_x():
    _, weight, panels, _ = panel_case(6, 32, 300, seed=7)
    x_wide = torch.randn(6, 400)
    x = x_wide[:, 50:350]  # row stride 400 > K
    assert not x.is_contiguous()
    assert_matches_float64(ops.linear(x, panels), x, weight, None)
    x_t = torch.randn(300, 6).t()  # a strided last dim: the library path
    assert_matches_float64(ops.linear(x_t, panels), x_t, weight, None)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_panels_half_precision_match_the_twin(dtype):
    x, _, panels, bias = panel_case(3, 64, 48, dtype=dtype, bias=True)
    want = reference.linear(x.float(), panels.float(), bias.float())
    torch.testing.assert_close(ops.linear(x, panels, bias).float(), want, atol=3e-2, rtol=2e-2)


def test_panels_empty_shapes():
    x, _, panels, bias = panel_case(0, 32, 16, bias=True)
    assert ops.linear(x, panels, bias).shape == (0, 32)
    x, _, panels, bias = panel_case(3, 32, 0, bias=True)
    torch.testing.assert_close(ops.linear(x, panels, bias), bias.expand(3, 32))


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda x, p, b: (x, p[..., :8].contiguous(), None), r"weight.size\(2\) must equal the panel width 16"),
        (lambda x, p, b: (x, p.transpose(0, 1).contiguous().transpose(0, 1), None), "weight panels .* must be contiguous"),
        (lambda x, p, b: (x, p[:, :-1].contiguous(), None), r"weight.size\(1\) must equal x.size\(1\)"),
        (lambda x, p, b: (x, p, b[:-16]), r"bias.size\(0\) must equal the weight's N \(32\), got 16"),
        (lambda x, p, b: (x, p[None], None), "weight must be \\[N, K\\] or panels"),
    ],
)
def test_panels_misuse_names_the_argument(make, message):
    x, _, panels, bias = panel_case(2, 32, 16, bias=True)
    with pytest.raises(RuntimeError, match=message):
        ops.linear(*make(x, panels, bias))


@pytest.mark.parametrize("tokens,with_bias", [(1, False), (9, True), (70, True)])
def test_panels_opcheck(tokens, with_bias):
    x, _, panels, bias = panel_case(tokens, 48, 32, bias=with_bias)
    torch.library.opcheck(torch.ops.a1.linear.default, (x, panels, bias))
