"""A GGUF file loaded as it is quantized: Q4_0, Q4_1, Q8_0, Q4_K, Q5_K and Q6_K weights keep their
blocks (uint8 [N, K / block_size, block_bytes], a1_ext.quant_formats), read straight from the file
into the model's huge-page arena, so the model takes about the file's memory.

Why straight into the arena: dequantizing (or even reading through numpy's memmap, whose pages count
as the process's resident memory) would hold a second copy of the weights at the peak. Each weight
is read with one readinto() from its file offset into its final place; the fused q/k/v and
gate/up weights are their sources' rows back to back, which is how blocks concatenate.

Other tensors (norms, biases, F16/F32 weights, and formats a1 has no kernel for) are dequantized to
float32 as before, and so is a fused q/k/v or gate/up whose sources come in different formats (a
weight holds one format). Only the embedding rows a step reads are ever dequantized (DecoderLM.embed).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np
import torch

from a1_ext.quant_formats import QuantFormat, format_of_type_id

from .base import DecoderLM
from .config import ModelConfig
from .huge_pages import huge_page_bytes

_ALIGNMENT = 64


@dataclass
class _Slot:
    """One parameter of the model and the GGUF tensors that fill it, rows back to back."""

    module: torch.nn.Module
    attr: str
    names: list[str]  # transformers names (gguf_loader.hf_tensor_name) of the sources, in row order
    fmt: Optional[QuantFormat] = None  # set when every source is in this block format
    shape: tuple[int, ...] = ()
    offset: int = 0

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * (1 if self.fmt is not None else 4)


def _slots(model: DecoderLM) -> list[_Slot]:
    """Every parameter of the model with its sources, in registration (forward) order."""
    slots = [_Slot(model, "embed_weight", ["model.embed_tokens.weight"])]
    for index, layer in enumerate(model.layers):
        p = f"model.layers.{index}."
        attn, mlp = layer.attention, layer.mlp
        qkv = [f"{p}self_attn.{n}_proj" for n in "qkv"]
        gate_up = [f"{p}mlp.gate_proj", f"{p}mlp.up_proj"]
        slots += [_Slot(layer.input_norm, "weight", [p + "input_layernorm.weight"]),
                  _Slot(attn, "qkv_weight", [n + ".weight" for n in qkv])]
        if attn.qkv_bias is not None:
            slots.append(_Slot(attn, "qkv_bias", [n + ".bias" for n in qkv]))
        slots.append(_Slot(attn, "o_weight", [p + "self_attn.o_proj.weight"]))
        if attn.o_bias is not None:
            slots.append(_Slot(attn, "o_bias", [p + "self_attn.o_proj.bias"]))
        slots += [_Slot(layer.post_attention_norm, "weight", [p + "post_attention_layernorm.weight"]),
                  _Slot(mlp, "gate_up_weight", [n + ".weight" for n in gate_up])]
        if mlp.gate_up_bias is not None:
            slots.append(_Slot(mlp, "gate_up_bias", [n + ".bias" for n in gate_up]))
        slots.append(_Slot(mlp, "down_weight", [p + "mlp.down_proj.weight"]))
        if mlp.down_bias is not None:
            slots.append(_Slot(mlp, "down_bias", [p + "mlp.down_proj.bias"]))
    slots.append(_Slot(model.norm, "weight", ["model.norm.weight"]))
    if model.lm_head is not None:
        slots.append(_Slot(model, "lm_head", ["lm_head.weight"]))
    return slots


def _block_format(tensors: list[Any]) -> Optional[QuantFormat]:
    """The one block format every source is in, None when they differ or a1 has no kernel for it."""
    formats = {format_of_type_id(t.tensor_type) for t in tensors}
    return formats.pop() if len(formats) == 1 and None not in formats else None


def rope_row_order(rows: int, num_heads: int) -> torch.Tensor:
    """The row order that undoes convert_hf_to_gguf.py's permute of llama q/k rows (interleaved ->
    half-split RoPE: rows (head, 2, half) were written as (head, half, 2)): W_hf = W_gguf[order].
    Whole rows move, so it serves float rows and block rows alike."""
    half = rows // num_heads // 2
    return torch.arange(rows).view(num_heads, half, 2).transpose(1, 2).reshape(-1)


def load_quantized_weights(model: DecoderLM, tensors: Sequence[Any], path: Path, source: str,
                           dequantized: Mapping[str, torch.Tensor],
                           hf_tensor_name: Callable[[str], Optional[str]]) -> int:
    """Fill `model` (float32, freshly built) from the GGUF `tensors` of `path` (a GGUFReader's
    .tensors: name, type, shape, file offset), block formats kept as blocks; every parameter ends
    up in one huge-page arena. Returns the arena's size in bytes.
    `dequantized` gives a tensor (by transformers name) as float32, q/k rows unpermuted, for what is
    not kept as blocks; `hf_tensor_name` maps a GGUF tensor name to its transformers name (both from
    gguf_loader, passed in so that this module does not import its caller).
    Missing tensors and shape mismatches raise ValueError as load_hf_weights does."""
    config: ModelConfig = model.config
    by_name = {hf_tensor_name(t.name): t for t in tensors if hf_tensor_name(t.name) is not None}
    slots = _slots(model)
    missing = [n for slot in slots for n in slot.names if n not in by_name]
    if missing:
        shown = ", ".join(missing[:8]) + (f", ... ({len(missing)} in all)" if len(missing) > 8 else "")
        raise ValueError(f"{source} is missing tensors: {shown}")
    total = 0
    for slot in slots:
        current = getattr(slot.module, slot.attr)
        sources = [by_name[n] for n in slot.names]
        rows = sum(int(t.shape[-1]) if len(t.shape) > 1 else int(t.shape[0]) for t in sources)
        cols = int(sources[0].shape[0]) if len(sources[0].shape) > 1 else None
        want = tuple(current.shape)
        got = (rows, cols) if cols is not None else (rows,)
        if got != want:
            raise ValueError(f"{source}: shape mismatch for {slot.names[0]}: checkpoint has {got}, the config implies {want}")
        slot.fmt = _block_format(sources) if cols is not None else None
        if slot.fmt is not None and cols % slot.fmt.block_size != 0:
            slot.fmt = None  # a row that is not whole blocks: dequantized (gguf refuses such files anyway)
        slot.shape = (rows, cols // slot.fmt.block_size, slot.fmt.block_bytes) if slot.fmt is not None else want
        total = -(-total // _ALIGNMENT) * _ALIGNMENT
        slot.offset, total = total, total + slot.nbytes
    arena = huge_page_bytes(total)
    with open(path, "rb") as handle, torch.no_grad():
        for slot in slots:
            view = arena[slot.offset : slot.offset + slot.nbytes]
            if slot.fmt is None:
                tensor = view.view(torch.float32).view(slot.shape)
                start = 0
                for name in slot.names:  # float32, q/k rows already unpermuted by GGUFCheckpoint
                    part = dequantized[name]
                    tensor[start : start + part.shape[0]].copy_(part)
                    start += part.shape[0]
            else:
                tensor = view.view(slot.shape)
                _read_blocks(handle, [by_name[n] for n in slot.names], slot.names, tensor, config)
            setattr(slot.module, slot.attr, torch.nn.Parameter(tensor, requires_grad=False))
    for layer in model.layers:
        layer._weights = None  # new Parameter objects
    return total


def _read_blocks(handle: Any, tensors: list[Any], names: list[str], out: torch.Tensor, config: ModelConfig) -> None:
    """The sources' blocks, rows back to back, into out [N, K / block_size, block_bytes]."""
    start = 0
    for tensor, name in zip(tensors, names):
        rows = int(tensor.shape[-1])
        part = out[start : start + rows]
        handle.seek(int(tensor.data_offset))
        if handle.readinto(part.numpy().reshape(-1)) != part.numel():
            raise ValueError(f"{handle.name}: truncated data for {tensor.name}")
        if config.arch == "llama" and (".q_proj." in name or ".k_proj." in name):
            heads = config.num_heads if ".q_proj." in name else config.num_kv_heads
            part.copy_(part[rope_row_order(rows, heads)])  # whole rows move: the blocks are untouched
        start += rows
