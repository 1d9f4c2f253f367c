"""Decoder building blocks: RMSNorm, SwiGLU MLP (fused gate+up), paged GQA attention (fused qkv)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import torch
import torch.nn.functional as F

from a1_ext import ops

from .config import ModelConfig
from .rope import apply_rotary

if TYPE_CHECKING:
    from .base import AttentionMetadata


def _weight(*shape: int, dtype: torch.dtype) -> torch.nn.Parameter:
    return torch.nn.Parameter(torch.empty(*shape, dtype=dtype), requires_grad=False)


def _bias(enabled: bool, size: int, dtype: torch.dtype) -> Optional[torch.nn.Parameter]:
    return torch.nn.Parameter(torch.zeros(size, dtype=dtype), requires_grad=False) if enabled else None


class RMSNorm(torch.nn.Module):
    def __init__(self, size: int, eps: float, dtype: torch.dtype) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(size, dtype=dtype), requires_grad=False)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # torch's rms_norm normalizes in float32 and casts back before the weight, like transformers.
        return F.rms_norm(x, self.weight.shape, self.weight, self.eps)


class SwiGLU(torch.nn.Module):
    """down(silu(gate(x)) * up(x)) with gate and up stacked in one [2 * I, H] weight."""

    def __init__(self, config: ModelConfig, dtype: torch.dtype) -> None:
        super().__init__()
        hidden, inter = config.hidden_size, config.intermediate_size
        self.gate_up_weight = _weight(2 * inter, hidden, dtype=dtype)
        self.gate_up_bias = _bias(config.mlp_bias, 2 * inter, dtype)
        self.down_weight = _weight(hidden, inter, dtype=dtype)
        self.down_bias = _bias(config.mlp_bias, hidden, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = F.linear(x, self.gate_up_weight, self.gate_up_bias).chunk(2, dim=-1)
        return F.linear(F.silu(gate) * up, self.down_weight, self.down_bias)


class PagedAttention(torch.nn.Module):
    """GQA self-attention whose K/V live in the paged cache: one matmul for q, k and v, RoPE on q and
    k together, then reshape_and_cache + paged_attention."""

    def __init__(self, config: ModelConfig, dtype: torch.dtype) -> None:
        super().__init__()
        self.num_heads, self.num_kv_heads, self.head_dim = config.num_heads, config.num_kv_heads, config.head_dim
        self.qk_width = (self.num_heads + self.num_kv_heads) * self.head_dim
        qkv_width = self.qk_width + self.num_kv_heads * self.head_dim
        self.qkv_weight = _weight(qkv_width, config.hidden_size, dtype=dtype)
        self.qkv_bias = _bias(config.attention_bias, qkv_width, dtype)
        self.o_weight = _weight(config.hidden_size, self.num_heads * self.head_dim, dtype=dtype)
        self.o_bias = _bias(config.o_proj_bias, config.hidden_size, dtype)
        self.scale = self.head_dim**-0.5

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
        meta: AttentionMetadata,
    ) -> torch.Tensor:
        tokens = x.shape[0]
        qkv = F.linear(x, self.qkv_weight, self.qkv_bias)
        qk = apply_rotary(qkv[:, : self.qk_width].view(tokens, -1, self.head_dim), cos, sin)
        query, key = qk[:, : self.num_heads], qk[:, self.num_heads :]
        value = qkv[:, self.qk_width :].view(tokens, self.num_kv_heads, self.head_dim)
        ops.reshape_and_cache(key, value, k_cache, v_cache, meta.slot_mapping)
        out = ops.paged_attention(
            query, k_cache, v_cache, meta.block_table, meta.seq_lens, meta.query_start_loc, self.scale
        )
        return F.linear(out.reshape(tokens, -1), self.o_weight, self.o_bias)


class DecoderLayer(torch.nn.Module):
    def __init__(self, config: ModelConfig, dtype: torch.dtype) -> None:
        super().__init__()
        self.input_norm = RMSNorm(config.hidden_size, config.rms_norm_eps, dtype)
        self.attention = PagedAttention(config, dtype)
        self.post_attention_norm = RMSNorm(config.hidden_size, config.rms_norm_eps, dtype)
        self.mlp = SwiGLU(config, dtype)

    def forward(
        self,
        hidden: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
        meta: AttentionMetadata,
    ) -> torch.Tensor:
        hidden = hidden + self.attention(self.input_norm(hidden), cos, sin, k_cache, v_cache, meta)
        return hidden + self.mlp(self.post_attention_norm(hidden))
