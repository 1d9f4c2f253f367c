"""The quantized ops (dequantize, quant_linear) on the CPU against gguf.quants and the pure-torch
twins, on every instruction-set path; quantized weights through decoder_layer and linear_step_score."""
from __future__ import annotations

import gguf
import pytest
import torch

import a1_ext  # noqa: F401
from a1_ext import ops, reference
from a1_ext.quant_formats import QUANT_FORMATS, quant_format, quant_shape
from quant_cases import FORMATS, assert_bit_equal, finite_blocks, gguf_dequantize, identity_q8_0, in_features, random_blocks


@pytest.mark.parametrize("name", FORMATS)
def test_dequantize_is_bit_exact_with_gguf(name, isa):
    blocks = random_blocks(name, rows=37, blocks_per_row=3, seed=1)
    want = gguf_dequantize(blocks, name)
    assert_bit_equal(ops.dequantize(blocks), want)
    assert_bit_equal(reference.dequantize(blocks), want)


@pytest.mark.parametrize("name", FORMATS)
def test_dequantize_rows_reads_only_those_rows(name, isa):
    blocks = random_blocks(name, rows=11, blocks_per_row=2, seed=2)
    full = gguf_dequantize(blocks, name)
    for rows in (torch.tensor([3, 0, 10, 3]), torch.tensor([7], dtype=torch.int32), torch.tensor([], dtype=torch.int64)):
        got = ops.dequantize(blocks, rows)
        assert_bit_equal(got, full[rows.long()])
        assert_bit_equal(reference.dequantize(blocks, rows), full[rows.long()])


def test_format_table_matches_gguf():
    for name, fmt in QUANT_FORMATS.items():
        qtype = gguf.GGMLQuantizationType[name]
        assert (fmt.block_size, fmt.block_bytes) == gguf.GGML_QUANT_SIZES[qtype] and fmt.type_id == int(qtype)
    blocks = finite_blocks("Q6_K", 4, 2)
    assert quant_format(blocks).name == "Q6_K" and quant_shape(blocks) == (4, 512)


@pytest.mark.parametrize("name", FORMATS)
@pytest.mark.parametrize("tokens", [1, 2, 3, 5, 8, 9, 33, 70])
def test_quant_linear_matches_twin(name, tokens, isa):
    # N = 53: 3 whole panels, 5 tail rows (the GEMM path covers panels, the decode kernel the tail)
    nb = 2 if QUANT_FORMATS[name].block_size == 256 else 5
    blocks = finite_blocks(name, 53, nb, seed=tokens)
    g = torch.Generator().manual_seed(tokens)
    x = torch.randn(tokens, in_features(name, nb), generator=g)
    bias = torch.randn(53, generator=g)
    want = reference.quant_linear(x, blocks, bias)  # sums of ~1 of K products: rounding ~1e-5, a wrong weight ~0.1
    torch.testing.assert_close(ops.quant_linear(x, blocks, bias), want, atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(ops.quant_linear(x, blocks), want - bias, atol=1e-3, rtol=1e-4)


@pytest.mark.parametrize("rows", [1, 15, 16, 47, 48, 97])
def test_quant_linear_odd_row_counts_and_strided_x(rows, isa):
    blocks = finite_blocks("Q4_1", rows, 3, seed=rows)
    x = torch.randn(40, 3 * 96)[:, ::3]  # rows of 96 with a stride of 288, inner stride 3
    want = reference.quant_linear(x, blocks)
    for t in (1, 4, 40):
        torch.testing.assert_close(ops.quant_linear(x[:t], blocks), want[:t], atol=1e-3, rtol=1e-4)
    x_rows = torch.randn(12, 200)[:, :96]  # contiguous rows, row stride 200
    torch.testing.assert_close(ops.quant_linear(x_rows, blocks), reference.quant_linear(x_rows, blocks),
                               atol=1e-3, rtol=1e-4)


@pytest.mark.parametrize("name", ["Q4_0", "Q4_1", "Q8_0"])
@pytest.mark.parametrize("groups", [16, 18, 33])
def test_quant_linear_many_groups(name, groups, isa):
    """Whole and partial chunks of 16 groups (the 512-bit kernel sums 16 groups at a time), an odd
    group count (its last group pairs with zeros), every token tile."""
    blocks = finite_blocks(name, 21, groups, seed=groups)
    g = torch.Generator().manual_seed(groups)
    x = torch.randn(11, 32 * groups, generator=g)
    want = reference.quant_linear(x, blocks)
    for t in (1, 2, 3, 4, 5, 8, 11):
        torch.testing.assert_close(ops.quant_linear(x[:t], blocks), want[:t], atol=1e-3, rtol=1e-4)


def test_round_activations_rounds_half_to_even_per_group():
    group = torch.zeros(32)
    group[:6] = torch.tensor([127.0, 0.5, 1.5, 2.5, -2.5, 126.6])  # max 127: d = 1, q = x rounded
    x = torch.cat([group, group / 4, torch.zeros(32)]).unsqueeze(0)
    rounded = reference.round_activations(x)
    assert rounded[0, :6].tolist() == [127.0, 0.0, 2.0, 2.0, -2.0, 127.0]
    assert torch.equal(rounded[0, 32:64], rounded[0, :32] / 4)  # d = 1 / 4: the same q
    assert torch.equal(rounded[0, 64:], torch.zeros(32))  # an all-zero group: d = 0


@pytest.mark.parametrize("tokens", [1, 2, 7, 9, 40])
def test_quant_linear_rounds_activations_exactly_as_the_twin(tokens, isa):
    """x @ I^T is the rounded x itself: one product per output, so every path (integer kernels, fp32
    decode, panels) must give the twin's rounding bit for bit: ties to even, zero and tiny groups;
    a group holding inf makes its whole token row NaN."""
    K, n = 32 * 19, 32 * 19 - 5
    g = torch.Generator().manual_seed(tokens)
    x = torch.randn(tokens, K, generator=g) * torch.logspace(-30, 10, K)[torch.randperm(K, generator=g)]
    x[0, :6] = torch.tensor([127.0, 0.5, 1.5, 2.5, -2.5, 126.6])
    x[0, 6:32] = 0.25
    x[0, 32:64] = 0.0
    x[-1, 100:132] = 1e-40  # subnormal
    got = ops.quant_linear(x, identity_q8_0(n, K))
    assert_bit_equal(got, reference.round_activations(x)[:, :n])
    if tokens > 1:
        x[1, 200] = float("inf")
        got = ops.quant_linear(x, identity_q8_0(n, K))
        assert torch.isnan(got[1]).all() and not torch.isnan(got[0]).any()
        assert torch.isnan(reference.quant_linear(x, identity_q8_0(n, K))[1]).all()


def test_quant_linear_empty_inputs():
    blocks = finite_blocks("Q8_0", 5, 1)
    assert ops.quant_linear(torch.randn(0, 32), blocks).shape == (0, 5)
    assert ops.quant_linear(torch.randn(2, 0), blocks[:, :0]).abs().sum() == 0


@pytest.mark.parametrize("call,match", [
    (lambda b: ops.quant_linear(torch.randn(2, 64).double(), b), "x must be Float"),
    (lambda b: ops.quant_linear(torch.randn(2, 63), b), r"weight holds K = 64 inputs per row \(2 Q4_0 blocks\) but x.size\(1\) is 63"),
    (lambda b: ops.quant_linear(torch.randn(2, 64), b.view(7, 36)), "weight must be GGUF blocks .* or packed panels"),
    (lambda b: ops.quant_linear(torch.randn(2, 64), b.view(7, 1, 2, 18)), r"weight.size\(2\) must equal the panel's 16 rows"),
    (lambda b: ops.quant_linear(torch.randn(2, 64), b.float()), "weight must be Byte"),
    (lambda b: ops.quant_linear(torch.randn(2, 64), torch.zeros(7, 2, 19, dtype=torch.uint8)),
     r"weight.size\(2\) must be the bytes of one block of Q4_0 \(18\)"),
    (lambda b: ops.quant_linear(torch.randn(2, 64), b, torch.randn(6)), r"bias.size\(0\) must equal the weight's N"),
    (lambda b: ops.quant_linear(torch.randn(2, 64), b.transpose(0, 1).contiguous().transpose(0, 1)),
     "weight blocks must be contiguous"),
    (lambda b: ops.dequantize(b, torch.tensor([0, 7])), r"rows must be in \[0, 7\), got values in \[0, 7\]"),
    (lambda b: ops.dequantize(b, torch.tensor([0.0])), "rows must be int32 or int64"),
])
def test_bad_arguments_are_named(call, match):
    with pytest.raises(RuntimeError, match=match):
        call(finite_blocks("Q4_0", 7, 2))


def test_opcheck():
    blocks = finite_blocks("Q4_K", 20, 1)
    torch.library.opcheck(torch.ops.a1.quant_linear.default, (torch.randn(3, 256), blocks, torch.randn(20)))
    torch.library.opcheck(torch.ops.a1.dequantize.default, (blocks, torch.tensor([2, 5])))


@pytest.mark.parametrize("tokens", [1, 6, 20])
def test_linear_step_score_on_a_quantized_head(tokens):
    head = finite_blocks("Q8_0", 300, 3, scale=0.05)
    g = torch.Generator().manual_seed(tokens)
    hidden = torch.randn(tokens, 96, generator=g)
    ids = torch.randint(0, 300, (tokens,), generator=g)
    cu = torch.tensor([0, tokens // 2, tokens])
    got = ops.linear_step_score(hidden, head, ids, cu, 0.8, 64)
    want = reference.linear_step_score(hidden, head, ids, cu, 0.8, 64)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-4, equal_nan=True)
    with pytest.raises(RuntimeError, match="lm_head holds H = 96 inputs per row but hidden.size"):
        ops.linear_step_score(hidden[:, :64], head, ids, cu, 1.0, 64)
