"""Pure-PyTorch twins of every a1 op: same signatures, same semantics, written for clarity.

The kernels are tested against these. The random ops draw the same Philox4x32-10 uniforms as the
kernels (csrc/common/philox.h), so a twin and a kernel agree token for token except where two
candidates' race keys tie to within float rounding.
"""
from __future__ import annotations

import math
from typing import Optional

import torch

try:
    from .quant_reference import dequantize, is_quantized, quant_linear, round_activations  # noqa: F401  (the quantized ops' twins)
except ImportError:  # loaded by path outside the package (tests/a1_ext/cuda_cases.py)
    import importlib.util
    import pathlib
    import sys

    _spec = importlib.util.spec_from_file_location("a1_quant_twins", pathlib.Path(__file__).with_name("quant_reference.py"))
    _quant = sys.modules.setdefault(_spec.name, importlib.util.module_from_spec(_spec))
    _spec.loader.exec_module(_quant)
    dequantize, is_quantized, quant_linear = _quant.dequantize, _quant.is_quantized, _quant.quant_linear
    round_activations = _quant.round_activations

_MASK32 = 0xFFFFFFFF
RNG_SAMPLE_RACE, RNG_VERIFY_ACCEPT, RNG_VERIFY_RACE = 0, 1, 2
# Temperatures in [0, 1e-5) are greedy in sample and speculative_verify (kGreedyTemperature in
# csrc/sampling/greedy_temperature.h): below it logits / temperature leaves float's range.
GREEDY_TEMPERATURE = 1e-5


# ----------------------------------------------------------------------------- RNG
def _mulhilo32(const: int, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(hi, lo) 32-bit halves of const * value for uint32 values held in int64 (no overflow)."""
    x = const * (value >> 16)  # < 2**48
    y = const * (value & 0xFFFF)  # < 2**48
    hi = (x + (y >> 16)) >> 16
    lo = (((x & 0xFFFF) << 16) + y) & _MASK32
    return hi, lo


def philox4x32_10(counter: torch.Tensor, key0: int, key1: int) -> torch.Tensor:
    """Philox4x32-10 on counters int64[..., 4] (uint32 values); returns int64[..., 4]."""
    c0, c1, c2, c3 = counter.unbind(-1)
    for _ in range(10):
        hi0, lo0 = _mulhilo32(0xD2511F53, c0)
        hi1, lo1 = _mulhilo32(0xCD9E8D57, c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ key0, lo1, hi0 ^ c3 ^ key1, lo0
        key0 = (key0 + 0x9E3779B9) & _MASK32
        key1 = (key1 + 0xBB67AE85) & _MASK32
    return torch.stack([c0, c1, c2, c3], dim=-1)


def philox_draw(seed: int, offset: int, purpose: int, position: int, blocks: torch.Tensor) -> torch.Tensor:
    """The kernels' stream layout: counter (block, position | purpose << 28, offset lo, offset hi)."""
    seed, offset = int(seed) & (2**64 - 1), int(offset) & (2**64 - 1)
    counter = torch.stack(
        [
            blocks.to(torch.int64),
            torch.full_like(blocks, (position & 0x0FFFFFFF) | (purpose << 28), dtype=torch.int64),
            torch.full_like(blocks, offset & _MASK32, dtype=torch.int64),
            torch.full_like(blocks, offset >> 32, dtype=torch.int64),
        ],
        dim=-1,
    )
    return philox4x32_10(counter, seed & _MASK32, seed >> 32)


def race_uniforms(seed: int, offset: int, purpose: int, position: int, vocab: int) -> torch.Tensor:
    """float32 uniforms in the open interval (0, 1), one per vocab entry, 4 per Philox block."""
    bits = philox_draw(seed, offset, purpose, position, torch.arange((vocab + 3) // 4)).reshape(-1)[:vocab]
    return ((bits >> 9).to(torch.float32) + 0.5) * (1.0 / 8388608.0)


def accept_uniform(seed: int, offset: int, position: int) -> float:
    """A float64 uniform in the open interval (0, 1) with 52 random bits."""
    bits = philox_draw(seed, offset, RNG_VERIFY_ACCEPT, position, torch.zeros(1, dtype=torch.int64))[0]
    k = ((int(bits[0]) >> 6) << 26) | (int(bits[1]) >> 6)
    return (k + 0.5) / 4503599627370496.0


def race_keys(weights_log: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """Exponential race in log space: argmax(log w - log(-log u)) is a draw from w / sum(w)."""
    return weights_log - torch.log(-torch.log(uniforms))


# ----------------------------------------------------------------------------- sampling filters
def filtered_logits(logits: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """logits / temperature with tokens outside top-k / top-p set to -inf (float32, one row).

    top-k keeps every token whose logit is >= the k-th largest (ties kept); top-p then keeps token
    v iff the probability mass of tokens strictly more likely than v is < top_p.
    """
    scaled = logits.float() / temperature
    vocab = scaled.numel()
    if 0 < top_k < vocab:
        kth = torch.topk(scaled, top_k).values[-1]
        scaled = torch.where(scaled >= kth, scaled, torch.full_like(scaled, -math.inf))
    if top_p < 1.0:
        probs = torch.softmax(scaled, dim=-1)
        ascending = torch.sort(probs).values
        mass_at_or_below = torch.cumsum(ascending.double(), 0)
        total = mass_at_or_below[-1]
        idx = torch.searchsorted(ascending, probs, right=True) - 1
        mass_greater = total - mass_at_or_below[idx]
        scaled = torch.where(mass_greater < top_p, scaled, torch.full_like(scaled, -math.inf))
    return scaled


# ----------------------------------------------------------------------------- cache ops
def reshape_and_cache(key, value, k_cache, v_cache, slot_mapping) -> None:
    valid = slot_mapping >= 0
    slots = slot_mapping[valid]
    # Index (block, offset) rather than a flattened view: caches may have any block stride.
    blocks, offsets = slots // k_cache.shape[1], slots % k_cache.shape[1]
    k_cache[blocks, offsets] = key[valid].to(k_cache.dtype)
    v_cache[blocks, offsets] = value[valid].to(v_cache.dtype)


def copy_blocks(k_caches, v_caches, block_mapping) -> None:
    src, dst = block_mapping[:, 0], block_mapping[:, 1]
    for cache in list(k_caches) + list(v_caches):
        cache[dst] = cache[src]


def gather_kv(cache: torch.Tensor, block_table_row: torch.Tensor, seq_len: int) -> torch.Tensor:
    """The first seq_len positions of one sequence as a contiguous [seq_len, Hkv, D] tensor."""
    block_size = cache.shape[1]
    num_blocks = (seq_len + block_size - 1) // block_size
    blocks = cache[block_table_row[:num_blocks].long()]
    return blocks.reshape(-1, *cache.shape[2:])[:seq_len]


def paged_attention(query, k_cache, v_cache, block_table, seq_lens, query_start_loc, scale) -> torch.Tensor:
    out = torch.zeros_like(query)
    num_q_heads, num_kv_heads = query.shape[1], k_cache.shape[2]
    group = num_q_heads // num_kv_heads
    for b in range(seq_lens.numel()):
        q0, q1 = int(query_start_loc[b]), int(query_start_loc[b + 1])
        seq_len, q_len = int(seq_lens[b]), q1 - q0
        if q_len == 0:
            continue
        keys = gather_kv(k_cache, block_table[b], seq_len).float().repeat_interleave(group, dim=1)
        values = gather_kv(v_cache, block_table[b], seq_len).float().repeat_interleave(group, dim=1)
        q = query[q0:q1].float()
        scores = torch.einsum("qhd,khd->hqk", q, keys) * scale
        q_pos = torch.arange(seq_len - q_len, seq_len).unsqueeze(1)
        causal = torch.arange(seq_len).unsqueeze(0) <= q_pos
        scores = scores.masked_fill(~causal, -math.inf)
        out[q0:q1] = torch.einsum("hqk,khd->qhd", torch.softmax(scores, -1), values).to(query.dtype)
    return out


# ----------------------------------------------------------------------------- normalization ops
def rms_norm(x, weight, eps) -> torch.Tensor:
    """transformers' LlamaRMSNorm: normalise in float32, cast back, THEN multiply by the weight."""
    hidden = x.float()
    hidden = hidden * torch.rsqrt(hidden.pow(2).mean(-1, keepdim=True) + eps)
    return weight * hidden.to(x.dtype)


def fused_add_rms_norm(x, residual, weight, eps) -> None:
    residual.add_(x)  # in the dtype: float sum rounded once, like `residual + hidden` in a model
    x.copy_(rms_norm(residual, weight, eps))


# ----------------------------------------------------------------------------- projections
def linear(x, weight, bias=None) -> torch.Tensor:
    if weight.dtype == torch.uint8:  # GGUF blocks [N, K / block_size, block_bytes]
        return quant_linear(x, weight, bias)
    if weight.dim() == 3:  # panels [N / 16, K, 16] of W [N, K]
        weight = weight.transpose(1, 2).reshape(-1, weight.shape[1])
    return torch.nn.functional.linear(x, weight, bias)


# ----------------------------------------------------------------------------- activation ops
def silu_and_mul(x) -> torch.Tensor:
    gate, up = x.chunk(2, dim=-1)
    return torch.nn.functional.silu(gate) * up


# ----------------------------------------------------------------------------- rotary embedding
def rotary_embedding(x, cos, sin) -> None:
    rotated = x * cos[:, None]  # a tensor of x's dtype: rounded before the add, as the kernels do
    x.copy_(rotated.addcmul_(x.roll(x.shape[-1] // 2, dims=-1), sin[:, None]))


# ----------------------------------------------------------------------------- decoder layer
def decoder_layer(
    residual, hidden, input_norm_weight, qkv_weight, qkv_bias, o_weight, o_bias, post_norm_weight,
    gate_up_weight, gate_up_bias, down_weight, down_bias, cos, sin, k_cache, v_cache, slot_mapping,
    block_table, seq_lens, query_start_loc, eps, scale,
) -> torch.Tensor:
    tokens, (num_kv_heads, head_dim) = hidden.shape[0], k_cache.shape[2:]
    qkv_width = qkv_weight.shape[0] * qkv_weight.shape[2] if qkv_weight.dim() == 3 and not is_quantized(qkv_weight) \
        else qkv_weight.shape[0]
    num_heads = qkv_width // head_dim - 2 * num_kv_heads
    fused_add_rms_norm(hidden, residual, input_norm_weight, eps)
    qkv = linear(hidden, qkv_weight, qkv_bias).view(tokens, num_heads + 2 * num_kv_heads, head_dim)
    rotary_embedding(qkv[:, : num_heads + num_kv_heads], cos, sin)
    query, key, value = qkv.split([num_heads, num_kv_heads, num_kv_heads], dim=1)
    reshape_and_cache(key, value, k_cache, v_cache, slot_mapping)
    attention = paged_attention(query, k_cache, v_cache, block_table, seq_lens, query_start_loc, scale)
    projected = linear(attention.reshape(tokens, num_heads * head_dim), o_weight, o_bias)
    fused_add_rms_norm(projected, residual, post_norm_weight, eps)
    return linear(silu_and_mul(linear(projected, gate_up_weight, gate_up_bias)), down_weight, down_bias)


def decoder_layers(residual, hidden, input_norm_weight, qkv_weight, qkv_bias, o_weight, o_bias, post_norm_weight,
                   gate_up_weight, gate_up_bias, down_weight, down_bias, cos, sin, k_caches, v_caches, slot_mapping,
                   block_table, seq_lens, query_start_loc, eps, scale) -> torch.Tensor:
    for i in range(len(input_norm_weight)):
        hidden = decoder_layer(residual, hidden, input_norm_weight[i], qkv_weight[i], qkv_bias[i], o_weight[i],
                               o_bias[i], post_norm_weight[i], gate_up_weight[i], gate_up_bias[i], down_weight[i],
                               down_bias[i], cos, sin, k_caches[i], v_caches[i], slot_mapping, block_table, seq_lens,
                               query_start_loc, eps, scale)
    return hidden


# ----------------------------------------------------------------------------- scoring ops
def step_score(logits, token_ids, cu_seqlens, temperature) -> tuple[torch.Tensor, torch.Tensor]:
    logprobs = torch.log_softmax(logits.float() / temperature, dim=-1)
    token_logprob = logprobs.gather(1, token_ids.long().unsqueeze(1)).squeeze(1)
    step_nll = torch.empty(cu_seqlens.numel() - 1, dtype=torch.float32)
    for b in range(step_nll.numel()):
        segment = token_logprob[int(cu_seqlens[b]) : int(cu_seqlens[b + 1])]
        step_nll[b] = -segment.double().mean() if segment.numel() else math.nan
    return token_logprob, step_nll


def linear_step_score(hidden, lm_head, token_ids, cu_seqlens, temperature, chunk) -> tuple[torch.Tensor, torch.Tensor]:
    if is_quantized(lm_head):  # as quant_linear multiplies: 8-bit rounded activations
        return step_score(quant_linear(hidden.float(), lm_head), token_ids, cu_seqlens, temperature)
    return step_score(linear(hidden.float(), lm_head.float()), token_ids, cu_seqlens, temperature)


# ----------------------------------------------------------------------------- random ops
def _is_greedy(temperature: float) -> bool:
    return temperature < float(torch.tensor(GREEDY_TEMPERATURE, dtype=torch.float32))  # the kernels' float


def _refuse_unusable_rows(logits: torch.Tensor, name: str) -> None:
    """The kernels' rule: a row with a NaN or +inf, or nothing above -inf, is no distribution."""
    bad = ~torch.isfinite(logits.float().amax(dim=1)) if logits.numel() else torch.zeros(0, dtype=torch.bool)
    if bool(bad.any()):
        row = int(torch.nonzero(bad)[0, 0])
        raise RuntimeError(f"{name}[{row}] is not a distribution to sample from: it holds a NaN or +inf, or no "
                           "value above -inf")


def sample(logits, temperature, top_k, top_p, seed, offset) -> tuple[torch.Tensor, torch.Tensor]:
    rows, vocab = logits.shape
    _refuse_unusable_rows(logits, "logits")
    token_ids = torch.empty(rows, dtype=torch.int64)
    for b in range(rows):
        if _is_greedy(float(temperature[b])):
            token_ids[b] = torch.argmax(logits[b].float())
            continue
        scaled = filtered_logits(logits[b], float(temperature[b]), int(top_k[b]), float(top_p[b]))
        if not bool((scaled > -math.inf).any()):  # nothing kept (the scaled logits overflowed): greedy
            token_ids[b] = torch.argmax(logits[b].float())
            continue
        uniforms = race_uniforms(int(seed[b]), int(offset[b]), RNG_SAMPLE_RACE, 0, vocab)
        token_ids[b] = torch.argmax(race_keys(scaled, uniforms))
    logprob = torch.log_softmax(logits.float(), -1).gather(1, token_ids.unsqueeze(1)).squeeze(1)
    return token_ids, logprob


def sampling_probs(logits, temperature, top_k, top_p) -> torch.Tensor:
    """The distribution sample draws each row from: softmax of the filtered row; one-hot on the
    first argmax for greedy rows and for rows the filter leaves empty."""
    rows, vocab = logits.shape
    _refuse_unusable_rows(logits, "logits")
    probs = torch.zeros(rows, vocab, dtype=torch.float32)
    for b in range(rows):
        if not _is_greedy(float(temperature[b])):
            scaled = filtered_logits(logits[b], float(temperature[b]), int(top_k[b]), float(top_p[b]))
            if bool((scaled > -math.inf).any()):
                probs[b] = torch.softmax(scaled, -1)
                continue
        probs[b, torch.argmax(logits[b].float())] = 1.0
    return probs


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
    batch = cu_num_draft.numel() - 1
    vocab = target_logits.shape[1]
    if draft_probs is not None and draft_probs.numel():
        bad = ~(torch.isfinite(draft_probs) & (draft_probs >= 0))
        if bool(bad.any()):
            index = [int(i) for i in torch.nonzero(bad)[0]]
            value = float(draft_probs[tuple(index)])
            raise RuntimeError(f"draft_probs{index} must be finite and >= 0, got {value:g}")
    _refuse_unusable_rows(target_logits, "target_logits")
    num_draft = (cu_num_draft[1:] - cu_num_draft[:-1]).tolist()
    out_ids = torch.full((batch, max(num_draft, default=0) + 1), -1, dtype=torch.int64)
    num_accepted = torch.zeros(batch, dtype=torch.int64)
    target_logprob = torch.empty(draft_token_ids.numel(), dtype=torch.float32)
    for b in range(batch):
        d0, k = int(cu_num_draft[b]), num_draft[b]
        rows = target_logits[d0 + b : d0 + b + k + 1].float()
        drafts = draft_token_ids[d0 : d0 + k].long()
        target_logprob[d0 : d0 + k] = torch.log_softmax(rows[:k], -1).gather(1, drafts.unsqueeze(1)).squeeze(1)
        if _is_greedy(float(temperature[b])):
            argmax = torch.argmax(rows, dim=-1)
            accepted = 0
            while accepted < k and int(drafts[accepted]) == int(argmax[accepted]):
                accepted += 1
            out_ids[b, :accepted] = drafts[:accepted]
            out_ids[b, accepted] = argmax[accepted]
            num_accepted[b] = accepted
            continue
        t, kk, pp = float(temperature[b]), int(top_k[b]), float(top_p[b])
        s, o = int(seed[b]), int(offset[b])
        for i in range(k + 1):
            probs = torch.softmax(filtered_logits(rows[i], t, kk, pp), -1)
            if i == k:  # every draft accepted: bonus token from the target
                weights = probs
            else:
                token = int(drafts[i])
                q_row = draft_probs[d0 + i].float() if draft_probs is not None else None
                q_token = float(q_row[token]) if q_row is not None else 1.0
                if accept_uniform(s, o, i) * q_token < float(probs[token]):
                    out_ids[b, i] = token
                    continue
                if q_row is None:
                    q_row = torch.zeros(vocab)
                    q_row[token] = 1.0
                weights = torch.clamp(probs - q_row, min=0.0)
                if float(weights.sum()) <= 0.0:
                    weights = probs
            uniforms = race_uniforms(s, o, RNG_VERIFY_RACE, i, vocab)
            out_ids[b, i] = torch.argmax(race_keys(torch.log(weights), uniforms))
            num_accepted[b] = i
            break
    return out_ids, num_accepted, target_logprob
