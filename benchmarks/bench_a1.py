"""The paper's comparison on one machine, from one command: target_only, draft_only, sync and a1 with a
cheap draft over a sweep of α, on the bundled `arith` set (a task SmolLM2-135M can solve).

Every method runs through `a1 eval`'s machinery (a1.eval.runner.run_eval) into its own run directory
OUT/<method>-a<α>, then `a1 report` writes OUT/report/report.md over all of them, and this script
prints (and writes to OUT/comparison.md) the table the paper compares: accuracy (maj@N, pass@N,
mean) with 95% intervals over questions, target and draft tokens, wall time and speed-up over
target_only, the realized takeover rate, the rejection rate per turn and the barrier wait, then the
two goals checked. OUT/accuracy_vs_cost.png plots accuracy against wall time with target_only and
draft_only as the two ends. Runs resume (rerun the same command); each gets a fresh engine on the
once-loaded weights, so no run reuses another's prefix cache.

    python benchmarks/bench_a1.py --draft drafts/smollm2-4l --limit 40 --samples 8 --alphas 0.1,0.2,0.3,0.5
    python benchmarks/bench_a1.py --draft self:skip=14-16 --limit 12 --samples 4 --alphas 0.2   # a quick look
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))  # a source checkout without install


def wilson(successes: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson interval of a proportion (questions are the independent units)."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def mean_interval(values: list[float], z: float = 1.96) -> tuple[float, float]:
    """95% normal interval of a mean over questions (per-question mean accuracies: samples of one
    question are not independent)."""
    n = len(values)
    if n < 2:
        return (float("nan"), float("nan"))
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return max(0.0, mean - z * sd / math.sqrt(n)), min(1.0, mean + z * sd / math.sqrt(n))


def run_row(name: str, out: Path) -> dict:
    """The comparison's figures of one finished run directory."""
    summary = json.loads((out / "summary.json").read_text())
    m = summary["summary"]
    per_question: dict[str, list[bool]] = {}
    for line in (out / "samples.jsonl").read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            per_question.setdefault(record["question_id"], []).append(bool(record["correct"]))
    questions = len(per_question)
    strata = (m.get("rejection") or {}).get("by_stratum") or {}
    per_turn = {k: v.get("rate") for k, v in sorted(strata.items(), key=lambda kv: int(kv[0]))}
    return {
        "run": name, "questions": questions, "samples": m.get("samples"),
        "maj": m.get("maj_at_n"), "maj_ci": wilson(round((m.get("maj_at_n") or 0) * questions), questions),
        "pass": m.get("pass_at_n"), "pass_ci": wilson(round((m.get("pass_at_n") or 0) * questions), questions),
        "mean": m.get("mean_accuracy"),
        "mean_ci": mean_interval([sum(v) / len(v) for v in per_question.values()]),
        "target_tokens": m.get("target_tokens"), "draft_tokens": m.get("draft_tokens"),
        "wall": summary.get("wall_time"), "barrier_wait": summary.get("barrier_wait"),
        "takeover_rate": m.get("takeover_rate"), "rejection_per_turn": per_turn,
    }


def fmt(x: Optional[float], pct: bool = True) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return f"{100 * x:.1f}%" if pct else f"{x:.1f}"


def table(rows: list[dict], base: dict) -> str:
    head = ["run", "maj@N [95% CI]", "pass@N [95% CI]", "mean [95% CI]", "target tok", "draft tok", "wall (s)",
            "speed-up", "takeover", "rejection per turn", "barrier wait (s)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        speed = base["wall"] / r["wall"] if r["wall"] else None
        turns = ", ".join(f"{k}:{fmt(v)}" for k, v in list(r["rejection_per_turn"].items())[:5]) or "—"
        cells = [r["run"], f"{fmt(r['maj'])} [{fmt(r['maj_ci'][0])}, {fmt(r['maj_ci'][1])}]",
                 f"{fmt(r['pass'])} [{fmt(r['pass_ci'][0])}, {fmt(r['pass_ci'][1])}]",
                 f"{fmt(r['mean'])} [{fmt(r['mean_ci'][0])}, {fmt(r['mean_ci'][1])}]",
                 str(r["target_tokens"]), str(r["draft_tokens"]), fmt(r["wall"], pct=False),
                 f"{speed:.2f}x" if speed else "—", fmt(r["takeover_rate"]), turns, fmt(r["barrier_wait"], pct=False)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def goals(rows: dict[str, dict], alphas: list[float]) -> list[str]:
    """The issue's two goals, checked on this run's figures (met or not, and by how much)."""
    base = rows["target_only"]
    lo, hi = base["maj_ci"]
    out = []
    hits = [(a, rows[f"a1-a{a:g}"]) for a in alphas if f"a1-a{a:g}" in rows]
    within = [(a, r, base["wall"] / r["wall"]) for a, r in hits if lo <= (r["maj"] or 0) <= hi]
    best = max(within, key=lambda t: t[2], default=None)
    if best and best[2] >= 1.5:
        out.append(f"goal 1 MET: a1 at α={best[0]:g}: maj@N {fmt(best[1]['maj'])} within target_only's "
                   f"[{fmt(lo)}, {fmt(hi)}] at {best[2]:.2f}x lower wall time")
    else:
        detail = (f"best within the interval: α={best[0]:g} at {best[2]:.2f}x" if best
                  else "no α reached target_only's interval")
        out.append(f"goal 1 NOT MET (≥1.5x at target_only accuracy): {detail}")
    for a, r in hits:
        sync = rows.get(f"sync-a{a:g}")
        if sync and r["wall"] and sync["wall"]:
            ratio = sync["wall"] / r["wall"]
            out.append(f"goal 2 at α={a:g}: async {ratio:.2f}x sync's speed ({'MET' if ratio >= 1.3 else 'not met'}, "
                       f"goal 1.3x); realized takeover: a1 {fmt(r['takeover_rate'])}, sync {fmt(sync['takeover_rate'])}")
    # sync takes over ceil(α N) of N steps a turn, a1 about α: pair each sync run with the a1 run of the
    # nearest realized takeover rate, the comparison the goal asks for
    for a in alphas:
        sync = rows.get(f"sync-a{a:g}")
        rated = [(b, r) for b, r in hits if r["takeover_rate"] is not None and r["wall"]]
        if not sync or sync["takeover_rate"] is None or not rated:
            continue
        b, r = min(rated, key=lambda t: abs(t[1]["takeover_rate"] - sync["takeover_rate"]))
        out.append(f"goal 2, matched rates: sync α={a:g} ({fmt(sync['takeover_rate'])} taken over) vs a1 α={b:g} "
                   f"({fmt(r['takeover_rate'])}): async {sync['wall'] / r['wall']:.2f}x sync's speed")
    return out


def plot(rows: dict[str, dict], alphas: list[float], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.5, 4.5))
    ax = fig.subplots()
    for method, color in (("a1", "C0"), ("sync", "C1")):
        pts = [(rows[f"{method}-a{a:g}"], a) for a in alphas if f"{method}-a{a:g}" in rows]
        if pts:
            ax.errorbar([r["wall"] for r, _ in pts], [r["maj"] for r, _ in pts],
                        yerr=[[r["maj"] - r["maj_ci"][0] for r, _ in pts], [r["maj_ci"][1] - r["maj"] for r, _ in pts]],
                        fmt="o-", color=color, label=method, capsize=3)
            for r, a in pts:
                ax.annotate(f"α={a:g}", (r["wall"], r["maj"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    for name, color in (("target_only", "C3"), ("draft_only", "C2")):
        if name in rows:
            r = rows[name]
            ax.errorbar([r["wall"]], [r["maj"]], yerr=[[r["maj"] - r["maj_ci"][0]], [r["maj_ci"][1] - r["maj"]]],
                        fmt="s", color=color, label=name, capsize=3)
    ax.set(xlabel="wall time (s)", ylabel="maj@N", ylim=(0, 1.05), title="arith: accuracy vs cost (95% CI)")
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=120, bbox_inches="tight")


def compare(target, draft, draft_name: str, *, out: Path, dataset: str, limit: int, samples: int,
            alphas: list[float], methods: list[str], max_tokens: int, step_tokens: int, turns: int,
            target_name: str, progress: bool = True, data: Optional[str] = None) -> str:
    """Run every method (and α) into out/<method>-a<α> with fresh engines on the loaded `target` and
    `draft` (LoadedModels), then `a1 report` over them; returns (and writes to out/comparison.md) the
    comparison table with the goals checked. `data`: a JSONL file of questions instead of `dataset`."""
    import torch

    from a1.eval.report import write_report
    from a1.eval.runner import EvalSettings, run_eval
    from a1.llm import LLM

    plan = [(m, None) for m in methods if m in ("target_only", "draft_only")]
    plan += [(m, a) for m in methods if m in ("sync", "a1") for a in alphas]
    common = dict(dataset=dataset, data=data, limit=limit, num_samples=samples, max_tokens=max_tokens,
                  step_tokens=step_tokens, max_turns=turns, target=target_name, progress=progress)
    rows: dict[str, dict] = {}
    started = time.perf_counter()
    for method, alpha in plan:
        name = method if alpha is None else f"{method}-a{alpha:g}"
        own = "self" if method == "target_only" else draft_name  # target_only needs no draft
        settings = EvalSettings.build(method=method, draft=own, out=str(out / name), **common,
                                      **({} if alpha is None else {"alpha": alpha}))
        print(f"== {name}", flush=True)
        llm = LLM(target, draft=None if own == "self" else draft, seed=settings.policy.seed)  # fresh engines
        run_eval(settings, llm=llm)
        rows[name] = run_row(name, out / name)
    report = write_report([out / name for name in rows], out / "report")
    base = rows.get("target_only")
    lines = [f"# bench_a1: {dataset}, {limit} questions x N={samples}, draft {draft_name}",
             f"machine: {cpu_model()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}; "
             f"load average at the end {os.getloadavg()[0]:.1f}; total {time.perf_counter() - started:.0f} s", ""]
    if base:
        lines += [table(list(rows.values()), base), ""] + goals(rows, alphas)
        plot(rows, alphas, out / "accuracy_vs_cost.png")
    text = "\n".join(lines) + "\n"
    (out / "comparison.md").write_text(text)
    print(text + f"\nwrote {out / 'comparison.md'}, {out / 'accuracy_vs_cost.png'} and {report}")
    return text


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", default="smollm2-135m")
    parser.add_argument("--draft", required=True, help="the cheap draft: a distilled DIR or self:skip=A-B")
    parser.add_argument("--dataset", default="arith")
    parser.add_argument("--limit", type=int, default=40, help="test questions")
    parser.add_argument("--samples", type=int, default=8, help="N samples per question")
    parser.add_argument("--alphas", default="0.1,0.2,0.3,0.5", help="α values of sync and a1")
    parser.add_argument("--methods", default="target_only,draft_only,sync,a1")
    parser.add_argument("--max-tokens", type=int, default=192)
    parser.add_argument("--step-tokens", type=int, default=48)
    parser.add_argument("--turns", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--out", default="runs/bench_a1")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()
    import dataclasses

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from a1.models.draft_spec import load_draft
    from a1.models.loader import load_model

    target = dataclasses.replace(load_model(args.target), source=args.target)  # runs name it as given
    draft = load_draft(args.draft, target, name="--draft") or load_model(args.draft)
    compare(target, draft, args.draft, out=Path(args.out), dataset=args.dataset, limit=args.limit,
            samples=args.samples, alphas=[float(a) for a in args.alphas.split(",")],
            methods=[m.strip() for m in args.methods.split(",")], max_tokens=args.max_tokens,
            step_tokens=args.step_tokens, turns=args.turns, target_name=args.target, progress=not args.no_progress)
    return 0


if __name__ == "__main__":
    sys.exit(main())
