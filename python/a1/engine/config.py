"""Engine configuration and the KV memory budget."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from .block_manager import split_kv_budget

_GIB = 1 << 30


@dataclass
class EngineConfig:
    """kv_cache_gb: KV budget of this engine's pool (None: 1 GiB on CPU, half the free memory on
    CUDA); num_blocks overrides it. max_num_batched_tokens: tokens fed per step (prefill chunks,
    decodes and scoring rows together). max_model_len: longest sequence (default: the model's
    max_position_embeddings, capped by the pool). seed: draws the seeds of requests that give none."""

    kv_cache_gb: Optional[float] = None
    num_blocks: Optional[int] = None
    block_size: int = 16
    max_num_batched_tokens: int = 2048
    max_num_seqs: int = 256
    max_model_len: Optional[int] = None
    enable_prefix_caching: bool = True
    seed: int = 0
    score_chunk: int = 4096

    def __post_init__(self) -> None:
        if self.kv_cache_gb is not None and not (self.kv_cache_gb > 0 and math.isfinite(self.kv_cache_gb)):
            raise ValueError(f"kv_cache_gb must be finite and > 0, got {self.kv_cache_gb}")
        if self.num_blocks is not None and self.num_blocks < 1:
            raise ValueError(f"num_blocks must be >= 1, got {self.num_blocks}")
        for name in ("block_size", "max_num_batched_tokens", "max_num_seqs", "score_chunk"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_model_len is not None and self.max_model_len < 2:
            raise ValueError(f"max_model_len must be >= 2, got {self.max_model_len}")


def default_kv_cache_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free // 2
    return _GIB


def available_memory_bytes(device: torch.device) -> int:
    """Memory a KV pool on device may take: free GPU memory on CUDA; on CPU the available physical
    memory (psutil, else os.sysconf's available pages)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        import os

        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))


def check_pool_fits(num_bytes: int, device: torch.device, what: str) -> None:
    """Refuse at once a KV pool the machine cannot hold (instead of building billions of blocks)."""
    available = available_memory_bytes(device)
    if num_bytes > available:
        raise ValueError(
            f"{what} asks for a KV cache of {num_bytes / _GIB:.3g} GiB but only {available / _GIB:.3g} GiB of "
            f"{device.type} memory is available; lower it"
        )


def num_blocks_for_budget(models: Sequence, kv_cache_gb: Optional[float], block_size: int) -> list[int]:
    """Block counts of the pools of models (e.g. [target, draft]) sharing one KV budget, split by
    their bytes per token so that every pool holds the same number of tokens."""
    if kv_cache_gb is None:
        budget = default_kv_cache_bytes(models[0].lm_head_weight.device)
    else:
        budget = int(kv_cache_gb * _GIB)
        check_pool_fits(budget, models[0].lm_head_weight.device, f"kv_cache_gb={kv_cache_gb}")
    return split_kv_budget(budget, [int(m.bytes_per_token(m.dtype)) for m in models], block_size)
