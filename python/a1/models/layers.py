"""Decoder building blocks: RMSNorm (with vLLM's fused residual add), SwiGLU MLP (fused gate+up), paged
GQA attention (fused qkv)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import torch

from a1_ext import ops

from .config import ModelConfig

if TYPE_CHECKING:
    from .base import AttentionMetadata


def _weight(*shape: int, dtype: torch.dtype) -> torch.nn.Parameter:
    return torch.nn.Parameter(torch.empty(*shape, dtype=dtype), requires_grad=False)


def _bias(enabled: bool, size: int, dtype: torch.dtype) -> Optional[torch.nn.Parameter]:
    return torch.nn.Parameter(torch.zeros(size, dtype=dtype), requires_grad=False) if enabled else None


class RMSNorm(torch.nn.Module):
    """transformers' RMSNorm (normalise in float32, cast back, then scale by the weight) on a1 ops.

    norm(x) returns a new tensor. norm(x, residual) is the fused residual step of a decoder:
    residual += x, x = norm(residual), both IN PLACE, and returns (x, residual).
    """

    def __init__(self, size: int, eps: float, dtype: torch.dtype) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(size, dtype=dtype), requires_grad=False)
        self.eps = eps

    def forward(self, x: torch.Tensor, residual: Optional[torch.Tensor] = None):
        if residual is None:
            return ops.rms_norm(x, self.weight, self.eps)
        ops.fused_add_rms_norm(x, residual, self.weight, self.eps)
        return x, residual


class SwiGLU(torch.nn.Module):
    """down(silu(gate(x)) * up(x)) with gate and up stacked in one [2 * I, H] weight; the gate is one
    fused op (a1 silu_and_mul)."""

    def __init__(self, config: ModelConfig, dtype: torch.dtype) -> None:
        super().__init__()
        hidden, inter = config.hidden_size, config.intermediate_size
        self.gate_up_weight = _weight(2 * inter, hidden, dtype=dtype)
        self.gate_up_bias = _bias(config.mlp_bias, 2 * inter, dtype)
        self.down_weight = _weight(hidden, inter, dtype=dtype)
        self.down_bias = _bias(config.mlp_bias, hidden, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate_up = ops.linear(x, self.gate_up_weight, self.gate_up_bias)
        return ops.linear(ops.silu_and_mul(gate_up), self.down_weight, self.down_bias)


class PagedAttention(torch.nn.Module):
    """GQA self-attention whose K/V live in the paged cache: one matmul for q, k and v, RoPE on q and
    k together (in place), then reshape_and_cache + paged_attention."""

    def __init__(self, config: ModelConfig, dtype: torch.dtype) -> None:
        super().__init__()
        self.num_heads, self.num_kv_heads, self.head_dim = config.num_heads, config.num_kv_heads, config.head_dim
        self.qk_heads = self.num_heads + self.num_kv_heads
        self.head_split = [self.num_heads, self.num_kv_heads, self.num_kv_heads]
        qkv_width = (self.qk_heads + self.num_kv_heads) * self.head_dim
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
        qkv = ops.linear(x, self.qkv_weight, self.qkv_bias).view(tokens, -1, self.head_dim)  # [T, q + k + v heads, D]
        ops.rotary_embedding(qkv[:, : self.qk_heads], cos, sin)  # q and k heads, in place
        query, key, value = qkv.split(self.head_split, dim=1)
        ops.reshape_and_cache(key, value, k_cache, v_cache, meta.slot_mapping)
        out = ops.paged_attention(
            query, k_cache, v_cache, meta.block_table, meta.seq_lens, meta.query_start_loc, self.scale
        )
        return ops.linear(out.reshape(tokens, -1), self.o_weight, self.o_bias)


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
        residual: Optional[torch.Tensor],
        cos: torch.Tensor,
        sin: torch.Tensor,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
        meta: AttentionMetadata,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """vLLM's residual layout: the layer returns its MLP output and the running residual stream
        without adding them; the next norm adds them (fused_add_rms_norm), so every residual add
        rides on a norm. residual is None for the first layer (hidden is then the embedding).
        Both tensors are updated in place.

        Submodules are called through .forward: they have no hooks, and nn.Module.__call__ costs a
        few microseconds per call, ~1 ms per batch-1 decode step over the model's ~150 calls."""
        if residual is None:
            residual, hidden = hidden, self.input_norm.forward(hidden)
        else:
            hidden, residual = self.input_norm.forward(hidden, residual)
        hidden = self.attention.forward(hidden, cos, sin, k_cache, v_cache, meta)
        hidden, residual = self.post_attention_norm.forward(hidden, residual)
        return self.mlp.forward(hidden), residual
