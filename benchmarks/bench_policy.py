"""The A1 policy end to end on SmolLM2-135M in self mode: async vs sync vs target_only, the same
questions and seeds, N samples each, one question at a time (latency) and several in flight
(throughput); and the policy's own overhead: async at alpha -> 0 (nothing is ever taken over)
against plain LLM.generate of the same number of tokens per sample. Writes a markdown report.

Usage: python benchmarks/bench_policy.py [--samples 16] [--questions 8] [--max-tokens 160] [--out FILE]
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "active")  # as in bench_engine.py: set before torch loads

import a1  # noqa: E402
from a1.data import load_dataset  # noqa: E402
from a1.data.prompts import format_prompt  # noqa: E402
from a1.policy import generate  # noqa: E402

MODES = ("async", "sync", "target_only")


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_policy(llm, prompts: list[str], mode: str, args, alpha: float) -> dict:
    start = time.perf_counter()
    results = generate(
        prompts, target=llm, mode=mode, num_samples=args.samples, alpha=alpha, max_tokens=args.max_tokens,
        step_tokens=args.step_tokens, max_turns=args.turns, temperature=0.7, seed=args.seed, progress=False,
        concurrency=len(prompts),
    )
    wall = time.perf_counter() - start
    tokens = sum(len(s.token_ids) for r in results for s in r.samples)
    tested = sum(r.stats["tested"] for r in results)
    takeovers = sum(round((r.stats["takeover_rate"] or 0) * r.stats["tested"]) for r in results)
    return {
        "mode": mode, "questions": len(prompts), "wall_s": wall, "tokens": tokens, "tok_s": tokens / wall,
        "takeover_rate": takeovers / tested if tested else None, "barrier_wait_s": sum(r.stats["barrier_wait"] for r in results),
        "lengths": [[len(s.token_ids) for s in r.samples] for r in results],
    }


def run_plain(llm, prompts: list[str], lengths: list[list[int]], seed: int) -> dict:
    """LLM.generate of exactly the tokens the policy run produced per sample (no stops)."""
    items, params = [], []
    for prompt, per_sample in zip(prompts, lengths):
        for i, n in enumerate(per_sample):
            items.append(prompt)
            params.append(a1.SamplingParams(temperature=0.7, top_p=0.95, max_tokens=n, ignore_eos=True, seed=seed + i))
    start = time.perf_counter()
    outs = llm.generate(items, params, chat=True)
    wall = time.perf_counter() - start
    tokens = sum(len(o.token_ids) for o in outs)
    return {"mode": "plain LLM.generate", "questions": len(prompts), "wall_s": wall, "tokens": tokens, "tok_s": tokens / wall}


def fmt(row: dict, ratio: str = "") -> str:
    rate = "-" if row.get("takeover_rate") is None else f"{row['takeover_rate']:.3f}"
    barrier = f"{row.get('barrier_wait_s', 0.0):.1f}"
    return (f"| {row['mode']} | {row['questions']} | {row['wall_s']:.1f} | {row['tokens']} | {row['tok_s']:.1f} | "
            f"{rate} | {barrier} | {ratio} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--questions", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=160)
    parser.add_argument("--step-tokens", type=int, default=40)
    parser.add_argument("--turns", type=int, default=12)
    parser.add_argument("--alpha", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    llm = a1.LLM("smollm2-135m", kv_cache_gb=2.0)
    problems = load_dataset("gsm8k", limit=args.questions, seed=args.seed)
    prompts = [format_prompt(p) for p in problems]
    generate(prompts[:1], target=llm, num_samples=2, max_tokens=8, progress=False)  # warm-up
    lines = [
        f"# A1 policy benchmark: SmolLM2-135M self mode, N = {args.samples}",
        "",
        f"CPU: {cpu_model()} ({os.cpu_count()} cores); alpha = {args.alpha}; "
        f"max_tokens {args.max_tokens}, step_tokens {args.step_tokens}, turns {args.turns}; gsm8k questions, seed {args.seed}.",
        "",
        "| mode | questions in flight | wall s | tokens | tok/s | takeover rate | barrier wait s (summed) | tok/s vs sync |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for batch in ([prompts[0]], prompts):
        rows = {mode: run_policy(llm, batch, mode, args, args.alpha) for mode in MODES}
        for mode in MODES:
            lines.append(fmt(rows[mode], f"{rows[mode]['tok_s'] / rows['sync']['tok_s']:.2f}x"))
            print(lines[-1], flush=True)
    lines += ["", "Policy overhead: async at alpha = 1e-6 (no takeovers) vs plain LLM.generate of the same tokens.", "",
              "| run | questions | wall s | tokens | tok/s | takeover rate | barrier wait s | time / plain's |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for batch in ([prompts[0]], prompts):
        policy = run_policy(llm, batch, "async", args, 1e-6)
        plain = run_plain(llm, batch, policy["lengths"], args.seed)
        lines += [fmt(plain), fmt(policy, f"{policy['wall_s'] / plain['wall_s']:.2f}x")]
        print(lines[-2], lines[-1], sep="\n", flush=True)
    report = "\n".join(lines) + "\n"
    if args.out:
        args.out.write_text(report)
    print(report)


if __name__ == "__main__":
    main()
