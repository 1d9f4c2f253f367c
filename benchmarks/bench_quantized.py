"""a1 on a quantized GGUF file (blocks kept), the same file dequantized to fp32 (and bf16 with --bf16),
and llama.cpp on that file: decode tok/s per batch size, prefill tok/s of one long prompt and peak
resident memory, same thread count. Writes a markdown report.

Usage: python benchmarks/bench_quantized.py [--model smollm2-135m] [--batches 1 8 32] [--new-tokens 64]
       [--prompt-tokens 512] [--threads 2] [--repeats 2] [--bf16] [--bound] [--out FILE]
       python benchmarks/bench_quantized.py --synthetic [--fp32] [--cache-dir runs/synthetic] ...

--synthetic benchmarks benchmarks/synthetic_gguf.py's 1.5B-shaped Q4_0 file (random weights, SmolLM2's
tokenizer; written to --cache-dir on first use, ~1 min) instead of --model: a1 quantized and llama.cpp
at batch 1 (--batches to change), a1 fp32 only with --fp32, and the bound, against #22's goal (a1 at
>= 90% of the bound and >= llama.cpp).
--bound measures the memory-bandwidth bound of batch-1 decode in the same run (benchmarks/decode_bound.py)
and adds "% of bound" = decode tok/s at B=1 / bound. Bound = read bandwidth / bytes per step: torch.sum
over a 2 GiB huge-page buffer with --threads threads (fastest of 10 passes) / every tensor of the file
but the token embedding, plus the embedding in full when it is the tied LM head (else one row); the
KV-cache reads are not counted.

Every variant also scores a prose passage (SCORED): its log-prob of each next token, compared with
llama.cpp's on the same file (mean and max |difference| in nats, against LOGPROB_TOLERANCE).

Every variant runs in a fresh process of this script (hidden --variant) so that its peak memory is its
own; the token ids are made once here, so all variants compute on identical inputs.
"""
from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

LLAMA = "llama.cpp"
BOUND = "bandwidth bound"  # a variant process that measures decode_bound.measure_bound
A1_VARIANTS: dict[str, str | None] = {"a1 quantized": None, "a1 fp32": "float32", "a1 bf16": "bfloat16"}
# Filler for the prefill prompt: only its length matters, so any text that tokenizes plainly will do.
# Scored for the log-prob comparison with llama.cpp: ordinary prose, so that the next tokens are
# neither certain nor noise.
SCORED = ("The lighthouse keeper climbed the stairs at dusk, as he had every evening for thirty years. "
          "From the gallery he could see the fishing boats returning, their lamps swaying in the swell, "
          "and beyond them the dark line of the storm that the radio had promised since morning. He "
          "trimmed the wick, wound the clockwork and wrote the time in the log in his careful hand.")
# The stated tolerance of #22 (model log-probs within it of llama.cpp's on the same file): the mean
# |difference| of the next-token log-probs over SCORED, in nats.
LOGPROB_TOLERANCE = 0.15
FILLER = ("The committee met on Tuesday to review the harvest figures, the state of the northern roads "
          "and the budget for the new library, and agreed to meet again after the spring rains. ")


def round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def peak_rss_mib() -> float:
    """This process's peak resident set. VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so
    a child started by subprocess (vfork + exec) starts with its parent's peak already in it."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run_a1(dtype_name: str | None, job: dict[str, Any]) -> dict[str, Any]:
    """One a1 variant: bench_engine's engine decode loop, then a prefill through the model's forward."""
    import bench_engine  # first: it sets OMP_WAIT_POLICY before torch loads
    import torch
    from a1.distill.forward import prefill_hidden
    from a1.models.loader import load_model

    torch.set_num_threads(job["threads"])
    base_mib = peak_rss_mib()  # python + torch + a1, before any weights
    loaded = load_model(job["path"], dtype=getattr(torch, dtype_name) if dtype_name else None)
    model = loaded.model
    # The KV pool is written when allocated, so it is resident: size it to what the largest batch
    # needs (no prefix sharing assumed, +25%) instead of the engine's 1 GiB default, or it would
    # dominate the peak RSS being compared.
    block = 16
    tokens = max(job["batches"]) * round_up(len(job["prompt"]) + job["new_tokens"] + block, block)
    kv_bytes = 1.25 * tokens * model.bytes_per_token()
    rows = bench_engine.bench_a1(loaded, job["prompt"], job["batches"], job["new_tokens"], kv_bytes / 2**30,
                                 job["repeats"])
    gc.collect()  # the engine and its KV pool, garbage now, freed before the prefill (not when GC gets to them)

    long_prompt: list[int] = job["long_prompt"]

    @torch.inference_mode()
    def prefill(ids: list[int]) -> float:
        # The last token's logits too: llama.cpp's prefill computes them (and only them).
        start = time.perf_counter()
        model.compute_logits(prefill_hidden(model, ids)[-1:])
        return time.perf_counter() - start

    prefill(long_prompt[:16])  # warm-up
    prefill_s = min(prefill(long_prompt) for _ in range(job["repeats"]))
    scored: list[int] = job["scored"]
    with torch.inference_mode():
        logprobs = torch.log_softmax(model.compute_logits(prefill_hidden(model, scored)).double(), -1)
    next_logprobs = logprobs[torch.arange(len(scored) - 1), torch.tensor(scored[1:])].tolist()
    weights = sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))
    return {
        "decode": {str(r["batch"]): r["decode_tok_s"] for r in rows},
        "tokens": [int(t) for t in rows[0]["tokens"]],
        "prefill": len(long_prompt) / prefill_s,
        "next_logprobs": next_logprobs,
        "weights_mib": weights / 2**20,
        "kv_mib": kv_bytes / 2**20,
        # prefill_hidden's own cache (the decode pool is freed by then): the KV held at that peak.
        "prefill_kv_mib": round_up(len(long_prompt), block) * model.bytes_per_token() / 2**20,
        "rss_mib": peak_rss_mib(),
        "base_mib": base_mib,
    }


def memory_goal(res: dict[str, Any], file_mib: float) -> str:
    """#22's memory goal for a1 quantized: peak RSS within 1.15x of the file plus the KV cache. The
    interpreter with torch (base_mib) is counted out, and the KV cache is the larger of the two the
    process holds (decode pool, prefill cache), which is the one resident at its peak."""
    kv = max(res["kv_mib"], res["prefill_kv_mib"])
    ratio = (res["rss_mib"] - res["base_mib"]) / (file_mib + kv)
    return (f"a1 quantized memory: peak RSS above the {res['base_mib']:.0f} MiB baseline {res['rss_mib'] - res['base_mib']:.0f} "
            f"MiB = {ratio:.2f}x of file {file_mib:.0f} + KV {kv:.0f} MiB (goal <= 1.15x: {'met' if ratio <= 1.15 else 'not met'}).")


def logprob_note(name: str, ours: list[float], theirs: list[float]) -> str:
    """How far a variant's next-token log-probs over SCORED are from llama.cpp's on the same file."""
    diff = [abs(a - b) for a, b in zip(ours, theirs)]
    mean = sum(diff) / len(diff)
    return (f"{name}: next-token log-probs at {len(diff)} positions of a prose passage against llama.cpp's: mean "
            f"|difference| {mean:.3f} nats, max {max(diff):.3f} (stated tolerance: mean <= {LOGPROB_TOLERANCE}: "
            f"{'within' if mean <= LOGPROB_TOLERANCE else 'outside'}).")


def run_llama(job: dict[str, Any]) -> dict[str, Any]:
    """llama.cpp through llama_cpp_runner.LlamaCpp. Its KV cache is not unified by default (n_ctx is
    split evenly over n_seq_max sequences, like a1's per-sequence pages), so the one-sequence prefill
    gets its own context with n_seq_max=1, closed before the decode context is made."""
    import llama_cpp  # noqa: F401  (loaded now, so the baseline below includes its library)
    import numpy as np
    from llama_cpp_runner import LlamaCpp

    base_mib = peak_rss_mib()
    prompt, long_prompt, threads = job["prompt"], job["long_prompt"], job["threads"]
    runner = LlamaCpp(job["path"], threads, n_ctx=round_up(len(long_prompt) + 1, 256), n_seq_max=1)
    runner.prefill(long_prompt[:16])  # warm-up
    prefill_s = min(runner.prefill(long_prompt) for _ in range(job["repeats"]))
    scored = job["scored"]
    next_logprobs = runner.logprobs(scored)[np.arange(len(scored) - 1), scored[1:]].astype(float).tolist()
    runner.close()

    batches, new_tokens = job["batches"], job["new_tokens"]
    per_seq = round_up(len(prompt) + new_tokens + 1, 256)
    runner = LlamaCpp(job["path"], threads, n_ctx=max(batches) * per_seq, n_seq_max=max(batches))
    runner.generate(prompt, 1, 4)  # warm-up
    decode, tokens = {}, None
    for batch in batches:
        # Same measure as bench_engine's decode_tok_s: the new_tokens - 1 steps after every first token.
        runs = [runner.generate(prompt, batch, new_tokens) for _ in range(job["repeats"])]
        decode[str(batch)] = batch * (new_tokens - 1) / min(r["decode_s"] for r in runs)
        tokens = tokens or runs[0]["tokens"]
    runner.close()
    return {"decode": decode, "tokens": [int(t) for t in tokens], "prefill": len(long_prompt) / prefill_s,
            "next_logprobs": next_logprobs, "rss_mib": peak_rss_mib(), "base_mib": base_mib}


def run_variant(name: str, job: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """Run one variant in a fresh process of this script; its result, or {"error": ...}."""
    with tempfile.TemporaryDirectory() as tmp:
        job_file, result_file = Path(tmp, "job.json"), Path(tmp, "result.json")
        job_file.write_text(json.dumps(job))
        cmd = [sys.executable, os.path.abspath(__file__), "--variant", name,
               "--job", str(job_file), "--result", str(result_file)]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not result_file.exists():
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            return {"error": f"exit {proc.returncode}: {tail}"}
        return json.loads(result_file.read_text())


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        import platform
        return platform.processor() or platform.machine()


def cell(value: float, reference: float | None, fmt: str) -> str:
    ratio = f" ({value / reference:.2f}x)" if reference else ""
    return f"{value:{fmt}}{ratio}"


def render(args: argparse.Namespace, results: dict[str, dict], path: Path, torch_version: str,
           prompt_len: int, llama_note: str | None, bound: dict[str, Any] | None = None) -> str:
    llama = results.get(LLAMA)
    llama = llama if llama and "error" not in llama else None  # the reference of the ratios, if it ran
    b0 = args.batches[0]
    # The bound is of batch-1 decode (one token per pass over the weights), so only B=1 gets a column.
    bound_col = bound is not None and "error" not in bound and 1 in args.batches
    lines = [
        "# Quantized GGUF: a1 vs llama.cpp",
        "",
        (f"CPU {cpu_model()}; {args.threads} threads; torch {torch_version}; "
         f"{datetime.datetime.now():%Y-%m-%d %H:%M}; OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}."),
        "",
        (f"Model `{path.name}` ({path.stat().st_size / 2**20:.1f} MiB file). Decode: tok/s of the "
         f"{args.new_tokens - 1} greedy steps after every sequence's first token, batch B copies of a "
         f"{prompt_len}-token prompt. Prefill: one {args.prompt_tokens}-token prompt (with its last token's "
         f"logits). Fastest of {args.repeats}. Peak RSS: the variant's own process (VmHWM), model load and KV "
         "cache included. (x) = a1 / llama.cpp: above 1 is faster for tok/s, more memory for RSS."),
        "",
        "| variant | " + " | ".join(f"decode tok/s B={b}" for b in args.batches)
        + (" | B=1 % of bound" if bound_col else "")
        + f" | prefill tok/s | peak RSS MiB | greedy B={b0} agrees with llama.cpp |",
        "|---|" + "---:|" * (len(args.batches) + 2 + bound_col) + "---|",
    ]
    notes = []
    for name, res in results.items():
        if "error" in res:
            lines.append(f"| {name} | " + " | ".join(["-"] * (len(args.batches) + 2 + bound_col)) + " | failed |")
            notes.append(f"{name} failed: {res['error']}")
            continue
        ref = llama if name != LLAMA else None
        decode = [cell(res["decode"][str(b)], ref and ref["decode"][str(b)], ".1f") for b in args.batches]
        if bound_col:
            decode.append(f"{100 * res['decode']['1'] / bound['tok_s']:.0f}%")
        agree = "-"
        if ref:
            same = next((i for i, (a, b) in enumerate(zip(res["tokens"], ref["tokens"])) if a != b), len(res["tokens"]))
            agree = "all" if same == len(res["tokens"]) else f"first {same} of {len(res['tokens'])}"
        lines.append(f"| {name} | " + " | ".join(decode) + f" | {cell(res['prefill'], ref and ref['prefill'], '.1f')} "
                     f"| {cell(res['rss_mib'], ref and ref['rss_mib'], '.0f')} | {agree} |")
        extra = f"weights {res['weights_mib']:.0f} MiB, KV pool {res['kv_mib']:.0f} MiB; " if "kv_mib" in res else ""
        notes.append(f"{name}: {extra}RSS after imports, before loading: {res['base_mib']:.0f} MiB.")
        if name == "a1 quantized":
            notes.append(memory_goal(res, path.stat().st_size / 2**20))
        if ref and "next_logprobs" in res and "next_logprobs" in ref:
            notes.append(logprob_note(name, res["next_logprobs"], ref["next_logprobs"]))
    if bound is not None and "error" in bound:
        notes.append(f"bandwidth bound failed: {bound['error']}")
    elif bound is not None:
        from decode_bound import describe
        notes.append(describe(bound, args.bandwidth_mib, args.threads) + " Measured before the variants.")
        a1 = results.get("a1 quantized", {})
        if bound_col and llama and "error" not in a1:
            met = a1["decode"]["1"] >= 0.9 * bound["tok_s"] and a1["decode"]["1"] >= llama["decode"]["1"]
            notes.append(f"Goal (#22: a1 quantized at B=1 >= 90% of the bound and >= llama.cpp): {'met' if met else 'not met'}.")
    if args.synthetic:
        notes.append("Random weights: the logits are nearly tied, so greedy agreement says nothing about correctness.")
    if llama_note:
        notes.append(llama_note)
    elif llama:
        notes.append("llama.cpp: f16 KV cache; n_ctx split over the sequences (kv_unified off, its default).")
    return "\n".join(lines + [""] + [f"- {n}" for n in notes]) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m", help="a GGUF file or a built-in name")
    parser.add_argument("--batches", type=int, nargs="+", help="default: 1 8 32; 1 with --synthetic")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--prompt-tokens", type=int, default=512, help="length of the prefill prompt")
    parser.add_argument("--threads", type=int, default=2, help="torch threads and llama.cpp threads")
    parser.add_argument("--repeats", type=int, default=2, help="runs per measurement; the fastest is reported")
    parser.add_argument("--bf16", action="store_true", help="also run a1 with the weights dequantized to bfloat16")
    parser.add_argument("--synthetic", action="store_true",
                        help="the synthetic 1.5B-shaped Q4_0 file instead of --model (implies --bound)")
    parser.add_argument("--cache-dir", type=Path, help="where --synthetic keeps its file (default runs/synthetic)")
    parser.add_argument("--fp32", action="store_true", help="with --synthetic: also run a1 fp32 (~6 GB of weights)")
    parser.add_argument("--bound", action="store_true", help="measure the memory-bandwidth bound of batch-1 decode")
    parser.add_argument("--bandwidth-mib", type=int, default=2048, help="buffer of the bandwidth probe (>> the LLC)")
    parser.add_argument("--out", help="default benchmarks/quantized_results.md (quantized_synthetic_results.md)")
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # internal: run one variant in this process
    parser.add_argument("--job", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.variant:  # child process: one variant, result as JSON
        job = json.loads(Path(args.job).read_text())
        if args.variant == BOUND:
            from decode_bound import measure_bound
            result = measure_bound(job)
        else:
            result = run_llama(job) if args.variant == LLAMA else run_a1(A1_VARIANTS[args.variant], job)
        Path(args.result).write_text(json.dumps(result))
        return
    if args.new_tokens < 2:
        parser.error("--new-tokens must be at least 2 (decode speed is measured after the first token)")
    args.batches = args.batches or ([1] if args.synthetic else [1, 8, 32])
    args.bound = args.bound or args.synthetic
    args.out = args.out or f"benchmarks/quantized{'_synthetic' if args.synthetic else ''}_results.md"

    import bench_engine  # its PROMPT; importing it also sets OMP_WAIT_POLICY, which the children inherit
    import torch
    from a1.models.gguf_loader import open_gguf, read_gguf_config, read_gguf_tokenizer
    from a1.models.loader import resolve_model_path

    if args.synthetic:
        from synthetic_gguf import CACHE_DIR, synthetic_gguf
        print("synthetic model (written on first use) ...", file=sys.stderr, flush=True)
        path = synthetic_gguf(args.cache_dir or CACHE_DIR)
    else:
        path = resolve_model_path(args.model)
    if path.suffix.lower() != ".gguf":
        parser.error(f"{path} is not a .gguf file")
    # Only the tokenizer here: token ids are made once and handed to every variant.
    tokenizer = read_gguf_tokenizer(path, read_gguf_config(open_gguf(path), path))
    text = tokenizer.apply_chat_template([{"role": "user", "content": bench_engine.PROMPT}], add_generation_prompt=True)
    prompt = tokenizer.encode(text, add_special_tokens=False)
    filler = tokenizer.encode(FILLER, add_special_tokens=False)
    long_prompt = (filler * (args.prompt_tokens // len(filler) + 1))[: args.prompt_tokens]
    scored = tokenizer.encode(SCORED, add_special_tokens=False)
    job = {"path": str(path), "threads": args.threads, "batches": args.batches, "new_tokens": args.new_tokens,
           "repeats": args.repeats, "prompt": prompt, "long_prompt": long_prompt, "scored": scored,
           "bandwidth_mib": args.bandwidth_mib}
    # The same thread count for torch's and llama.cpp's OpenMP pools (each also sets it explicitly).
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}

    names = [n for n in A1_VARIANTS if (n != "a1 bf16" or args.bf16) and (n != "a1 fp32" or args.fp32 or not args.synthetic)]
    llama_note = None
    try:
        import llama_cpp  # noqa: F401
        names.append(LLAMA)
    except (ImportError, OSError, RuntimeError) as err:  # not installed, or its shared library fails to load
        llama_note = f"llama.cpp skipped: `import llama_cpp` failed ({type(err).__name__}: {err}); no ratios."
    bound = None
    if args.bound:  # first, on a machine not yet busy with the variants' pages
        print(f"measuring {BOUND} ...", file=sys.stderr, flush=True)
        bound = run_variant(BOUND, job, env)
    results = {}
    for name in names:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        results[name] = run_variant(name, job, env)
    report = render(args, results, path, torch.__version__, len(prompt), llama_note, bound)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(report)
    print(report)


if __name__ == "__main__":
    main()
