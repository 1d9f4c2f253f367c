"""Speculative decoding on SmolLM2-135M: tokens per target forward, acceptance and tok/s against plain
decode of the same prompts in the same run, with (a) a tiny random draft of SmolLM2's vocabulary and
tokenizer and (b) SmolLM2 as its own draft (self mode: every draft accepted at greedy, the upper
bound of tokens per target forward for each k). Batch 1, greedy, ignore_eos. Writes a markdown report.

Usage: python benchmarks/bench_speculative.py [--ks 2 4 8] [--new-tokens 64] [--prompts 3] [--repeats 4] [--out FILE]
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "active")  # as bench_engine.py: both paths run under it

import torch  # noqa: E402

from a1 import LLM, SamplingParams  # noqa: E402
from a1.models.base import DecoderLM  # noqa: E402
from a1.models.loader import LoadedModel, load_model  # noqa: E402
from a1.models.weights import expected_tensors  # noqa: E402

PROMPTS = [
    "Explain in a few sentences why the sky is blue and why sunsets are red.",
    "Write a short story about a robot who learns to paint.",
    "List three tips for staying focused while studying, with one sentence each.",
    "What is the difference between a virus and a bacterium?",
]


def random_draft(target: LoadedModel, layers: int = 2, hidden: int = 64, seed: int = 0) -> LoadedModel:
    """SmolLM2's config shrunk (layers, width, heads), random weights, SmolLM2's tokenizer."""
    config = replace(
        target.config, num_layers=layers, hidden_size=hidden, intermediate_size=2 * hidden, num_heads=2,
        num_kv_heads=1, head_dim=hidden // 2,
    )
    model = DecoderLM(config, torch.float32)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in expected_tensors(model).items():
            if not name.endswith("norm.weight"):  # norms stay at one
                tensor.copy_(torch.randn(tensor.shape, generator=g) / tensor.shape[-1] ** 0.5)
    model.eval()
    model.use_weight_panels()
    return LoadedModel(model, target.tokenizer, config, f"random {layers}-layer d={hidden}")


COUNTERS = ("proposed", "accepted", "verifies", "emitted", "target_forwards", "draft_forwards", "draft_time",
            "verify_time")


def counters(llm: LLM) -> dict:
    spec = llm.get_metrics().get("speculative")
    if spec is None:
        return {"target_forwards": llm.engine.metrics.num_steps}
    return {key: spec[key] for key in COUNTERS}


def bench(configs: dict[str, LLM], prompts: list[list[int]], new_tokens: int, repeats: int) -> dict[str, dict]:
    """Every (prompt, configuration) pair `repeats` times, keeping the fastest run of each pair: a shared
    machine only ever slows a run down. Interleaved (each pass takes the prompts in turn and, for each,
    every configuration back to back, in an order rotated per pass) so a slow phase of the machine hits
    neighbouring configurations alike. tok/s = all prompts' new tokens / the sum of their fastest walls."""
    params = SamplingParams(temperature=0.0, max_tokens=new_tokens, ignore_eos=True)
    warm = SamplingParams(temperature=0.0, max_tokens=4, ignore_eos=True)
    for llm in configs.values():
        llm.generate([[1, 2, 3]], warm)
    names = list(configs)
    best = {name: [None] * len(prompts) for name in names}  # (wall, tokens, counter deltas) per prompt
    for rep in range(repeats):
        order = names[rep % len(names) :] + names[: rep % len(names)]
        for i, prompt in enumerate(prompts):
            for name in order:
                llm = configs[name]
                before = counters(llm)
                start = time.perf_counter()
                out = llm.generate([prompt], params)[0]
                wall = time.perf_counter() - start
                after = counters(llm)
                if best[name][i] is None or wall < best[name][i][0]:
                    best[name][i] = (wall, out.token_ids, {k: after[k] - before[k] for k in after})
        print(f"pass {rep + 1}: " + ", ".join(
            f"{name} {sum(len(b[1]) for b in best[name]) / sum(b[0] for b in best[name]):.1f}" for name in names
        ) + " tok/s (best so far)", flush=True)
    rows = {}
    for name in names:
        wall, tokens = sum(b[0] for b in best[name]), [b[1] for b in best[name]]
        row = {"wall_s": wall, "tok_s": sum(map(len, tokens)) / wall, "tokens": tokens}
        row.update({k: sum(b[2][k] for b in best[name]) for k in best[name][0][2]})
        if "proposed" in row:
            row["acceptance"] = row["accepted"] / row["proposed"]
            row["mean_accepted_length"] = (row["accepted"] + row["verifies"]) / row["verifies"]
            row["tokens_per_target_forward"] = row["emitted"] / row["target_forwards"]
        rows[name] = row
    return rows


def render(args, best: dict[str, dict], prompt_lens: list[int], draft_name: str) -> str:
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model_name = next((ln.split(":", 1)[1].strip() for ln in cpu.splitlines() if ln.startswith("Model name")), "?")
    plain = best["plain"]
    lines = [
        "# Speculative decoding benchmark",
        "",
        f"Target `{args.model}` fp32; {len(prompt_lens)} chat prompts of {', '.join(map(str, prompt_lens))} tokens, "
        f"each alone (batch 1), {args.new_tokens} new tokens, greedy, ignore_eos; tok/s = new tokens / wall time "
        f"(prefill of target and draft included; passes after the first find the prompts in the prefix cache, "
        f"alike for every configuration), the fastest of {args.repeats} interleaved runs of each (prompt, "
        f"configuration) pair after a warm-up; ms per forward from those runs. Draft (a): {draft_name}, random "
        f"weights, SmolLM2's tokenizer. CPU: {model_name}, "
        f"{platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}. Plain decode: {plain['tok_s']:.1f} tok/s, "
        f"{plain['target_forwards']} target forwards, {1e3 * plain['wall_s'] / plain['target_forwards']:.1f} ms each.",
        "",
        "| draft | k | tok/s | vs plain | acceptance | mean accepted length | tokens / target forward "
        "| target forwards | draft forwards | ms / verify forward | ms / draft forward | outputs = plain |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, row in best.items():
        if name == "plain":
            continue
        draft, k = name.rsplit(" k=", 1)
        same = "yes" if row["tokens"] == plain["tokens"] else "NO"
        lines.append(
            f"| {draft} | {k} | {row['tok_s']:.1f} | {row['tok_s'] / plain['tok_s']:.2f}x | {row['acceptance']:.3f} | "
            f"{row['mean_accepted_length']:.2f} | {row['tokens_per_target_forward']:.2f} | {row['target_forwards']} | "
            f"{row['draft_forwards']} | {1e3 * row['verify_time'] / row['target_forwards']:.1f} | "
            f"{1e3 * row['draft_time'] / row['draft_forwards']:.1f} | {same} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--ks", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--prompts", type=int, default=3)
    parser.add_argument("--kv-cache-gb", type=float, default=0.25)
    parser.add_argument("--repeats", type=int, default=4, help="interleaved passes; the fastest run of each is kept")
    parser.add_argument("--out", default="benchmarks/speculative_results.md")
    args = parser.parse_args()
    start = time.perf_counter()
    target = load_model(args.model, dtype=torch.float32)
    tokenizer = target.tokenizer
    prompts = [
        tokenizer.encode(tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True),
                         add_special_tokens=False)
        for p in PROMPTS[: args.prompts]
    ]
    draft = random_draft(target)
    configs = {"plain": LLM(target, kv_cache_gb=args.kv_cache_gb)}
    for name, spec in (("random draft", draft), ("self", "self")):
        for k in args.ks:
            configs[f"{name} k={k}"] = LLM(target, draft=spec, num_speculative_tokens=k, kv_cache_gb=args.kv_cache_gb)
    best = bench(configs, prompts, args.new_tokens, args.repeats)
    report = render(args, best, [len(p) for p in prompts], draft.source)
    report += f"\nWhole script: {time.perf_counter() - start:.0f} s.\n"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(report)
    print(report)


if __name__ == "__main__":
    main()
