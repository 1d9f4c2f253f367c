"""A roofline estimate of where each phase of a run spends its time, from token counts.

Why: A1's claim is that drafting moves work from the memory-bound target decode to a cheaper
draft decode plus compute-friendly target prefill (scoring). Whether a phase is compute- or
memory-bound decides whether that trade pays. This module does not profile a run; it estimates
from the counts the run recorded, against peaks measured on this machine:

- FLOPs of a phase = 2 * params * tokens (one multiply-add per weight per token; attention's
  context-dependent FLOPs are left out, so long contexts are underestimated).
- bytes of a phase = model bytes * forwards: the weights are streamed from memory once per engine
  step (forward), shared by every token of that step. KV-cache and activation traffic are left
  out, so T_m is a lower bound.
- forwards: the engine's step count when summary.json's engine section gives one per model
  (target steps are split between scoring and decode in proportion to their token estimates);
  else decode forwards = tokens / batch and scoring forwards = tokens / max_num_batched_tokens,
  with batch = all samples of the run in flight at once, capped by the batch/max_num_seqs setting
  (engine default 256): an upper bound on batch, so T_m is optimistic.
- T_c = FLOPs / peak_flops, T_m = bytes / bandwidth, T_s = barrier_wait / batch for the sync
  method (barrier_wait sums waiting over samples; divided by the samples in flight to get wall
  seconds), else 0; r = T_c / (T_m + T_s): r > 1 compute-bound, r < 1 memory/barrier-bound.
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

from a1.eval.results import Run

ASSUMPTIONS = [
    "FLOPs = 2 · params · tokens of the phase (attention over the context is left out).",
    "bytes = model bytes · forwards: weights streamed once per engine step; KV-cache and "
    "activation traffic are left out, so T_m is a lower bound.",
    "forwards = engine steps where summary.json's engine section gives them per model (target "
    "steps split between scoring and decode by their token estimates); else decode: tokens / "
    "batch, scoring: tokens / max_num_batched_tokens (default 2048).",
    "batch = every sample of the run in flight at once, capped by the batch/max_num_seqs setting "
    "(default 256): an upper bound on batch, so T_m is optimistic for decode.",
    "T_s = barrier_wait / batch for sync runs (barrier_wait sums waiting over samples), else 0; "
    "it appears in the total row only.",
    "peaks are measured on the machine writing the report, which may not be the one that ran.",
]

PHASES = ("draft_decode", "target_score", "target_decode")
_PHASE_MODEL = {"draft_decode": "draft", "target_score": "target", "target_decode": "target"}
_RECORD_KEY = {"draft_decode": "draft_tokens", "target_score": "score_tokens",
               "target_decode": "target_tokens"}
DEFAULT_MAX_NUM_SEQS = 256  # EngineConfig.max_num_seqs
DEFAULT_BATCHED_TOKENS = 2048  # EngineConfig.max_num_batched_tokens


@dataclass
class Roofline:
    """Measured peaks of this machine: FLOP/s of fp32 matmul, bytes/s of a large copy."""

    peak_flops: float
    bandwidth: float
    device: str = "cpu"

    @property
    def balance(self) -> float:
        """FLOPs per byte at which a kernel turns from memory- to compute-bound."""
        return self.peak_flops / self.bandwidth


def _median_time(fn: Callable[[], Any], sync: Callable[[], None], budget: float, min_reps: int = 3) -> float:
    fn()  # warm-up (allocation, kernel selection)
    sync()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_reps or (time.perf_counter() - start < budget and len(times) < 50):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure_roofline(seconds: float = 1.0, device: Optional[str] = None) -> Roofline:
    """Measure peak fp32 matmul FLOP/s and copy bandwidth with torch, about `seconds` in all.

    The matmul (n=2048 on CPU, 8192 on CUDA) has intensity n/6 FLOP/byte, well above any
    machine's balance; the copy (256 MiB on CPU, 1 GiB on CUDA) is meant to be beyond the caches and
    moves 2 bytes of traffic (read + write) per byte copied. Medians of repeats damp noise
    from other processes sharing the machine."""
    import torch

    if not seconds > 0:
        raise ValueError(f"seconds must be > 0, got {seconds!r}")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cuda = dev.type == "cuda"
    sync = (lambda: torch.cuda.synchronize(dev)) if cuda else (lambda: None)
    n = 8192 if cuda else 2048
    a = torch.randn(n, n, device=dev, dtype=torch.float32)
    b = torch.randn(n, n, device=dev, dtype=torch.float32)
    c = torch.empty(n, n, device=dev, dtype=torch.float32)
    t_mm = _median_time(lambda: torch.mm(a, b, out=c), sync, seconds / 2)
    del a, b, c
    numel = 1 << 28 if cuda else 1 << 26  # fp32 elements: 1 GiB / 256 MiB, past any cache
    src = torch.ones(numel, device=dev, dtype=torch.float32)
    dst = torch.empty_like(src)
    t_copy = _median_time(lambda: dst.copy_(src), sync, seconds / 2)
    return Roofline(peak_flops=2.0 * n**3 / t_mm, bandwidth=2.0 * numel * 4 / t_copy, device=str(dev))


def _positive_int(value: Any) -> Optional[int]:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
    return int(value) if ok else None


def batch_size(run: Run) -> tuple[int, str]:
    """Samples decoding together per engine step, and where that number comes from."""
    samples = max(1, len(run.records))
    for key in ("batch", "max_num_seqs"):
        cap = _positive_int(run.settings.get(key))
        if cap:
            b = min(cap, samples)
            return b, f"{b} = min({key} {cap}, {samples} samples)"
    b = min(samples, DEFAULT_MAX_NUM_SEQS)
    return b, f"{b} = min(default max_num_seqs {DEFAULT_MAX_NUM_SEQS}, {samples} samples)"


def phase_tokens(run: Run) -> dict[str, int]:
    """Tokens per phase: summary.json's phase_tokens, else sums over the sample records."""
    given = (run.summary or {}).get("phase_tokens") or {}
    out = {}
    for p in PHASES:
        value = given.get(p)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            out[p] = value
        else:
            out[p] = sum(int(r.get(_RECORD_KEY[p], 0)) for r in run.records)
    return out


def _forwards(run: Run, tokens: dict[str, int]) -> dict[str, tuple[float, str]]:
    batch, why = batch_size(run)
    chunk = _positive_int(run.settings.get("max_num_batched_tokens")) or DEFAULT_BATCHED_TOKENS
    est = {
        "draft_decode": (math.ceil(tokens["draft_decode"] / batch), f"tokens / batch, batch {why}"),
        "target_decode": (math.ceil(tokens["target_decode"] / batch), f"tokens / batch, batch {why}"),
        "target_score": (math.ceil(tokens["target_score"] / chunk), f"tokens / {chunk} per step"),
    }
    engine = (run.summary or {}).get("engine") or {}
    steps = {m: _positive_int((engine.get(m) or {}).get("steps")) for m in ("draft", "target")}
    if steps["draft"]:
        est["draft_decode"] = (steps["draft"], "draft engine steps")
    if steps["target"]:
        parts = est["target_score"][0] + est["target_decode"][0]
        for p in ("target_score", "target_decode"):
            share = est[p][0] / parts if parts else 0.5
            est[p] = (steps["target"] * share, "target engine steps, split by token estimate")
    return est


def arithmetic_intensity(run: Run, roofline: Roofline) -> dict[str, dict]:
    """Per phase (and "total"): tokens, forwards, flops, bytes, intensity (FLOP/byte), t_compute,
    t_memory, t_sync, ratio r = T_c / (T_m + T_s), bound, note. A phase whose model size
    run.json does not give has None figures and says so in its note."""
    tokens = phase_tokens(run)
    forwards = _forwards(run, tokens)
    batch, _ = batch_size(run)
    sync_s = run.barrier_wait / batch if run.setting("method") == "sync" else 0.0
    out: dict[str, dict] = {}
    total = {"tokens": 0, "forwards": 0.0, "flops": 0.0, "bytes": 0.0, "t_compute": 0.0, "t_memory": 0.0}
    complete = True
    for phase in PHASES:
        model = (run.models or {}).get(_PHASE_MODEL[phase]) or {}
        params, nbytes = _positive_int(model.get("params")), _positive_int(model.get("bytes"))
        n_fwd, note = forwards[phase]
        row: dict = {"tokens": tokens[phase], "forwards": n_fwd, "note": note}
        if params is None or nbytes is None:
            complete = complete and tokens[phase] == 0
            row.update(flops=None, bytes=None, intensity=None, t_compute=None, t_memory=None,
                       t_sync=0.0, ratio=None, bound=None,
                       note=f"{_PHASE_MODEL[phase]} model params/bytes not in run.json")
            out[phase] = row
            continue
        flops, moved = 2.0 * params * tokens[phase], float(nbytes) * n_fwd
        row.update(flops=flops, bytes=moved, t_sync=0.0)
        _times(row, roofline)
        out[phase] = row
        for k in total:
            total[k] += row[k]
    note = "sum of phases; T_s = barrier_wait / batch" if sync_s else "sum of phases"
    total.update(t_sync=sync_s, note=note)
    if complete:
        _times(total, roofline)
    else:
        total.update(intensity=None, ratio=None, bound=None, note="a phase lacks model sizes")
    out["total"] = total
    return out


def _times(row: dict, roofline: Roofline) -> None:
    row["intensity"] = row["flops"] / row["bytes"] if row["bytes"] else None
    row["t_compute"] = row["flops"] / roofline.peak_flops
    row["t_memory"] = row["bytes"] / roofline.bandwidth
    denom = row["t_memory"] + row["t_sync"]
    row["ratio"] = row["t_compute"] / denom if denom else None
    row["bound"] = None if row["ratio"] is None else ("compute" if row["ratio"] > 1 else (
        "barrier" if row["t_sync"] > row["t_memory"] else "memory"))
