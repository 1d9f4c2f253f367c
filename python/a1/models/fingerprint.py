"""A fingerprint of a model's weights: what a calibration file records so that scores of another
checkpoint (or another dtype) under the same name are refused.

Hashing every byte of a 7B model takes tens of seconds; the fingerprint hashes, for every tensor
in name order, its name, shape, dtype and an evenly strided sample of at most SAMPLE values. Two
checkpoints that differ anywhere but in unsampled values (a fine-tune changes all of them) get
different fingerprints. It costs milliseconds, so it is computed afresh each time (a cached value
would go stale when weights are changed in place).
"""
from __future__ import annotations

import hashlib

import torch

from a1_ext.quant_formats import is_quantized
from a1_ext.quant_panels import block_byte_offsets

SAMPLE = 1 << 16  # values per tensor


def weights_fingerprint(model: torch.nn.Module) -> str:
    """sha256 hex of the model's tensors (names, shapes, dtypes, strided samples of the values)."""
    digest = hashlib.sha256()
    tensors = dict(model.named_parameters())
    tensors.update(model.named_buffers())
    if any(t.dtype == torch.uint8 for t in tensors.values()):
        # GGUF blocks multiply 8-bit rounded activations (a1_ext quant_linear, since #22's second
        # step): scores of the same blocks from before that are another model's
        digest.update(b"quant_linear:8-bit activations;")
    for name in sorted(tensors):
        tensor = tensors[name].detach()
        flat = tensor.reshape(-1)
        step = max(1, flat.numel() // SAMPLE)
        index = torch.arange(0, flat.numel(), step, device=flat.device)[:SAMPLE]
        shape = tuple(tensor.shape)
        if is_quantized(tensor) and tensor.dim() == 4:
            # packed panels (a1_ext.quant_panels, a CPU layout made at load): the GGUF blocks'
            # shape and bytes, so that packing does not change what the weights are
            index = block_byte_offsets(tensor, index)
            shape = (tensor.shape[0] * tensor.shape[2], tensor.shape[1], tensor.shape[3])
        digest.update(f"{name}:{shape}:{tensor.dtype};".encode())
        sample = flat[index].to("cpu", torch.float32).contiguous()
        digest.update(sample.numpy().tobytes())
    return digest.hexdigest()
