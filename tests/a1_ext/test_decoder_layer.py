"""a1::decoder_layer against the same ten a1 ops called one by one from Python (bit-identical: the
op only moves the sequence into C++) and against its pure-torch twin reference.decoder_layer."""
import pytest
import torch

from a1_ext import ops, reference
from cuda_cases import DECODER_HEAD_DIM as HEAD_DIM
from cuda_cases import DECODER_HIDDEN as HIDDEN
from cuda_cases import DECODER_HEADS as HEADS
from cuda_cases import DECODER_KV_HEADS as KV_HEADS
from cuda_cases import DECODER_WEIGHT_ARGS, layer_case, layers_case
from quant_cases import quantize_weight


def op_by_op(a, linear=ops.linear) -> torch.Tensor:
    """The layer as the model ran it before the fused op: the same a1 ops, called from Python."""
    tokens = a["hidden"].shape[0]
    ops.fused_add_rms_norm(a["hidden"], a["residual"], a["input_norm_weight"], a["eps"])
    qkv = linear(a["hidden"], a["qkv_weight"], a["qkv_bias"]).view(tokens, HEADS + 2 * KV_HEADS, HEAD_DIM)
    ops.rotary_embedding(qkv[:, : HEADS + KV_HEADS], a["cos"], a["sin"])
    query, key, value = qkv.split([HEADS, KV_HEADS, KV_HEADS], dim=1)
    ops.reshape_and_cache(key, value, a["k_cache"], a["v_cache"], a["slot_mapping"])
    attention = ops.paged_attention(query, a["k_cache"], a["v_cache"], a["block_table"], a["seq_lens"],
                                    a["query_start_loc"], a["scale"])
    projected = linear(attention.reshape(tokens, HEADS * HEAD_DIM), a["o_weight"], a["o_bias"])
    ops.fused_add_rms_norm(projected, a["residual"], a["post_norm_weight"], a["eps"])
    gate_up = linear(projected, a["gate_up_weight"], a["gate_up_bias"])
    return linear(ops.silu_and_mul(gate_up), a["down_weight"], a["down_bias"])


def clone_case(a):
    return {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in a.items()}


MUTATED = ["residual", "hidden", "k_cache", "v_cache"]
CASES = [([1], [1]), ([1], [13]), ([1, 1, 1], [5, 9, 17]), ([7], [7]), ([3, 5], [10, 5]), ([0, 2], [3, 5]), ([0], [3])]


@pytest.mark.parametrize("q_lens,seq_lens", CASES)
@pytest.mark.parametrize("bias", [False, True])
def test_decoder_layer_equals_the_ops_one_by_one(q_lens, seq_lens, bias):
    case = layer_case(q_lens, seq_lens, bias)
    fused, separate = clone_case(case), clone_case(case)
    out = ops.decoder_layer(**fused)
    want = op_by_op(separate)
    assert torch.equal(out, want)
    for name in MUTATED:
        assert torch.equal(fused[name], separate[name]), name


@pytest.mark.parametrize("q_lens,seq_lens", CASES)
def test_decoder_layer_matches_twin(q_lens, seq_lens):
    case = layer_case(q_lens, seq_lens, bias=True, seed=1)
    fused, twin = clone_case(case), clone_case(case)
    out = ops.decoder_layer(**fused)
    want = reference.decoder_layer(**twin)
    torch.testing.assert_close(out, want, atol=1e-4, rtol=1e-4)
    for name in MUTATED:
        torch.testing.assert_close(fused[name], twin[name], atol=1e-4, rtol=1e-4)


PROJECTIONS = ["qkv_weight", "o_weight", "gate_up_weight", "down_weight"]


@pytest.mark.parametrize("q_lens,seq_lens", CASES)
def test_decoder_layer_on_weight_panels(q_lens, seq_lens):
    """Projection weights as panels (as load_model lays out fp32 models): the same as the ops one
    by one on those panels, and as the twin on [N, K] weights up to fp32 rounding."""
    case = layer_case(q_lens, seq_lens, bias=True, seed=2)
    paneled = {k: ops.to_weight_panels(v) if k in PROJECTIONS else v for k, v in clone_case(case).items()}
    fused, separate, twin = paneled, clone_case(paneled), clone_case(case)
    out = ops.decoder_layer(**fused)
    assert torch.equal(out, op_by_op(separate))
    torch.testing.assert_close(out, reference.decoder_layer(**twin), atol=1e-4, rtol=1e-4)
    for name in MUTATED:
        assert torch.equal(fused[name], separate[name]), name
        torch.testing.assert_close(fused[name], twin[name], atol=1e-4, rtol=1e-4)


def test_decoder_layer_rejects_qkv_rows_that_do_not_fit_the_heads():
    case = layer_case([1], [3])
    case["qkv_weight"] = case["qkv_weight"][:-3]
    with pytest.raises(RuntimeError, match=r"qkv_weight's N \(125\) must be a multiple of k_cache.size\(3\)"):
        ops.decoder_layer(**case)
    case["qkv_weight"] = torch.randn(2 * KV_HEADS * HEAD_DIM, HIDDEN)
    with pytest.raises(RuntimeError, match="must hold more than the 2 \\* 2 k/v heads"):
        ops.decoder_layer(**case)


def test_decoder_layer_opcheck():
    case = layer_case([1, 2], [6, 2], bias=True)
    torch.library.opcheck(torch.ops.a1.decoder_layer.default, (), case)


# ------------------------------------------------------------------------------ decoder_layers
def stack_case(q_lens, seq_lens, layers, bias, panels=False):
    """layers_case, with the projection weights as panels when asked."""
    stack = layers_case(q_lens, seq_lens, layers, bias)
    if panels:
        stack.update({name: [ops.to_weight_panels(w) for w in stack[name]] for name in PROJECTIONS})
    return stack


def clone_stack(stack):
    return {k: [t.clone() if isinstance(t, torch.Tensor) else t for t in v] if isinstance(v, list)
            else v.clone() if isinstance(v, torch.Tensor) else v for k, v in stack.items()}


def layer_by_layer(stack) -> torch.Tensor:
    hidden = stack["hidden"]
    shared = {k: v for k, v in stack.items() if not isinstance(v, list) and k not in ("residual", "hidden")}
    for i in range(len(stack["k_caches"])):
        weights = {name: stack[name][i] for name in DECODER_WEIGHT_ARGS}
        hidden = ops.decoder_layer(stack["residual"], hidden, **weights, k_cache=stack["k_caches"][i],
                                   v_cache=stack["v_caches"][i], **shared)
    return hidden


@pytest.mark.parametrize("q_lens,seq_lens", [([1], [13]), ([1, 1, 1], [5, 9, 17]), ([3, 5], [10, 5]), ([0, 2], [3, 5])])
@pytest.mark.parametrize("bias,panels", [(False, False), (True, True)])
def test_decoder_layers_equal_the_layers_one_by_one(q_lens, seq_lens, bias, panels):
    stack = stack_case(q_lens, seq_lens, 3, bias, panels)
    fused, separate, twin = stack, clone_stack(stack), clone_stack(stack)
    out = ops.decoder_layers(**fused)
    assert torch.equal(out, layer_by_layer(separate))
    assert torch.equal(fused["residual"], separate["residual"])
    for name in ("k_caches", "v_caches"):
        assert all(torch.equal(a, b) for a, b in zip(fused[name], separate[name])), name
    torch.testing.assert_close(out, reference.decoder_layers(**twin), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(fused["residual"], twin["residual"], atol=1e-4, rtol=1e-4)


def test_decoder_layers_need_one_entry_per_layer():
    stack = stack_case([1], [3], 2, bias=True)
    short = dict(stack, v_caches=stack["v_caches"][:1])
    with pytest.raises(RuntimeError, match=r"v_caches must have one entry per layer \(2, the length of input_norm_weight\), got 1"):
        ops.decoder_layers(**short)
    empty = {k: [] if isinstance(v, list) else v for k, v in stack.items()}
    with pytest.raises(RuntimeError, match="needs at least one layer"):
        ops.decoder_layers(**empty)


def test_decoder_layers_opcheck():
    stack = stack_case([1, 2], [6, 2], 2, bias=True)
    torch.library.opcheck(torch.ops.a1.decoder_layers.default, (), stack)


# ------------------------------------------------------------------------------ GGUF block weights
QUANTIZED = {"qkv_weight": "Q8_0", "o_weight": "Q4_0", "gate_up_weight": "Q4_1"}  # down_weight stays float


@pytest.mark.parametrize("q_lens,seq_lens", CASES)
def test_decoder_layer_on_quantized_weights(q_lens, seq_lens):
    """Projections in GGUF blocks run a1::quant_linear inside the op: bit-identical to quant_linear
    called one by one, and to the twin (F.linear on the dequantized weights) up to fp32 rounding."""
    case = layer_case(q_lens, seq_lens, bias=True, seed=3)
    case.update({k: quantize_weight(case[k], f) for k, f in QUANTIZED.items()})
    fused, separate, twin = clone_case(case), clone_case(case), clone_case(case)
    out = ops.decoder_layer(**fused)
    want = op_by_op(separate, linear=ops.any_linear)  # quant_linear for the block weights
    assert torch.equal(out, want)
    torch.testing.assert_close(out, reference.decoder_layer(**twin), atol=1e-4, rtol=1e-4)
    for name in MUTATED:
        assert torch.equal(fused[name], separate[name]), name


def test_decoder_layers_on_quantized_weights_match_twin():
    stack = stack_case([1, 3], [6, 3], 2, bias=False)
    for name, fmt in QUANTIZED.items():
        stack[name] = [quantize_weight(w, fmt) for w in stack[name]]
    fused, twin = stack, clone_stack(stack)
    torch.testing.assert_close(ops.decoder_layers(**fused), reference.decoder_layers(**twin), atol=1e-4, rtol=1e-4)


# ------------------------------------------------------------------------ a long prefill's MLP in slices
@pytest.mark.parametrize("quantized", [False, True])
def test_decoder_layer_slices_a_large_mlp_exactly(quantized):
    """Above 8 MiB of gate_up output the op runs the MLP a slice of token rows at a time (to bound a
    prefill's memory): 256 tokens x 2 x 8192 float32 = 16 MiB, two slices of 128 rows. Each row must
    come out as the unsliced op-by-op layer computes it, bit for bit."""
    case = layer_case([256], [256], bias=True, seed=4)
    g = torch.Generator().manual_seed(5)
    inter = 8192
    case["gate_up_weight"] = torch.randn(2 * inter, HIDDEN, generator=g) / HIDDEN**0.5
    case["gate_up_bias"] = 0.1 * torch.randn(2 * inter, generator=g)
    case["down_weight"] = torch.randn(HIDDEN, inter, generator=g) / inter**0.5
    if quantized:
        case["gate_up_weight"] = quantize_weight(case["gate_up_weight"], "Q4_0")
        case["down_weight"] = quantize_weight(case["down_weight"], "Q8_0")
    fused, separate = clone_case(case), clone_case(case)
    out = ops.decoder_layer(**fused)
    assert torch.equal(out, op_by_op(separate, linear=ops.any_linear))
    for name in MUTATED:
        assert torch.equal(fused[name], separate[name]), name
