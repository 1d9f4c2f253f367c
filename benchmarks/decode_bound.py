"""The memory-bandwidth bound of batch-1 decode on a GGUF file, measured on this machine in this run.

A batch-1 decode step multiplies one token by every weight matrix, so it must read every weight
from memory once: it cannot run faster than (read bandwidth) / (bytes it reads). Both halves:

- bytes per step (decode_bytes_per_token): from the file's tensor table, every layer weight and norm,
  the LM head (token_embd when tied) and one embedding row when the head is a separate tensor. The
  KV cache the step also reads is left out: at a benchmark's context of ~100 tokens it is a few MiB
  against hundreds, and it grows with the context while the weights do not.
- read bandwidth (read_bandwidth_gbs): torch.sum over a float32 buffer several times the last-level
  cache, with the benchmark's thread count, the fastest of several passes (a shared machine only
  ever slows a pass down). The buffer is in huge pages, as a1's weights are (a1.models.huge_pages),
  so the probe is not held back by TLB misses the weights do not have. A sum reads and barely
  computes, as a Q4_0 matrix-vector product is meant to: the probe is the best a decode can stream.
"""
from __future__ import annotations

import time
from pathlib import Path


def decode_bytes_per_token(path: Path) -> dict[str, int]:
    """Bytes a batch-1 decode step reads from the weights: "weights" (every tensor but the token
    embedding, in full), "embedding" (token_embd in full when it is also the LM head, else one of
    its rows), "total" (their sum)."""
    import gguf

    tensors = {t.name: t for t in gguf.GGUFReader(str(path)).tensors}
    embed = tensors["token_embd.weight"]
    tied = "output.weight" not in tensors
    weights = sum(int(t.n_bytes) for name, t in tensors.items() if name != "token_embd.weight")
    embed_read = int(embed.n_bytes) if tied else int(embed.n_bytes) // int(embed.shape[-1])
    return {"weights": weights, "embedding": embed_read, "total": weights + embed_read}


def read_bandwidth_gbs(threads: int, mib: int = 2048, passes: int = 10) -> float:
    """Read bandwidth in GB/s (1e9 bytes): torch.sum over `mib` MiB of float32 with `threads` threads."""
    import torch
    from a1.models.huge_pages import huge_page_bytes

    torch.set_num_threads(threads)
    buffer = huge_page_bytes(mib << 20).view(torch.float32)
    buffer.fill_(1.0)  # fault every page in (and write it) before timing
    best = float("inf")
    for _ in range(passes):
        start = time.perf_counter()
        total = float(buffer.sum())
        best = min(best, time.perf_counter() - start)
    if total != buffer.numel():  # the sum was really computed over every element
        raise RuntimeError(f"bandwidth probe summed {total}, expected {buffer.numel()}")
    return buffer.numel() * 4 / best / 1e9


def measure_bound(job: dict) -> dict[str, float]:
    """Run in a variant process of bench_quantized.py: the bandwidth, the bytes per step, the bound."""
    counted = decode_bytes_per_token(Path(job["path"]))
    gbs = read_bandwidth_gbs(job["threads"], job.get("bandwidth_mib", 2048))
    return {"gbs": gbs, **{f"{k}_bytes": v for k, v in counted.items()},
            "tok_s": gbs * 1e9 / counted["total"]}


def describe(bound: dict[str, float], mib: int, threads: int) -> str:
    """One report line: the bandwidth, the bytes per step and the bound measure_bound found."""
    return (f"Bound: read bandwidth {bound['gbs']:.1f} GB/s (torch.sum over {mib} MiB in huge pages, {threads} "
            f"threads, fastest of 10 passes) / {bound['total_bytes'] / 2**20:.1f} MiB per step "
            f"({bound['weights_bytes'] / 2**20:.1f} MiB of layer weights and norms + "
            f"{bound['embedding_bytes'] / 2**20:.1f} MiB of token embedding; KV cache not counted) "
            f"= {bound['tok_s']:.1f} tok/s at batch 1.")
