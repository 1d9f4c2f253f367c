"""Markdown table of a pytest-benchmark JSON file: median per benchmark and the speed-up against
the baseline of its group (the twin, SDPA, transformers), all from the same run.

Usage: python benchmarks/report.py benchmarks/latest.json
"""
import json
import platform
import sys
from collections import defaultdict

BASELINE_MARKERS = ("twin", "sdpa", "transformers")


def _is_baseline(name: str) -> bool:
    return any(marker in name for marker in BASELINE_MARKERS)


def render(path: str) -> str:
    with open(path) as f:
        data = json.load(f)
    groups = defaultdict(list)
    for bench in data["benchmarks"]:
        groups[bench["group"] or bench["name"]].append(bench)
    machine = data.get("machine_info", {})
    lines = [
        f"Machine: {machine.get('cpu', {}).get('brand_raw', platform.processor())}, "
        f"{machine.get('cpu', {}).get('count', '?')} cores; run {data.get('datetime', '?')}",
        "",
        "| group | benchmark | median (ms) | speed-up vs baseline | extra |",
        "|---|---|---:|---:|---|",
    ]
    for group, benches in sorted(groups.items()):
        baseline = next((b for b in benches if _is_baseline(b["name"])), None)
        for bench in sorted(benches, key=lambda b: b["name"]):
            median_ms = bench["stats"]["median"] * 1e3
            ratio = "baseline" if bench is baseline else (
                f"{baseline['stats']['median'] / bench['stats']['median']:.2f}x" if baseline else "-")
            extra = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                              for k, v in bench.get("extra_info", {}).items())
            lines.append(f"| {group} | {bench['name']} | {median_ms:.3f} | {ratio} | {extra} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/latest.json"))
