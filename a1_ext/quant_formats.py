"""The GGUF block formats a1 executes quantized, as the ops see them (csrc/quant/quant_formats.h).

A quantized weight W [N, K] is a uint8 tensor [N, K / block_size, block_bytes]: each row is its GGUF
blocks, unchanged. Every format's block_bytes differs, so the tensor's last dimension names its
format: the ops (dequantize, quant_linear, decoder_layer, linear_step_score) need no format argument,
and the weight is an ordinary tensor (.to(device), nn.Parameter, state dicts, huge-page packing).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class QuantFormat:
    name: str
    type_id: int  # gguf.GGMLQuantizationType value
    block_size: int  # weights per block
    block_bytes: int


QUANT_FORMATS = {f.name: f for f in (
    QuantFormat("Q4_0", 2, 32, 18),
    QuantFormat("Q4_1", 3, 32, 20),
    QuantFormat("Q8_0", 8, 32, 34),
    QuantFormat("Q4_K", 12, 256, 144),
    QuantFormat("Q5_K", 13, 256, 176),
    QuantFormat("Q6_K", 14, 256, 210),
)}
_BY_BYTES = {f.block_bytes: f for f in QUANT_FORMATS.values()}
_BY_TYPE_ID = {f.type_id: f for f in QUANT_FORMATS.values()}


def format_of_type_id(type_id: int) -> QuantFormat | None:
    """The format of a GGML type id, None for types a1 does not execute quantized."""
    return _BY_TYPE_ID.get(int(type_id))


def is_quantized(weight: torch.Tensor) -> bool:
    """Whether a weight is GGUF blocks (uint8 [N, K / block_size, block_bytes]) or their packed
    panels (uint8 [N / 16, K / 32, 16, block_bytes], a1_ext.quant_panels)."""
    return weight.dtype == torch.uint8


def quant_format(weight: torch.Tensor) -> QuantFormat:
    """The format of a quantized weight (blocks or packed panels); ValueError naming the shape when
    it is none."""
    if not is_quantized(weight) or weight.dim() not in (3, 4) or weight.shape[-1] not in _BY_BYTES:
        raise ValueError(f"not a quantized weight: expected uint8 [N, K / block_size, block_bytes] with block_bytes in "
                         f"{sorted(_BY_BYTES)} (or packed panels [N / 16, K / 32, 16, block_bytes]), got "
                         f"{weight.dtype} {tuple(weight.shape)}")
    return _BY_BYTES[weight.shape[-1]]


def quant_shape(weight: torch.Tensor) -> tuple[int, int]:
    """(N, K) of the matrix a quantized weight (blocks or packed panels) holds."""
    rows = weight.shape[0] * weight.shape[2] if weight.dim() == 4 else weight.shape[0]
    return rows, weight.shape[1] * quant_format(weight).block_size


def as_blocks(raw: torch.Tensor, fmt: QuantFormat, shape: tuple[int, int]) -> torch.Tensor:
    """Raw GGUF bytes of a [N, K] matrix (any uint8 shape holding N * K / block_size blocks) as the
    ops' layout [N, K / block_size, block_bytes] (a view)."""
    rows, cols = shape
    if cols % fmt.block_size != 0:
        raise ValueError(f"K = {cols} is not a multiple of {fmt.name}'s block of {fmt.block_size}")
    return raw.reshape(rows, cols // fmt.block_size, fmt.block_bytes)
