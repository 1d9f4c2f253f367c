"""Pure-PyTorch twins of the quantized ops (a1_ext.reference re-exports them): every GGUF block format
decoded with tensor ops, exactly as gguf.quants.dequantize computes it in float32 (each product
rounded before the add), and quant_linear as F.linear of the 8-bit rounded activations (round_activations:
per 32-value group, as llama.cpp rounds them) on the dequantized weight."""
from __future__ import annotations

from typing import Optional

import torch

try:
    from .quant_formats import is_quantized, quant_format
except ImportError:  # loaded by path outside the package (a1_ext/reference.py's fallback)
    import importlib.util
    import pathlib
    import sys

    _spec = importlib.util.spec_from_file_location("a1_quant_formats", pathlib.Path(__file__).with_name("quant_formats.py"))
    _formats = sys.modules.setdefault(_spec.name, importlib.util.module_from_spec(_spec))  # dataclasses need it
    _spec.loader.exec_module(_formats)
    is_quantized, quant_format = _formats.is_quantized, _formats.quant_format


def _half(blocks: torch.Tensor, offset: int) -> torch.Tensor:
    """The float16 at byte `offset` of every block, as float32 [M, 1]."""
    return blocks[:, offset : offset + 2].contiguous().view(torch.float16).float()


def _nibbles(qs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return (qs & 0x0F).to(torch.int32), (qs >> 4).to(torch.int32)


def _k4_scales(scales: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The 8 six-bit scales and mins of Q4_K / Q5_K super-blocks (scales [M, 12] uint8)."""
    s = scales.to(torch.int32)
    d, m, md = s[:, 0:4], s[:, 4:8], s[:, 8:12]
    scale = torch.cat([d & 0x3F, (md & 0x0F) | ((d >> 2) & 0x30)], dim=1)
    minimum = torch.cat([m & 0x3F, (md >> 4) | ((m >> 2) & 0x30)], dim=1)
    return scale, minimum


def _dequantize_blocks(name: str, b: torch.Tensor) -> torch.Tensor:
    """Blocks [M, block_bytes] -> float32 [M, block_size]."""
    if name in ("Q4_0", "Q4_1"):
        start = 2 if name == "Q4_0" else 4
        lo, hi = _nibbles(b[:, start : start + 16])
        q = torch.cat([lo, hi], dim=1)
        if name == "Q4_0":
            return _half(b, 0) * (q - 8).float()
        return _half(b, 0) * q.float() + _half(b, 2)
    if name == "Q8_0":
        return b[:, 2:].contiguous().view(torch.int8).float() * _half(b, 0)
    if name in ("Q4_K", "Q5_K"):
        scale, minimum = _k4_scales(b[:, 4:16])
        d = _half(b, 0) * scale.float()  # [M, 8]
        dm = _half(b, 2) * minimum.float()
        qs = b[:, 16:144] if name == "Q4_K" else b[:, 48:176]
        lo, hi = _nibbles(qs.reshape(-1, 4, 32))
        q = torch.stack([lo, hi], dim=2).reshape(-1, 8, 32)  # sub-block 2g: low nibbles of bytes 32g.., 2g+1: high
        if name == "Q5_K":
            shifts = torch.arange(8, dtype=torch.int32).view(1, 8, 1)
            q = q | (((b[:, 16:48].to(torch.int32).unsqueeze(1) >> shifts) & 1) << 4)
        return (d.unsqueeze(2) * q.float() - dm.unsqueeze(2)).reshape(-1, 256)
    if name == "Q6_K":
        lo, hi = _nibbles(b[:, :128].reshape(-1, 2, 64))
        ql = torch.stack([lo, hi], dim=2).reshape(-1, 8, 32)
        shifts = torch.tensor([0, 2, 4, 6], dtype=torch.int32).view(1, 1, 4, 1)
        qh = ((b[:, 128:192].to(torch.int32).reshape(-1, 2, 1, 32) >> shifts) & 3).reshape(-1, 8, 32)
        q = ((ql | (qh << 4)) - 32).reshape(-1, 16, 16)
        d = _half(b, 208) * b[:, 192:208].contiguous().view(torch.int8).float()  # [M, 16]
        return (d.unsqueeze(2) * q.float()).reshape(-1, 256)
    raise ValueError(f"unknown format {name}")


def dequantize(weight: torch.Tensor, rows: Optional[torch.Tensor] = None) -> torch.Tensor:
    if weight.dim() == 4:  # packed panels (a1_ext.quant_panels): the GGUF blocks they hold
        from .quant_panels import unpack_panels

        weight = unpack_panels(weight)
    fmt = quant_format(weight)
    picked = weight if rows is None else weight[rows.long()]
    n, nb, _ = picked.shape
    out = _dequantize_blocks(fmt.name, picked.reshape(n * nb, fmt.block_bytes))
    return out.reshape(n, nb * fmt.block_size)


def round_activations(x: torch.Tensor) -> torch.Tensor:
    """x [T, K] (K a multiple of 32) rounded to 8 bits per 32-value group: d = max|x| / 127,
    q = round(x / d) (ties to even) in [-127, 127], returned as q * d; a group holding inf or NaN
    becomes NaN."""
    groups = x.float().reshape(x.shape[0], x.shape[1] // 32, 32)
    finite = torch.isfinite(groups).all(dim=2, keepdim=True)
    amax = groups.abs().amax(dim=2, keepdim=True)
    d = torch.where(finite, amax / 127.0, torch.full_like(amax, float("nan")))
    inverse = torch.where(finite & (d != 0), 1.0 / d, torch.zeros_like(d))
    q = torch.round(torch.where(finite, groups, torch.zeros_like(groups)) * inverse).clamp(-127, 127)
    return ((q + 0.0) * d).reshape(x.shape)  # q is an integer: + 0.0 turns a rounded -0.0 into 0


def quant_linear(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    return torch.nn.functional.linear(round_activations(x), dequantize(weight), bias)
