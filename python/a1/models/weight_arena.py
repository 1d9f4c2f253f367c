"""Pack a CPU model's parameters into one buffer backed by transparent huge pages.

Why: a batch-1 decode step streams every weight from memory once (538 MB for SmolLM2-135M fp32).
On 4 KiB pages that is ~130k TLB misses per token and page-sized gaps for the hardware prefetchers;
on 2 MiB pages the same bytes stream measurably faster (benchmarks/RESULTS.md §2). Parameters are
laid out back to back in registration order, which is the order a forward pass reads them.
"""
from __future__ import annotations

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


def _aligned(offset: int) -> int:
    return (offset + _ALIGNMENT - 1) // _ALIGNMENT * _ALIGNMENT


def pack_parameters(module: torch.nn.Module) -> ArenaInfo:
    """Move every parameter of `module` (all on the CPU) into one anonymous mapping advised for huge
    pages, in place: the Parameter objects stay, their .data become views of the arena with the same
    values, dtype and shape. Shared (tied) parameters are packed once. Call it before any other
    reference to the old parameter tensors is taken; those keep the old memory."""
    params = list(module.parameters())  # deduplicated: a tied weight appears once
    for param in params:
        if param.device.type != "cpu":
            raise ValueError(f"pack_parameters needs CPU parameters, got one on {param.device}")
    offsets, total = [], 0
    for param in params:
        total = _aligned(total)
        offsets.append(total)
        total += param.numel() * param.element_size()
    size = -(-total // _HUGE_PAGE) * _HUGE_PAGE + _HUGE_PAGE  # whole huge pages, plus room to align
    buffer = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    advised = huge_pages_supported()
    if advised:
        buffer.madvise(mmap.MADV_HUGEPAGE)  # before the first touch, so faults take 2 MiB pages
    arena = torch.frombuffer(buffer, dtype=torch.uint8)  # keeps `buffer` alive while views exist
    # mmap returns page-aligned memory; shift so the packed bytes start on a huge-page boundary.
    start = (-arena.data_ptr()) % _HUGE_PAGE
    with torch.no_grad():
        for param, offset in zip(params, offsets):
            nbytes = param.numel() * param.element_size()
            view = arena[start + offset : start + offset + nbytes].view(param.dtype).view(param.shape)
            view.copy_(param.data)
            param.data = view
    return ArenaInfo(arena.data_ptr() + start, total, len(params), advised)
