"""Two ways to run a decoder over whole sequences, teacher-forced:

- `prefill_hidden(model, ids)`: the model's own forward (a1's fused ops on a throwaway paged cache),
  fast, no autograd: the teacher's hidden states, agreement measurements.
- `layers_forward(...)`: plain PyTorch (SDPA, autograd) over a list of DecoderLayers on a padded
  batch: what distillation trains, and the reference the draft models are tested against.

Both follow transformers' Llama: RMSNorm in float32 then scaled, RoPE by rotate-half, GQA attention,
SwiGLU MLP, pre-norm residuals.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from a1.models.attention_metadata import AttentionMetadata
from a1.models.layers import dense_weight


@torch.inference_mode()
def prefill_hidden(model, token_ids: Sequence[int], block_size: int = 16) -> torch.Tensor:
    """The model's final hidden states (after its norm), [T, hidden], for one sequence run as one
    prefill over a fresh paged cache (model.forward: the engine's code path)."""
    ids = list(token_ids)
    if not ids:
        raise ValueError("token_ids is empty")
    blocks = -(-len(ids) // block_size)
    shape = model.kv_cache_shape(blocks, block_size)
    caches = [(torch.zeros(shape, dtype=model.dtype), torch.zeros(shape, dtype=model.dtype))
              for _ in range(model.config.num_layers)]
    meta = AttentionMetadata(
        slot_mapping=torch.arange(len(ids), dtype=torch.int64),
        block_table=torch.arange(blocks, dtype=torch.int32).unsqueeze(0),
        seq_lens=torch.tensor([len(ids)], dtype=torch.int32),
        query_start_loc=torch.tensor([0, len(ids)], dtype=torch.int32),
    )
    return model.forward(torch.tensor(ids, dtype=torch.int64), torch.arange(len(ids)), caches, meta)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    scaled = x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + eps)
    return weight * scaled.to(x.dtype)


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [B, H, T, D]; cos / signed sin [T, D] as a1.models.rope builds them (roll == rotate_half)."""
    return x * cos + x.roll(x.shape[-1] // 2, dims=-1) * sin


def layer_forward(layer, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, config) -> torch.Tensor:
    """One DecoderLayer on x [B, T, hidden] (causal), differentiable in the layer's parameters and x."""
    (in_norm, qkv_w, qkv_b, o_w, o_b, post_norm, gate_up_w, gate_up_b, down_w, down_b) = layer.weights()
    batch, length, _ = x.shape
    heads, kv_heads, head_dim = config.num_heads, config.num_kv_heads, config.head_dim
    h = rms_norm(x, in_norm, config.rms_norm_eps)
    qkv = F.linear(h, dense_weight(qkv_w), qkv_b).view(batch, length, heads + 2 * kv_heads, head_dim).transpose(1, 2)
    q, k, v = qkv.split([heads, kv_heads, kv_heads], dim=1)
    q, k = _rope(q, cos, sin), _rope(k, cos, sin)
    attn = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=kv_heads != heads)
    x = x + F.linear(attn.transpose(1, 2).reshape(batch, length, heads * head_dim), dense_weight(o_w), o_b)
    gate, up = F.linear(rms_norm(x, post_norm, config.rms_norm_eps), dense_weight(gate_up_w), gate_up_b).chunk(2, dim=-1)
    return x + F.linear(F.silu(gate) * up, dense_weight(down_w), down_b)


def layers_forward(model, layers: Sequence, norm_weight: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """Final hidden states [B, T, hidden] of `layers` (then the final norm) over input_ids [B, T]
    (right-padded: causal attention never lets a real token see the padding after it), with the
    embedding and RoPE tables of `model` (a DecoderLM)."""
    config = model.config
    length = input_ids.shape[1]
    cos = model.rotary.cos_table[:length]
    sin = model.rotary.sin_table[:length]
    x = model.embed(input_ids.reshape(-1)).view(*input_ids.shape, config.hidden_size)
    for layer in layers:
        x = layer_forward(layer, x, cos, sin, config)
    return rms_norm(x, norm_weight, config.rms_norm_eps)


def logits_of(model, hidden: torch.Tensor) -> torch.Tensor:
    """float32 logits of hidden states [..., hidden] through the model's LM head (plain torch)."""
    return F.linear(hidden, dense_weight(model.lm_head_weight)).float()
