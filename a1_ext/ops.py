"""Typed wrappers over torch.ops.a1.*, each with its fake (meta) implementation for torch.compile
right after it.

Schemas: csrc/ops.cpp. Semantics: a1_ext/reference.py (the pure-torch twins) and docs/architecture.md.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from .quant_formats import is_quantized

_ops = torch.ops.a1


def reshape_and_cache(
    key: torch.Tensor, value: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, slot_mapping: torch.Tensor
) -> None:
    """Write key/value [T, Hkv, D] into k_cache/v_cache [num_blocks, block_size, Hkv, D] at
    slot_mapping[T] (int64, slot = block * block_size + offset; negative slots are skipped)."""
    _ops.reshape_and_cache.default(key, value, k_cache, v_cache, slot_mapping)


@torch.library.register_fake("a1::reshape_and_cache")
def _reshape_and_cache_fake(key, value, k_cache, v_cache, slot_mapping) -> None:
    return None


def paged_attention(
    query: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_table: torch.Tensor,
    seq_lens: torch.Tensor,
    query_start_loc: torch.Tensor,
    scale: float,
) -> torch.Tensor:
    """Causal attention of ragged queries [T, Hq, D] over the paged cache; row b's queries are
    query[query_start_loc[b]:query_start_loc[b+1]], the last positions of its seq_lens[b] tokens."""
    return _ops.paged_attention.default(query, k_cache, v_cache, block_table, seq_lens, query_start_loc, scale)


@torch.library.register_fake("a1::paged_attention")
def _paged_attention_fake(query, k_cache, v_cache, block_table, seq_lens, query_start_loc, scale):
    return torch.empty_like(query)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm of x [T, H] (fp32/bf16/fp16, weight [H] of the same dtype) in transformers' order:
    weight * to_dtype(x_f32 * rsqrt(mean(x_f32 ** 2) + eps)). Returns a new contiguous [T, H]."""
    return _ops.rms_norm.default(x, weight, eps)


@torch.library.register_fake("a1::rms_norm")
def _rms_norm_fake(x, weight, eps):
    return x.new_empty(x.shape)  # contiguous, whatever x's strides


def fused_add_rms_norm(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float) -> None:
    """In place: residual += x (rounded to the dtype), then x = rms_norm(residual, weight, eps).
    x and residual are [T, H] with contiguous rows (row strides are free) and must not overlap."""
    _ops.fused_add_rms_norm.default(x, residual, weight, eps)


@torch.library.register_fake("a1::fused_add_rms_norm")
def _fused_add_rms_norm_fake(x, residual, weight, eps) -> None:
    return None


def silu_and_mul(x: torch.Tensor) -> torch.Tensor:
    """The SwiGLU gate: x [T, 2I] (gate and up projections side by side) -> silu(gate) * up [T, I],
    with silu's result rounded to x's dtype before the multiply, as transformers computes it."""
    return _ops.silu_and_mul.default(x)


@torch.library.register_fake("a1::silu_and_mul")
def _silu_and_mul_fake(x):
    return x.new_empty((x.shape[0], x.shape[1] // 2))


def rotary_embedding(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> None:
    """RoPE in place on x [T, H, D] (head_dim contiguous and even; token and head strides free):
    x = x * cos + rotate_half(x) * sin with per-token tables cos, sin [T, D] of x's dtype, sin
    pre-signed (-sin on the first half, as a1.models.rope.rotary_tables builds it)."""
    _ops.rotary_embedding.default(x, cos, sin)


@torch.library.register_fake("a1::rotary_embedding")
def _rotary_embedding_fake(x, cos, sin) -> None:
    return None


def linear(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """F.linear for 2-D x: x [T, K] @ W^T (+ bias [N]), one float dtype, a new contiguous [T, N].
    weight is W [N, K], or W as panels [N / 16, K, 16] (to_weight_panels). On the CPU, fp32 panels
    run a1's outer-product kernel for any T, and fp32 [N, K] weights with up to 32 rows (decode steps)
    stream each weight row once instead of going to BLAS; the sums may differ from torch's in the
    last bits."""
    return _ops.linear.default(x, weight, bias)


@torch.library.register_fake("a1::linear")
def _linear_fake(x, weight, bias=None):
    return x.new_empty((x.shape[0], linear_out_features(weight)))


LINEAR_PANEL_WIDTH = 16  # output features per panel of a panel-packed linear weight


def to_weight_panels(weight: torch.Tensor) -> torch.Tensor:
    """W [N, K] as panels [N / 16, K, 16], panels[p, k, i] = W[16 p + i, k] (a new contiguous
    tensor): for each k, 16 output features side by side, so a1's CPU linear kernel multiplies by
    them with outer products instead of dot products along K. N must be a multiple of 16."""
    if weight.dim() != 2 or weight.shape[0] % LINEAR_PANEL_WIDTH != 0:
        raise ValueError(f"weight must be [N, K] with N a multiple of {LINEAR_PANEL_WIDTH}, got shape {tuple(weight.shape)}")
    n, k = weight.shape
    return weight.view(n // LINEAR_PANEL_WIDTH, LINEAR_PANEL_WIDTH, k).transpose(1, 2).contiguous()


def from_weight_panels(panels: torch.Tensor) -> torch.Tensor:
    """The inverse of to_weight_panels: panels [N / 16, K, 16] -> W [N, K] (a new contiguous tensor)."""
    if panels.dim() != 3 or panels.shape[2] != LINEAR_PANEL_WIDTH:
        raise ValueError(f"panels must be [N / 16, K, {LINEAR_PANEL_WIDTH}], got shape {tuple(panels.shape)}")
    return panels.transpose(1, 2).reshape(-1, panels.shape[1])


def linear_out_features(weight: torch.Tensor) -> int:
    """N of a linear weight [N, K], of its panels [N / 16, K, 16] or of its GGUF blocks or their packed
    panels [N / 16, K / 32, 16, block_bytes] (quant_linear)."""
    if is_quantized(weight):
        return weight.shape[0] * weight.shape[2] if weight.dim() == 4 else weight.shape[0]
    return weight.shape[0] * weight.shape[2] if weight.dim() == 3 else weight.shape[0]


def dequantize(weight: torch.Tensor, rows: Optional[torch.Tensor] = None) -> torch.Tensor:
    """A quantized weight W [N, K] in GGUF blocks (uint8 [N, K / block_size, block_bytes]; Q4_0, Q4_1,
    Q8_0, Q4_K, Q5_K or Q6_K, named by block_bytes: a1_ext.quant_formats), or on the CPU their packed
    panels (a1_ext.quant_panels), as float32 [N, K], or only the rows `rows` (int32/int64 [R], in
    [0, N)) as [R, K]: an embedding lookup that decodes just the rows it reads. Bit-exact with
    gguf.quants.dequantize."""
    return _ops.dequantize.default(weight, rows)


@torch.library.register_fake("a1::dequantize")
def _dequantize_fake(weight, rows=None):
    count = linear_out_features(weight) if rows is None else rows.shape[0]
    block_size = 32 if weight.shape[-1] <= 34 else 256  # Q4_0, Q4_1, Q8_0 blocks of 32; the K-quants 256
    return weight.new_empty((count, weight.shape[1] * block_size), dtype=torch.float32)


def quant_linear(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """x [T, K] float32 @ W^T (+ bias [N] float32) -> [T, N], W in GGUF blocks (or on the CPU their
    packed panels) as for dequantize, never widened in memory. x is rounded to 8 bits per 32 values
    first, as llama.cpp does (a1_ext.quant_reference.round_activations), and the blocks multiply the
    rounded values as integers where the CPU allows: out = round8(x) @ dequantize(W)^T + bias, up to
    the order of additions."""
    return _ops.quant_linear.default(x, weight, bias)


@torch.library.register_fake("a1::quant_linear")
def _quant_linear_fake(x, weight, bias=None):
    return x.new_empty((x.shape[0], linear_out_features(weight)))


def any_linear(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """quant_linear for a quantized weight, linear for a float one."""
    return quant_linear(x, weight, bias) if is_quantized(weight) else linear(x, weight, bias)


def decoder_layer(
    residual: torch.Tensor,
    hidden: torch.Tensor,
    input_norm_weight: torch.Tensor,
    qkv_weight: torch.Tensor,
    qkv_bias: Optional[torch.Tensor],
    o_weight: torch.Tensor,
    o_bias: Optional[torch.Tensor],
    post_norm_weight: torch.Tensor,
    gate_up_weight: torch.Tensor,
    gate_up_bias: Optional[torch.Tensor],
    down_weight: torch.Tensor,
    down_bias: Optional[torch.Tensor],
    cos: torch.Tensor,
    sin: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    slot_mapping: torch.Tensor,
    block_table: torch.Tensor,
    seq_lens: torch.Tensor,
    query_start_loc: torch.Tensor,
    eps: float,
    scale: float,
) -> torch.Tensor:
    """One Llama/Qwen2 decoder layer from the ops above, in vLLM's residual layout (spec:
    reference.decoder_layer). In place: residual += hidden, hidden = rms_norm(residual); then fused
    qkv projection (q, k, v heads stacked: (Hq + 2 Hkv) * D rows), RoPE on q and k, K/V written at
    slot_mapping, paged attention, o projection, residual += it, normalized, SwiGLU MLP. Returns the
    MLP output [T, H]; the next layer's norm adds it to residual. Heads and head_dim come from
    k_cache [num_blocks, block_size, Hkv, D] and qkv_weight. Weights may be [N, K] or panels (linear)."""
    return _ops.decoder_layer.default(
        residual, hidden, input_norm_weight, qkv_weight, qkv_bias, o_weight, o_bias, post_norm_weight,
        gate_up_weight, gate_up_bias, down_weight, down_bias, cos, sin, k_cache, v_cache, slot_mapping,
        block_table, seq_lens, query_start_loc, eps, scale,
    )


@torch.library.register_fake("a1::decoder_layer")
def _decoder_layer_fake(residual, hidden, input_norm_weight, qkv_weight, qkv_bias, o_weight, o_bias,
                        post_norm_weight, gate_up_weight, gate_up_bias, down_weight, down_bias, *rest):
    return hidden.new_empty((hidden.shape[0], linear_out_features(down_weight)))


def decoder_layers(
    residual: torch.Tensor,
    hidden: torch.Tensor,
    input_norm_weight: Sequence[torch.Tensor],
    qkv_weight: Sequence[torch.Tensor],
    qkv_bias: Sequence[Optional[torch.Tensor]],
    o_weight: Sequence[torch.Tensor],
    o_bias: Sequence[Optional[torch.Tensor]],
    post_norm_weight: Sequence[torch.Tensor],
    gate_up_weight: Sequence[torch.Tensor],
    gate_up_bias: Sequence[Optional[torch.Tensor]],
    down_weight: Sequence[torch.Tensor],
    down_bias: Sequence[Optional[torch.Tensor]],
    cos: torch.Tensor,
    sin: torch.Tensor,
    k_caches: Sequence[torch.Tensor],
    v_caches: Sequence[torch.Tensor],
    slot_mapping: torch.Tensor,
    block_table: torch.Tensor,
    seq_lens: torch.Tensor,
    query_start_loc: torch.Tensor,
    eps: float,
    scale: float,
) -> torch.Tensor:
    """decoder_layer over L layers in one call: layer i takes element i of every list (one per layer)
    and the previous layer's output as its hidden; returns the last layer's MLP output [T, H]. The
    same in-place effects as the layers one by one (residual, hidden, every layer's caches)."""
    return _ops.decoder_layers.default(
        residual, hidden, list(input_norm_weight), list(qkv_weight), list(qkv_bias), list(o_weight), list(o_bias),
        list(post_norm_weight), list(gate_up_weight), list(gate_up_bias), list(down_weight), list(down_bias), cos, sin,
        list(k_caches), list(v_caches), slot_mapping, block_table, seq_lens, query_start_loc, eps, scale,
    )


@torch.library.register_fake("a1::decoder_layers")
def _decoder_layers_fake(residual, hidden, input_norm_weight, qkv_weight, qkv_bias, o_weight, o_bias,
                         post_norm_weight, gate_up_weight, gate_up_bias, down_weight, down_bias, *rest):
    return hidden.new_empty((hidden.shape[0], linear_out_features(down_weight[-1])))


def copy_blocks(k_caches: Sequence[torch.Tensor], v_caches: Sequence[torch.Tensor], block_mapping: torch.Tensor) -> None:
    """For every layer, copy block block_mapping[i, 0] onto block block_mapping[i, 1] (int64 [P, 2])."""
    _ops.copy_blocks.default(list(k_caches), list(v_caches), block_mapping)


@torch.library.register_fake("a1::copy_blocks")
def _copy_blocks_fake(k_caches, v_caches, block_mapping) -> None:
    return None


def step_score(
    logits: torch.Tensor, token_ids: torch.Tensor, cu_seqlens: torch.Tensor, temperature: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(token_logprob[T], step_nll[B]): log softmax(logits / temperature)[t, token_ids[t]] and the mean
    negative log-prob over each segment cu_seqlens[b]:cu_seqlens[b+1] (NaN for an empty segment).
    Log-probs are (x - max) - log(sum exp(x - max)) of the scaled logits x, exact at any scale
    (temperature 1e-8, logits of 1e8). token_ids (int64) must be in [0, V), temperature finite > 0."""
    return _ops.step_score.default(logits, token_ids, cu_seqlens, temperature)


def _score_fake(token_ids, cu_seqlens, like):
    token_logprob = like.new_empty(token_ids.shape[0], dtype=torch.float32)
    return token_logprob, like.new_empty(cu_seqlens.shape[0] - 1, dtype=torch.float32)


@torch.library.register_fake("a1::step_score")
def _step_score_fake(logits, token_ids, cu_seqlens, temperature):
    return _score_fake(token_ids, cu_seqlens, logits)


def linear_step_score(
    hidden: torch.Tensor,
    lm_head: torch.Tensor,
    token_ids: torch.Tensor,
    cu_seqlens: torch.Tensor,
    temperature: float = 1.0,
    chunk: int = 4096,
) -> tuple[torch.Tensor, torch.Tensor]:
    """step_score of logits = hidden @ lm_head.T, computed `chunk` vocab rows at a time so that the
    [T, V] logits never exist. lm_head is [V, H] or its panels [V / 16, H, 16] (to_weight_panels;
    the CPU then rounds `chunk` up to whole panels)."""
    return _ops.linear_step_score.default(hidden, lm_head, token_ids, cu_seqlens, temperature, chunk)


@torch.library.register_fake("a1::linear_step_score")
def _linear_step_score_fake(hidden, lm_head, token_ids, cu_seqlens, temperature, chunk):
    return _score_fake(token_ids, cu_seqlens, hidden)


def speculative_verify(
    target_logits: torch.Tensor,
    draft_token_ids: torch.Tensor,
    cu_num_draft: torch.Tensor,
    draft_probs: Optional[torch.Tensor],
    temperature: torch.Tensor,
    top_k: torch.Tensor,
    top_p: torch.Tensor,
    seed: torch.Tensor,
    offset: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Lossless speculative verification of ragged drafts.

    Request b drafted draft_token_ids[cu_num_draft[b]:cu_num_draft[b+1]] (k_b tokens) and has the
    k_b + 1 target rows target_logits[cu_num_draft[b] + b : ... + k_b + 1]. Draft token i is accepted
    with probability min(1, p/q), p the target distribution after temperature[b], top_k[b] and
    top_p[b], q = draft_probs row (None: a deterministic draft, q = 1). The first rejection is
    replaced by a draw from norm(max(0, p - q)); if all are accepted a bonus token is drawn from p.
    temperature below 1e-5 (0 included; reference.GREEDY_TEMPERATURE) is greedy. Uniforms come from
    Philox keyed by (seed[b], offset[b]). draft_probs must be finite and >= 0. A target row with a
    NaN or +inf, or no value above -inf, is refused (RuntimeError naming the row), as in `sample`.

    Returns out_ids [B, max_k + 1] (padded with -1), num_accepted [B] and target_logprob [sum k_b]
    (the target model's raw log-prob of every draft token, for scoring).
    """
    return _ops.speculative_verify.default(
        target_logits, draft_token_ids, cu_num_draft, draft_probs, temperature, top_k, top_p, seed, offset
    )


@torch.library.register_fake("a1::speculative_verify")
def _speculative_verify_fake(target_logits, draft_token_ids, cu_num_draft, draft_probs, temperature, top_k, top_p, seed, offset):
    batch = cu_num_draft.shape[0] - 1
    width = torch.library.get_ctx().new_dynamic_size(min=1)  # max_k + 1 depends on the data
    out_ids = target_logits.new_empty((batch, width), dtype=torch.int64)
    num_accepted = target_logits.new_empty(batch, dtype=torch.int64)
    return out_ids, num_accepted, target_logits.new_empty(draft_token_ids.shape[0], dtype=torch.float32)


def sample(
    logits: torch.Tensor,
    temperature: torch.Tensor,
    top_k: torch.Tensor,
    top_p: torch.Tensor,
    seed: torch.Tensor,
    offset: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One token per row of logits [B, V] and its raw log-prob log_softmax(logits[b])[token],
    computed as (x - max) - log(sum exp(x - max)) so it stays exact for logits of any size. Per row:
    temperature (below 1e-5, 0 included, is greedy: reference.GREEDY_TEMPERATURE; logits / T would
    leave float's range), top_k (0 = off; ties at the k-th value kept), top_p (1 = off), Philox seed
    and offset. A row with a NaN or +inf, or no value above -inf, has no draw and no log-prob: the
    call raises RuntimeError naming the row (greedy rows included), on every device and in the twin.
    On CUDA that check reads one flag back from the device."""
    return _ops.sample.default(logits, temperature, top_k, top_p, seed, offset)


@torch.library.register_fake("a1::sample")
def _sample_fake(logits, temperature, top_k, top_p, seed, offset):
    rows = logits.shape[0]
    return logits.new_empty(rows, dtype=torch.int64), logits.new_empty(rows, dtype=torch.float32)


def sampling_probs(
    logits: torch.Tensor, temperature: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor
) -> torch.Tensor:
    """The distribution `sample` draws each row of logits [B, V] from, float32 [B, V]: softmax of
    logits[b] / temperature[b] after the same top-k / top-p filter (the kernels share its code),
    one-hot on the first argmax for greedy rows (temperature below 1e-5) and for rows the filter
    leaves empty. Speculative decoding's q rows: exactly what the draft sampled from. Rows that
    are not distributions are refused as `sample` refuses them."""
    return _ops.sampling_probs.default(logits, temperature, top_k, top_p)


@torch.library.register_fake("a1::sampling_probs")
def _sampling_probs_fake(logits, temperature, top_k, top_p):
    return logits.new_empty(logits.shape, dtype=torch.float32)
