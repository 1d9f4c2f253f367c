"""Rotary position embeddings: inverse frequencies for every supported scaling (the arithmetic of
transformers' modeling_rope_utils, step for step, so the tables agree bit for bit) and a cos/sin
table cached per position and gathered by `positions`. The rotation itself is the a1_ext op
rotary_embedding (in place on the fused q/k heads)."""
from __future__ import annotations

import math
from typing import Optional, Union

import torch

from .config import ModelConfig


def default_inv_freq(base: float, dim: int) -> torch.Tensor:
    return 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).to(dtype=torch.float) / dim))


def inv_frequencies(config: ModelConfig, seq_len: Optional[int] = None) -> torch.Tensor:
    """float32 [head_dim / 2]. `seq_len` only matters for dynamic NTK scaling (the sequence's length)."""
    dim, base, scaling = config.head_dim, config.rope_theta, config.rope_scaling or {}
    rope_type = config.rope_type
    if rope_type == "default":
        return default_inv_freq(base, dim)
    if rope_type == "linear":
        return default_inv_freq(base, dim) / scaling["factor"]
    if rope_type == "freq_factors":
        return default_inv_freq(base, dim) / torch.tensor(scaling["factors"], dtype=torch.float)
    if rope_type == "dynamic":
        return _dynamic_ntk_inv_freq(base, dim, float(scaling["factor"]), config.max_position_embeddings, seq_len)
    if rope_type == "llama3":
        return _llama3_inv_freq(default_inv_freq(base, dim), scaling)
    raise ValueError(f"unsupported RoPE scaling {rope_type!r}")


def _dynamic_ntk_inv_freq(
    base: float, dim: int, factor: float, max_positions: int, seq_len: Optional[int]
) -> torch.Tensor:
    # transformers passes seq_len as an int64 tensor (max(position_ids) + 1), so the base is computed
    # in float32 tensor arithmetic; do the same to get the same bits.
    length: Union[int, torch.Tensor] = max_positions
    if seq_len is not None:
        length = torch.maximum(torch.tensor(seq_len, dtype=torch.int64), torch.tensor(max_positions, dtype=torch.int64))
    scaled_base = base * ((factor * length / max_positions) - (factor - 1)) ** (dim / (dim - 2))
    return 1.0 / (scaled_base ** (torch.arange(0, dim, 2, dtype=torch.int64).to(dtype=torch.float) / dim))


def _llama3_inv_freq(inv_freq: torch.Tensor, scaling: dict) -> torch.Tensor:
    factor = scaling["factor"]
    low_freq_factor = scaling["low_freq_factor"]
    high_freq_factor = scaling["high_freq_factor"]
    old_context_len = scaling["original_max_position_embeddings"]
    low_freq_wavelen = old_context_len / low_freq_factor
    high_freq_wavelen = old_context_len / high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    smooth_factor = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    smoothed = (1 - smooth_factor) * scaled / factor + smooth_factor * scaled
    is_medium_freq = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
    return torch.where(is_medium_freq, smoothed, scaled)


def rotary_tables(positions: torch.Tensor, inv_freq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, signed_sin) float32 [N, head_dim] for integer positions [N].

    cos = cos(cat(f, f)) as transformers builds it; signed_sin = cat(-sin f, sin f), so that
    rotate_half(x) * sin == x.roll(head_dim / 2, -1) * signed_sin exactly: the tables of the
    a1_ext rotary_embedding op.
    """
    freqs = positions.to(torch.float32)[:, None] * inv_freq.to(positions.device)[None, :]
    sin = freqs.sin()
    return torch.cat((freqs, freqs), dim=-1).cos(), torch.cat((-sin, sin), dim=-1)


class RotaryEmbedding(torch.nn.Module):
    """cos/sin tables for positions [0, max_position_embeddings), in the model dtype (transformers
    also casts its float32 cos/sin to the activations' dtype)."""

    def __init__(self, config: ModelConfig, dtype: torch.dtype, device: Optional[torch.device] = None) -> None:
        super().__init__()
        self.config = config
        self.inv_freq = inv_frequencies(config)
        cos, sin = rotary_tables(torch.arange(config.max_position_embeddings, device=device), self.inv_freq)
        self.register_buffer("cos_table", cos.to(dtype), persistent=False)
        self.register_buffer("sin_table", sin.to(dtype), persistent=False)

    def forward(
        self, positions: torch.Tensor, seq_lens: torch.Tensor, query_start_loc: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin [T, head_dim] for the tokens at `positions` (int64 [T]), for ops.rotary_embedding."""
        if self.config.rope_type == "dynamic":
            longest = int(seq_lens.max()) if seq_lens.numel() else 0
            if longest > self.config.max_position_embeddings:
                return self._dynamic_long(positions, seq_lens, query_start_loc)
        return self.cos_table[positions], self.sin_table[positions]

    def _dynamic_long(
        self, positions: torch.Tensor, seq_lens: torch.Tensor, query_start_loc: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Dynamic NTK past max_position_embeddings: transformers rescales the base for the length of
        the sequence being run; here each row gets the frequencies of its own length seq_lens[b]."""
        cos = torch.empty(positions.shape[0], self.config.head_dim, dtype=self.cos_table.dtype, device=positions.device)
        sin = torch.empty_like(cos)
        starts, lengths = query_start_loc.tolist(), seq_lens.tolist()
        for row, length in enumerate(lengths):
            begin, end = starts[row], starts[row + 1]
            if begin == end:
                continue
            inv_freq = self.inv_freq
            if length > self.config.max_position_embeddings:
                inv_freq = inv_frequencies(self.config, length)
            row_cos, row_sin = rotary_tables(positions[begin:end], inv_freq)
            cos[begin:end], sin[begin:end] = row_cos, row_sin
        return cos, sin
