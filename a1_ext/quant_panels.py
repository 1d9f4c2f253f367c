"""Packed panels: a1's CPU layout of Q4_0, Q4_1 and Q8_0 weights for its int8 kernels
(csrc/quant/quant_panel_layout.h), made once at load where the CPU runs them (int8_panels_supported).

A weight W [N, K] in GGUF blocks [N, K / 32, block_bytes] (N a multiple of 16) becomes uint8
[N / 16, K / 32, 16, block_bytes]: the same bytes, the 16 blocks of rows 16 p .. 16 p + 15 in group g
together and rearranged so that a vector's lanes are rows: the 16 float16 scales, Q4_1's 16 mins,
then vector j (64 bytes) holding dword j of each row's quants. quant_linear and dequantize take
either layout on the CPU and compute the same values; the CUDA kernels and linear_step_score read
GGUF blocks only (DecoderLM unpacks its panels when it moves off the CPU).

pack_panels and unpack_panels are views and copies only (any device); unpack_panels is the twin of
the C++ unpacking the CPU op does where the kernels are missing.
"""
from __future__ import annotations

import torch

from . import _C
from .quant_formats import QuantFormat, quant_format

PANEL_ROWS = 16
PANEL_FORMATS = ("Q4_0", "Q4_1", "Q8_0")


def int8_panels_supported() -> bool:
    """Whether this CPU runs the packed-panel kernels (AVX-512 VNNI; A1_CPU_ISA can cap it)."""
    return bool(_C.int8_panels_supported())


def amx_int8_ready() -> bool:
    """Whether quant_linear runs packed panels on AMX tiles from 16 token rows (AMX-INT8 granted by
    Linux; any A1_CPU_ISA cap turns it off, so A1_CPU_ISA=avx512 runs the VNNI tile alone)."""
    return bool(_C.amx_int8_ready())


def can_pack(weight: torch.Tensor) -> bool:
    """Whether `weight` is GGUF blocks that pack_panels takes: Q4_0, Q4_1 or Q8_0, N a multiple of 16."""
    return (weight.dtype == torch.uint8 and weight.dim() == 3 and weight.shape[0] % PANEL_ROWS == 0
            and quant_format(weight).name in PANEL_FORMATS)


def _header_bytes(fmt: QuantFormat) -> int:
    """Bytes per row before the quants in a block: the float16 scale, and Q4_1's float16 min."""
    return 4 if fmt.name == "Q4_1" else 2


def pack_panels(blocks: torch.Tensor) -> torch.Tensor:
    """GGUF blocks [N, G, B] -> packed panels [N / 16, G, 16, B] (a new contiguous tensor)."""
    if not can_pack(blocks):
        raise ValueError(f"blocks must be Q4_0, Q4_1 or Q8_0 GGUF blocks [N, K / 32, block_bytes] with N a multiple "
                         f"of {PANEL_ROWS}, got {blocks.dtype} {tuple(blocks.shape)}")
    fmt = quant_format(blocks)
    n, groups, block = blocks.shape
    panels, header = n // PANEL_ROWS, _header_bytes(fmt)
    rows = blocks.view(panels, PANEL_ROWS, groups, block)
    fields = rows[..., :header].reshape(panels, PANEL_ROWS, groups, header // 2, 2).permute(0, 2, 3, 1, 4)
    quants = rows[..., header:].reshape(panels, PANEL_ROWS, groups, (block - header) // 4, 4).permute(0, 2, 3, 1, 4)
    return torch.cat([fields.reshape(panels, groups, -1), quants.reshape(panels, groups, -1)], 2).view(
        panels, groups, PANEL_ROWS, block)


def unpack_panels(panels: torch.Tensor) -> torch.Tensor:
    """Packed panels [P, G, 16, B] -> GGUF blocks [16 P, G, B] (a new contiguous tensor)."""
    fmt = quant_format(panels)
    count, groups, rows, block = panels.shape
    header = _header_bytes(fmt)
    flat = panels.reshape(count, groups, rows * block)
    fields = flat[..., : rows * header].reshape(count, groups, header // 2, rows, 2).permute(0, 3, 1, 2, 4)
    quants = flat[..., rows * header :].reshape(count, groups, (block - header) // 4, rows, 4).permute(0, 3, 1, 2, 4)
    return torch.cat([fields.reshape(count, rows, groups, header), quants.reshape(count, rows, groups, block - header)],
                     3).reshape(count * rows, groups, block)


def block_byte_offsets(panels: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Where byte `index` (int64, flat positions in the GGUF blocks [N, G, B] the panels hold) lies
    in the packed panels' flat bytes: reads a sample in GGUF order without unpacking the weight."""
    fmt = quant_format(panels)
    _, groups, rows, block = panels.shape
    header = _header_bytes(fmt)
    n, g, b = index // (groups * block), (index // block) % groups, index % block
    unit = ((n // rows) * groups + g) * rows * block
    r = n % rows
    field = (b // 2) * rows * 2 + r * 2 + b % 2
    quant = rows * header + ((b - header) // 4) * rows * 4 + r * 4 + (b - header) % 4
    return unit + torch.where(b < header, field, quant)
