"""Load test of `a1 serve`: N concurrent clients (default 64) for a bounded time on 127.0.0.1.

Starts `python -m a1.serve --model M --port 0` (or uses --url), then every client loops on its
own requests until the time is up: a generation (`/v1/completions`, token-id prompt, seeded,
max_tokens new tokens) or a step score (SGLang `/generate` with `logprob_start_len`: the prompt
log-probs of the prompt's last tokens), alternating, with prompts of random length over a shared
prefix (as the policy's samples share their question). Every request has a timeout. Afterwards it
checks that the server answered every request, that /health shows no KV block in use and no live
sequence, and prints the latency percentiles per kind (and a RESULTS.md section with --markdown).
Exit status 1 if a request failed or a block stayed in use.

    python benchmarks/bench_serve.py [--model smollm2-135m] [--clients 64] [--duration 30]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import aiohttp


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def start_server(model: str, kv_cache_gb: float, max_model_len: int, log: Path) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "a1.serve", "--model", model, "--host", "127.0.0.1", "--port", "0",
           "--kv-cache-gb", str(kv_cache_gb), "--max-model-len", str(max_model_len)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=open(log, "w"), text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    deadline = time.monotonic() + 300
    for line in proc.stdout:  # the server prints one line once it listens
        if "listening on " in line:
            return proc, line.split("listening on ", 1)[1].strip()
        if time.monotonic() > deadline:
            break
    proc.kill()
    raise SystemExit(f"a1 serve did not start: {log.read_text()[-2000:]}")


async def client(index: int, session: aiohttp.ClientSession, url: str, args, vocab: int, prefix: list[int],
                 stop_at: float, records: list) -> None:
    rng = random.Random(index)
    kind = "generate" if index % 2 == 0 else "score"
    timeout = aiohttp.ClientTimeout(total=args.request_timeout)
    while time.monotonic() < stop_at:
        prompt = prefix + [rng.randrange(3, vocab) for _ in range(rng.randint(8, args.prompt_tokens))]
        if kind == "generate":
            path, body = "/v1/completions", {"prompt": prompt, "max_tokens": args.max_tokens, "temperature": 0.8,
                                              "seed": rng.randrange(1 << 30), "ignore_eos": True}
        else:
            path, body = "/generate", {"input_ids": prompt, "return_logprob": True,
                                        "logprob_start_len": len(prompt) - args.max_tokens,
                                        "sampling_params": {"max_new_tokens": 1, "temperature": 0.0}}
        start = time.perf_counter()
        try:
            async with session.post(url + path, json=body, timeout=timeout) as resp:
                answer = await resp.read()
                ok = resp.status == 200 and bool(json.loads(answer))
                error = None if ok else f"HTTP {resp.status}: {answer[:200]!r}"
        except (aiohttp.ClientError, asyncio.TimeoutError) as err:
            ok, error = False, f"{type(err).__name__}: {err}"
        records.append((kind, time.perf_counter() - start, ok, error))
        kind = "score" if kind == "generate" else "generate"


async def load(url: str, args) -> tuple[list, float, dict]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=args.clients)) as session:
        async with session.get(url + "/v1/models") as resp:
            card = (await resp.json())["data"][0]
        async with session.get(url + "/metrics") as resp:
            before = await resp.json()
        vocab = args.vocab or 1000
        prefix = random.Random(0).sample(range(3, vocab), args.prefix_tokens)
        records: list = []
        start = time.monotonic()
        stop_at = start + args.duration
        await asyncio.gather(*(client(i, session, url, args, vocab, prefix, stop_at, records)
                               for i in range(args.clients)))
        wall = time.monotonic() - start
        health: dict = {}
        for _ in range(50):  # the last answers are out: the engine frees their blocks right away
            async with session.get(url + "/health") as resp:
                health = await resp.json()
            if health.get("in_flight_requests") == 0 and not any(health.get("used_blocks", {}).values()):
                break
            await asyncio.sleep(0.2)
        async with session.get(url + "/metrics") as resp:
            after = await resp.json()
    return records, wall, {"model": card["id"], "health": health, "before": before, "after": after}


def report(records: list, wall: float, info: dict, args) -> tuple[str, bool]:
    health = info["health"]
    failed = [r for r in records if not r[2]]
    freed = health.get("in_flight_requests") == 0 and not any(health.get("used_blocks", {}).values()) \
        and not any(health.get("live_sequences", {}).values())
    engine = info["after"].get("engine", {}).get("target", {})
    lines = ["| kind | requests | req/s | p50 ms | p90 ms | p99 ms | max ms |", "|---|---|---|---|---|---|---|"]
    for kind in ("generate", "score", "all"):
        lat = [r[1] * 1000 for r in records if r[2] and (kind == "all" or r[0] == kind)]
        lines.append(f"| {kind} | {len(lat)} | {len(lat) / wall:.1f} | {percentile(lat, 50):.0f} | "
                     f"{percentile(lat, 90):.0f} | {percentile(lat, 99):.0f} | {max(lat, default=float('nan')):.0f} |")
    summary = [
        f"{len(records)} requests from {args.clients} clients in {wall:.1f} s, {len(failed)} failed; "
        f"after the run: used blocks {health.get('used_blocks')}, live sequences {health.get('live_sequences')}, "
        f"in flight {health.get('in_flight_requests')} ({'all freed' if freed else 'NOT FREED'}).",
        f"Engine: {engine.get('steps')} steps, {engine.get('tokens_sampled')} tokens sampled "
        f"({engine.get('tokens_sampled', 0) / wall:.0f}/s), {engine.get('tokens_scored')} scored, prefix-cache hit "
        f"rate {engine.get('prefix_cache_hit_rate', 0):.2f}, peak blocks {engine.get('peak_blocks_used')}, "
        f"preemptions {engine.get('preemptions')}.",
    ]
    if failed:
        summary.append("First failure: " + str(failed[0][3]))
    return "\n".join(lines) + "\n\n" + "\n".join(summary), not failed and freed


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration, subprocess.SubprocessError):
        return platform.processor() or "unknown"


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m", help="what a1 serve loads (ignored with --url)")
    parser.add_argument("--url", default=None, help="an a1 serve already running (default: start one)")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds clients keep sending")
    parser.add_argument("--max-tokens", type=int, default=16, help="tokens per generation / scored per score")
    parser.add_argument("--prompt-tokens", type=int, default=96, help="longest random suffix of a prompt")
    parser.add_argument("--prefix-tokens", type=int, default=64, help="prefix every prompt shares")
    parser.add_argument("--vocab", type=int, default=None, help="token ids drawn below this (default: 1000)")
    parser.add_argument("--kv-cache-gb", type=float, default=0.5)
    parser.add_argument("--max-model-len", type=int, default=1024)
    parser.add_argument("--request-timeout", type=float, default=120.0)
    parser.add_argument("--markdown", action="store_true", help="print a RESULTS.md section")
    args = parser.parse_args(argv)
    proc = None
    log = Path(tempfile.mkstemp(suffix=".log")[1])
    if args.url is None:
        proc, url = start_server(args.model, args.kv_cache_gb, args.max_model_len, log)
    else:
        url = args.url.rstrip("/")
    try:
        records, wall, info = asyncio.run(load(url, args))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(60)
    table, ok = report(records, wall, info, args)
    command = "python benchmarks/bench_serve.py " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.markdown:
        print(f"## a1 serve under load\n\nCommand: `{command.strip()}` (model {info['model']}, "
              f"{args.clients} clients, {args.duration:g} s, CPU: {cpu_model()}, {os.cpu_count()} cores).\n")
    print(table)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
