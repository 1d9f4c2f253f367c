"""benchmarks/bench_a1.py's comparison on the tiny pair: every method and α runs into its own run
directory through `a1 eval`'s machinery, `a1 report` covers them all, and the table and goal lines
come from those runs' figures (target_only decodes no draft token, draft_only no target token)."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiny_cli import tiny_llm  # noqa: E402

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "bench_a1.py"
QUESTIONS = [("q1", "What is 1+1?", "2"), ("q2", "What is 2+3?", "5")]


def load_script():
    spec = importlib.util.spec_from_file_location("bench_a1", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_comparison_runs_every_method_and_reads_its_figures_from_the_runs(tmp_path):
    bench = load_script()
    data = tmp_path / "q.jsonl"
    data.write_text("".join(json.dumps({"id": i, "problem": p, "answer": a}) + "\n" for i, p, a in QUESTIONS))
    pair = tiny_llm()
    target, draft = pair.loaded, pair.draft_loaded
    out = tmp_path / "bench"
    text = bench.compare(target, draft, "tiny-draft", out=out, dataset="arith", data=str(data), limit=2, samples=2,
                         alphas=[0.3], methods=["target_only", "draft_only", "sync", "a1"], max_tokens=48,
                         step_tokens=12, turns=4, target_name="tiny-target", progress=False)
    names = ["target_only", "draft_only", "sync-a0.3", "a1-a0.3"]
    for name in names:
        assert (out / name / "summary.json").is_file() and f"| {name} |" in text
    assert (out / "report" / "report.md").is_file() and (out / "accuracy_vs_cost.png").is_file()
    rows = {name: bench.run_row(name, out / name) for name in names}
    assert rows["target_only"]["draft_tokens"] == 0 and rows["target_only"]["target_tokens"] > 0
    assert rows["draft_only"]["target_tokens"] == 0 and rows["draft_only"]["draft_tokens"] > 0
    assert 0 <= rows["a1-a0.3"]["takeover_rate"] <= 1 and rows["sync-a0.3"]["takeover_rate"] is not None
    assert rows["a1-a0.3"]["questions"] == 2 and rows["a1-a0.3"]["samples"] == 4
    assert "goal 1" in text and "goal 2 at α=0.3" in text
