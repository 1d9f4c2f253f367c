"""Decoder building blocks: RMSNorm (with vLLM's fused residual add), and the weights of the SwiGLU MLP
(fused gate+up) and paged GQA attention (fused qkv), which one op per layer runs (ops.decoder_layer)."""
from __future__ import annotations

from typing import Optional

import torch

from a1_ext import ops
from a1_ext.quant_formats import is_quantized
from a1_ext.quant_panels import PANEL_ROWS, can_pack, pack_panels, unpack_panels

from .config import ModelConfig


def _weight(*shape: int, dtype: torch.dtype) -> torch.nn.Parameter:
    return torch.nn.Parameter(torch.empty(*shape, dtype=dtype), requires_grad=False)


def _bias(enabled: bool, size: int, dtype: torch.dtype) -> Optional[torch.nn.Parameter]:
    return torch.nn.Parameter(torch.zeros(size, dtype=dtype), requires_grad=False) if enabled else None


def relayout_weight(module: torch.nn.Module, name: str, panels: bool) -> bool:
    """Replace module.<name> by the same matrix as panels [N / 16, K, 16] (panels=True; a1's CPU
    fp32 kernel, ops.to_weight_panels) or as [N, K] (panels=False; BLAS, cuBLAS). A weight whose N
    is not a multiple of 16 stays [N, K]. Returns whether the layout changed."""
    weight = getattr(module, name)
    if is_quantized(weight):  # GGUF blocks (a1_ext.quant_formats): one layout on every device
        return False
    if panels and weight.dim() == 2 and weight.shape[0] % ops.LINEAR_PANEL_WIDTH == 0:
        relaid = ops.to_weight_panels(weight)
    elif not panels and weight.dim() == 3:
        relaid = ops.from_weight_panels(weight)
    else:
        return False
    setattr(module, name, torch.nn.Parameter(relaid, requires_grad=False))
    return True


def repack_quant_weight(module: torch.nn.Module, name: str, panels: bool) -> bool:
    """Replace module.<name>, GGUF blocks of Q4_0 / Q4_1 / Q8_0, by its packed panels (panels=True;
    a1's CPU int8 kernels, a1_ext.quant_panels) or packed panels by the blocks (panels=False; the
    CUDA kernels read blocks only). Returns whether the layout changed.
    The bytes are rearranged in their own storage (a model's huge-page arena stays its one copy of
    the weights), ~1 MiB at a time: panel p is the bytes of rows 16 p .. 16 p + 15 in either
    layout, so a slice of panels is rewritten in place through a copy of that slice only."""
    weight = getattr(module, name).data
    if panels and can_pack(weight):
        blocks = weight
        packed = weight.view(weight.shape[0] // PANEL_ROWS, weight.shape[1], PANEL_ROWS, weight.shape[2])
        result = packed
    elif not panels and is_quantized(weight) and weight.dim() == 4:
        packed = weight
        blocks = weight.view(-1, weight.shape[1], weight.shape[3])
        result = blocks
    else:
        return False
    step = max(1, (1 << 20) // packed[0].numel())  # panels per slice
    with torch.no_grad():
        for p0 in range(0, packed.shape[0], step):
            p1 = min(packed.shape[0], p0 + step)
            rows = slice(p0 * PANEL_ROWS, p1 * PANEL_ROWS)
            if panels:
                packed[p0:p1].copy_(pack_panels(blocks[rows]))
            else:
                blocks[rows].copy_(unpack_panels(packed[p0:p1]))
    setattr(module, name, torch.nn.Parameter(result, requires_grad=False))
    return True


def dense_weight(weight: torch.Tensor, rows: Optional[torch.Tensor] = None) -> torch.Tensor:
    """A weight W [N, K] in plain coordinates whatever its storage: as stored ([N, K]), from panels
    [N / 16, K, 16], or decoded from GGUF blocks (float32). `rows` (int64 [R]) reads only those rows,
    [R, K]: a quantized embedding or LM head is not decoded whole for a few rows."""
    if is_quantized(weight):
        return ops.dequantize(weight, rows)
    if weight.dim() == 3:  # panels: W[n, k] is weight[n // 16, k, n % 16]
        if rows is None:
            return weight.transpose(1, 2).reshape(-1, weight.shape[1])
        width = weight.shape[2]
        return weight[rows // width, :, rows % width]
    return weight if rows is None else weight[rows]


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
    """Weights of down(silu(gate(x)) * up(x)), gate and up stacked in one [2 * I, H] matrix; computed
    by ops.decoder_layer."""

    def __init__(self, config: ModelConfig, dtype: torch.dtype) -> None:
        super().__init__()
        hidden, inter = config.hidden_size, config.intermediate_size
        self.gate_up_weight = _weight(2 * inter, hidden, dtype=dtype)
        self.gate_up_bias = _bias(config.mlp_bias, 2 * inter, dtype)
        self.down_weight = _weight(hidden, inter, dtype=dtype)
        self.down_bias = _bias(config.mlp_bias, hidden, dtype)


class PagedAttention(torch.nn.Module):
    """Weights of GQA self-attention over the paged cache: q, k and v projections stacked in one
    [(Hq + 2 Hkv) * D, H] matrix, and the output projection; computed by ops.decoder_layer (RoPE on
    q and k, reshape_and_cache, paged_attention)."""

    def __init__(self, config: ModelConfig, dtype: torch.dtype) -> None:
        super().__init__()
        self.num_heads, self.num_kv_heads, self.head_dim = config.num_heads, config.num_kv_heads, config.head_dim
        qkv_width = (self.num_heads + 2 * self.num_kv_heads) * self.head_dim
        self.qkv_weight = _weight(qkv_width, config.hidden_size, dtype=dtype)
        self.qkv_bias = _bias(config.attention_bias, qkv_width, dtype)
        self.o_weight = _weight(config.hidden_size, self.num_heads * self.head_dim, dtype=dtype)
        self.o_bias = _bias(config.o_proj_bias, config.hidden_size, dtype)
        self.scale = self.head_dim**-0.5


class DecoderLayer(torch.nn.Module):
    def __init__(self, config: ModelConfig, dtype: torch.dtype) -> None:
        super().__init__()
        self.input_norm = RMSNorm(config.hidden_size, config.rms_norm_eps, dtype)
        self.attention = PagedAttention(config, dtype)
        self.post_attention_norm = RMSNorm(config.hidden_size, config.rms_norm_eps, dtype)
        self.mlp = SwiGLU(config, dtype)
        self._weights: Optional[tuple] = None

    def _apply(self, fn, recurse=True):
        self._weights = None  # conversions may replace the Parameter objects (overwrite_module_params_on_conversion)
        return super()._apply(fn, recurse)

    def projections(self) -> list[tuple[torch.nn.Module, str]]:
        """(module, attribute) of the layer's four projection weights: qkv, o, gate_up, down."""
        attention, mlp = self.attention, self.mlp
        return [(attention, "qkv_weight"), (attention, "o_weight"), (mlp, "gate_up_weight"), (mlp, "down_weight")]

    def use_weight_panels(self, enable: bool = True) -> int:
        """The projection weights as panels (enable; at 32 token rows a1's CPU kernel runs ~1.5x
        faster on them than on [N, K]) or as [N, K] (relayout_weight). Returns how many changed."""
        changed = sum(relayout_weight(module, name, enable) for module, name in self.projections())
        self._weights = None  # new Parameter objects
        return changed

    def use_quant_panels(self, enable: bool = True) -> int:
        """The projection weights in GGUF blocks as packed panels (enable; a1's CPU int8 kernels) or
        as blocks (repack_quant_weight). Returns how many changed."""
        changed = sum(repack_quant_weight(module, name, enable) for module, name in self.projections())
        self._weights = None  # new Parameter objects
        return changed

    def weights(self) -> tuple:
        """decoder_layer's weight arguments, looked up once: through nn.Module's attribute fallback the
        ten lookups cost ~20 us per layer per decode step. The Parameter objects are bound, so in-place
        updates (copy_, load_state_dict, pack_parameters, .to() by default) are seen; conversions that
        replace the objects clear the binding (_apply)."""
        if self._weights is None:
            attention, mlp = self.attention, self.mlp
            self._weights = (
                self.input_norm.weight, attention.qkv_weight, attention.qkv_bias, attention.o_weight,
                attention.o_bias, self.post_attention_norm.weight, mlp.gate_up_weight, mlp.gate_up_bias,
                mlp.down_weight, mlp.down_bias,
            )
        return self._weights
