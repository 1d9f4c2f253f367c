"""Microbenchmarks of the a1 CUDA kernels at realistic sizes, timed with torch.cuda events.

For each op: mean time per call, the bytes it must move and the FLOPs it must do (counted from
the shapes, not measured), the achieved GB/s and TFLOP/s, and those as a fraction of the
device's peaks (defaults: H200 SXM, 4.8 TB/s HBM3e, ~989 TFLOP/s dense bf16 tensor, ~67 TFLOP/s
fp32; override with --peak-gbs / --peak-bf16-tflops / --peak-fp32-tflops). Where torch has an
equivalent (log_softmax + gather, matmul + log_softmax, SDPA) it is timed too, for scale.

    python benchmarks/bench_cuda_kernels.py --out-dir gpu_check_out [--quick]

Writes bench_cuda.json and bench_cuda.md into --out-dir (or $A1_BENCH_OUT, default '.').
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "a1_ext"))
from cuda_cases import attention_case, sampling_params  # noqa: E402


def time_ms(fn, warmup: int, iters: int) -> float:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / iters


class Bench:
    def __init__(self, peaks: dict, warmup: int, iters: int):
        self.peaks, self.warmup, self.iters, self.rows = peaks, warmup, iters, []

    def run(self, name, fn, bytes_moved, flops=0.0, flop_kind="fp32", baseline=None):
        try:
            ms = time_ms(fn, self.warmup, self.iters)
            row = {"op": name, "ms": round(ms, 4), "GB/s": round(bytes_moved / ms / 1e6, 1),
                   "TFLOP/s": round(flops / ms / 1e9, 2)}
            row["%HBM"] = round(100 * row["GB/s"] / self.peaks["gbs"], 1)
            peak_flops = self.peaks["bf16_tflops" if flop_kind == "bf16" else "fp32_tflops"]
            row["%FLOP"] = round(100 * row["TFLOP/s"] / peak_flops, 1) if flops else None
            if baseline is not None:
                try:
                    row["torch_ms"] = round(time_ms(baseline, self.warmup, self.iters), 4)
                except torch.cuda.OutOfMemoryError:
                    row["torch_ms"] = "OOM"
                    torch.cuda.empty_cache()
        except Exception as err:  # one failing op must not hide the others' numbers
            row = {"op": name, "error": f"{type(err).__name__}: {err}", "trace": traceback.format_exc(limit=3)}
        self.rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "trace"}), flush=True)


def bench_scoring(b: Bench, ops, quick: bool):
    T = 512
    for V in ([49152] if quick else [49152, 152064]):
        logits = torch.randn(T, V, device="cuda", dtype=torch.bfloat16)
        tokens = torch.randint(0, V, (T,), device="cuda")
        cu = torch.tensor([0, 128, 256, 512], device="cuda", dtype=torch.int32)
        b.run(f"step_score T={T} V={V} bf16", lambda: ops.step_score(logits, tokens, cu, 1.0), T * V * 2,
              baseline=lambda: torch.log_softmax(logits.float(), -1).gather(1, tokens[:, None]))
    for H, V in ([(896, 151936)] if quick else [(896, 151936), (3584, 152064)]):
        hidden = torch.randn(T, H, device="cuda", dtype=torch.bfloat16)
        lm_head = torch.randn(V, H, device="cuda", dtype=torch.bfloat16) / math.sqrt(H)
        tokens = torch.randint(0, V, (T,), device="cuda")
        cu = torch.tensor([0, T], device="cuda", dtype=torch.int32)
        b.run(f"linear_step_score T={T} H={H} V={V} bf16", lambda: ops.linear_step_score(hidden, lm_head, tokens, cu, 1.0, 4096),
              (V * H + T * H) * 2, flops=2 * T * V * H, flop_kind="bf16",
              baseline=lambda: torch.log_softmax((hidden @ lm_head.T).float(), -1).gather(1, tokens[:, None]))


def bench_attention(b: Bench, ops, quick: bool):
    dt, D, Hq, Hkv, bs = torch.bfloat16, 128, 32, 8, 16
    B, S = 16, 2048
    args = [t.cuda() if isinstance(t, torch.Tensor) else t for t in
            attention_case(dt, D, bs, q_lens=[1] * B, seq_lens=[S] * B, num_q_heads=Hq, num_kv_heads=Hkv, spare_blocks=0)]
    kv_bytes = 2 * B * S * Hkv * D * 2
    b.run(f"paged_attention decode B={B} S={S} Hq={Hq} Hkv={Hkv} D={D} bf16", lambda: ops.paged_attention(*args),
          kv_bytes, flops=4 * B * Hq * S * D, flop_kind="bf16")
    if quick:
        return
    rows, q_len, ctx = 4, 512, 1024  # chunked prefill: 512 new tokens on 512 cached ones, 4 requests
    args = [t.cuda() if isinstance(t, torch.Tensor) else t for t in
            attention_case(dt, D, bs, q_lens=[q_len] * rows, seq_lens=[ctx] * rows, num_q_heads=Hq, num_kv_heads=Hkv,
                           spare_blocks=0)]
    visible = sum(ctx - q_len + i + 1 for i in range(q_len)) * rows
    q = args[0].view(rows, q_len, Hq, D).transpose(1, 2)
    k = torch.randn(rows, Hkv, ctx, D, device="cuda", dtype=dt)
    b.run(f"paged_attention prefill {rows}x{q_len} on ctx {ctx} Hq={Hq} Hkv={Hkv} D={D} bf16",
          lambda: ops.paged_attention(*args), 2 * rows * ctx * Hkv * D * 2 + 2 * rows * q_len * Hq * D * 2,
          flops=4 * Hq * D * visible, flop_kind="bf16",
          # torch's SDPA on contiguous K/V (not paged, not causal): a scale reference only
          baseline=lambda: torch.nn.functional.scaled_dot_product_attention(q, k, k, enable_gqa=True))


def bench_cache(b: Bench, ops, quick: bool):
    T, Hkv, D, bs, blocks = 512, 8, 128, 16, 4096
    key = torch.randn(T, Hkv, D, device="cuda", dtype=torch.bfloat16)
    k_cache = torch.zeros(blocks, bs, Hkv, D, device="cuda", dtype=torch.bfloat16)
    v_cache = torch.zeros_like(k_cache)
    slots = torch.randperm(blocks * bs, device="cuda")[:T]
    b.run(f"reshape_and_cache T={T} Hkv={Hkv} D={D} bf16", lambda: ops.reshape_and_cache(key, key, k_cache, v_cache, slots),
          4 * T * Hkv * D * 2)
    layers, pairs = (4, 64) if quick else (28, 64)
    caches = [torch.zeros(1024, bs, Hkv, D, device="cuda", dtype=torch.bfloat16) for _ in range(2 * layers)]
    mapping = torch.stack([torch.arange(pairs), torch.arange(pairs) + 512], 1).cuda()
    b.run(f"copy_blocks layers={layers} pairs={pairs}", lambda: ops.copy_blocks(caches[:layers], caches[layers:], mapping),
          2 * 2 * layers * pairs * bs * Hkv * D * 2)


def bench_sampling(b: Bench, ops, quick: bool):
    B, V = 32, 152064
    logits = torch.randn(B, V, device="cuda") * 3
    for label, (temp, k, p) in {"temperature": (0.8, 0, 1.0), "top-k 50 + top-p 0.9": (0.8, 50, 0.9)}.items():
        params = [t.cuda() for t in sampling_params(B, temp, k, p)]
        b.run(f"sample B={B} V={V} fp32 {label}", lambda: ops.sample(logits, *params), B * V * 4,
              baseline=lambda: torch.multinomial(torch.softmax(logits / 0.8, -1), 1))
    k = 8
    cu = torch.arange(0, B * k + 1, k)
    target = torch.randn(B * (k + 1), V, device="cuda") * 3
    draft_probs = torch.softmax(torch.randn(B * k, V, device="cuda") * 3, -1)
    drafts = torch.multinomial(draft_probs, 1).squeeze(1)
    params = [t.cuda() for t in sampling_params(B, 0.8, 0, 1.0)]
    b.run(f"speculative_verify B={B} k={k} V={V} fp32 (cu_num_draft on CPU)",
          lambda: ops.speculative_verify(target, drafts, cu, draft_probs, *params), (target.numel() + draft_probs.numel()) * 4)


def bench_quant(b: Bench, ops, quick: bool):
    """GGUF block weights: quant_linear's decode kernel (T <= 16) and its dequantize + cuBLAS path
    (T > 16), each against dequantize followed by a float32 matmul; and dequantize alone."""
    from a1_ext.quant_formats import QUANT_FORMATS

    N, K = 14336, 4096  # a Llama-3-8B MLP projection
    for name in (["Q4_K"] if quick else ["Q4_0", "Q8_0", "Q4_K", "Q6_K"]):
        fmt = QUANT_FORMATS[name]
        # Random bytes: some scales are inf/NaN, which costs a GPU nothing; the timing is what counts here.
        weight = torch.randint(0, 256, (N, K // fmt.block_size, fmt.block_bytes), dtype=torch.uint8, device="cuda")
        b.run(f"dequantize {name} N={N} K={K}", lambda: ops.dequantize(weight), weight.numel() + N * K * 4)
        for T in ([1, 256] if quick else [1, 4, 16, 17, 256]):
            x = torch.randn(T, K, device="cuda")
            path = "decode" if T <= 16 else "dequantize+GEMM"
            b.run(f"quant_linear {name} T={T} N={N} K={K} ({path})", lambda: ops.quant_linear(x, weight),
                  weight.numel() + (T * K + T * N) * 4, flops=2 * T * N * K,
                  baseline=lambda: x @ ops.dequantize(weight).T)


def markdown(rows, device: str, peaks: dict) -> str:
    lines = [f"# a1 CUDA kernel microbenchmarks on {device}", "",
             f"Peaks used: {peaks['gbs']} GB/s, {peaks['bf16_tflops']} TFLOP/s bf16, {peaks['fp32_tflops']} TFLOP/s fp32.",
             "", "| op | ms | GB/s | %HBM | TFLOP/s | %FLOP | torch ms |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['op']} | ERROR: {r['error']} | | | | | |")
        else:
            lines.append(f"| {r['op']} | {r['ms']} | {r['GB/s']} | {r['%HBM']} | {r['TFLOP/s']} | {r['%FLOP'] or ''} | "
                         f"{r.get('torch_ms', '')} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", default=os.environ.get("A1_BENCH_OUT", "."))
    parser.add_argument("--quick", action="store_true", help="smaller set, fewer iterations")
    parser.add_argument("--peak-gbs", type=float, default=4800.0)
    parser.add_argument("--peak-bf16-tflops", type=float, default=989.0)
    parser.add_argument("--peak-fp32-tflops", type=float, default=67.0)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("bench_cuda_kernels: no CUDA device", file=sys.stderr)
        return 2
    from a1_ext import ops

    peaks = {"gbs": args.peak_gbs, "bf16_tflops": args.peak_bf16_tflops, "fp32_tflops": args.peak_fp32_tflops}
    b = Bench(peaks, warmup=2 if args.quick else 5, iters=5 if args.quick else 20)
    for section in (bench_cache, bench_attention, bench_scoring, bench_sampling, bench_quant):
        section(b, ops, args.quick)
        torch.cuda.empty_cache()
    device = torch.cuda.get_device_name()
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_cuda.json").write_text(json.dumps({"device": device, "torch": torch.__version__, "peaks": peaks,
                                                     "results": b.rows}, indent=1))
    (out / "bench_cuda.md").write_text(markdown(b.rows, device, peaks))
    print(f"bench_cuda_kernels: wrote {out / 'bench_cuda.md'}")
    return 1 if any("error" in r for r in b.rows) else 0


if __name__ == "__main__":
    sys.exit(main())
