"""CPU memory backed by transparent huge pages: the model's weights packed into one arena, and the
paged KV cache.

Why: a batch-1 decode step streams every weight from memory once (538 MB for SmolLM2-135M fp32).
On 4 KiB pages that is a TLB miss every 4 KiB and page-sized gaps for the hardware prefetchers; on
2 MiB pages the same bytes stream measurably faster (benchmarks/RESULTS.md §2). The KV cache takes
the same memory for the same access pattern (block gathers after the weights have evicted it from
the caches), and an anonymous mapping is zero without a pass over the whole budget at start-up.
"""
from __future__ import annotations

import ctypes
import math
import mmap
import sys
from dataclasses import dataclass

import torch

_ALIGNMENT = 64  # bytes: a cache line, and every dtype's alignment
_HUGE_PAGE = 2 << 20


@dataclass(frozen=True)
class ArenaInfo:
    """What pack_parameters did: the arena's address and size, and whether huge pages were asked for."""

    address: int
    nbytes: int
    num_parameters: int
    huge_pages_advised: bool


def huge_pages_supported() -> bool:
    """True where the kernel takes madvise(MADV_HUGEPAGE) (Linux with transparent huge pages)."""
    if not sys.platform.startswith("linux") or not hasattr(mmap, "MADV_HUGEPAGE"):
        return False
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as handle:
            return "[never]" not in handle.read()
    except OSError:
        return False


def huge_page_bytes(nbytes: int) -> torch.Tensor:
    """A zero-filled uint8 CPU tensor of nbytes that starts on a 2 MiB boundary, in an anonymous
    mapping advised for huge pages where the kernel supports them (plain pages elsewhere). Pages are
    faulted in on first touch; the mapping lives as long as the tensor or any view of it."""
    size = -(-nbytes // _HUGE_PAGE) * _HUGE_PAGE + _HUGE_PAGE  # whole huge pages, plus room to align
    buffer = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if huge_pages_supported():
        buffer.madvise(mmap.MADV_HUGEPAGE)  # before the first touch, so faults take 2 MiB pages
    whole = torch.frombuffer(buffer, dtype=torch.uint8)  # keeps `buffer` alive while views exist
    start = (-whole.data_ptr()) % _HUGE_PAGE  # mmap is page-aligned; shift to a huge-page boundary
    return whole[start : start + nbytes]


def huge_page_zeros(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """torch.zeros(shape, dtype=dtype) on the CPU, in huge-page memory (see huge_page_bytes)."""
    element = torch.empty((), dtype=dtype).element_size()
    return huge_page_bytes(math.prod(shape) * element).view(dtype).view(shape)


def _aligned(offset: int) -> int:
    return (offset + _ALIGNMENT - 1) // _ALIGNMENT * _ALIGNMENT


def pack_parameters(module: torch.nn.Module) -> ArenaInfo:
    """Move every parameter of `module` (all on the CPU) into one huge-page arena, back to back in
    registration order (the order a forward pass reads them), in place: the Parameter objects stay,
    their .data become views of the arena with the same values, dtype and shape. Shared (tied)
    parameters are packed once. References to the old tensors taken before keep the old memory."""
    params = list(module.parameters())  # deduplicated: a tied weight appears once
    for param in params:
        if param.device.type != "cpu":
            raise ValueError(f"pack_parameters needs CPU parameters, got one on {param.device}")
    offsets, total = [], 0
    for param in params:
        total = _aligned(total)
        offsets.append(total)
        total += param.numel() * param.element_size()
    arena = huge_page_bytes(total)
    with torch.no_grad():
        for param, offset in zip(params, offsets):
            nbytes = param.numel() * param.element_size()
            view = arena[offset : offset + nbytes].view(param.dtype).view(param.shape)
            view.copy_(param.data)
            param.data = view
    return ArenaInfo(arena.data_ptr(), total, len(params), huge_pages_supported())


def release_free_heap() -> bool:
    """Give the C heap's free pages back to the system (glibc malloc_trim). Loading parses metadata
    into many small objects and rearranges weights through temporary copies; freed, their pages stay
    resident in the heap (~40 MiB after a 1.5B GGUF) until trimmed. Returns whether it could trim
    (False where the C library has no malloc_trim, e.g. musl or macOS)."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None)
    if not hasattr(libc, "malloc_trim"):
        return False
    libc.malloc_trim(0)
    return True
