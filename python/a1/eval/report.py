"""report.md + PNGs over one or more run directories of `a1 eval --out`.

    from a1.eval.report import write_report
    write_report([Path("runs/a1"), Path("runs/target")], Path("report"))

The report only restates what the runs recorded (and says when a figure is missing, a plot
cannot be drawn, or a run is unfinished); the roofline section is an estimate and lists its
assumptions next to the numbers.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence, Union

from a1.eval.plots import write_plots
from a1.eval.results import Run, load_run
from a1.eval.roofline import ASSUMPTIONS, PHASES, Roofline, arithmetic_intensity, measure_roofline
from a1.eval.startup import check_out_dir
from a1.eval.tables import comparison_table, fmt_float, fmt_int, speedup_table, strata_table

__all__ = ["write_report", "comparison_table", "speedup_table", "roofline_table", "run_list"]

REPORT_FILE = "report.md"


def _model_line(run: Run, role: str) -> str:
    model = (run.models or {}).get(role) or {}
    name = model.get("name") or run.setting(role) or "—"
    params = model.get("params")
    return f"{name} ({params / 1e9:.2f} B params)" if isinstance(params, (int, float)) else str(name)


def run_list(runs: Sequence[Run]) -> str:
    """One bullet per run: where it is, what it ran, whether it finished."""
    lines = []
    for run in runs:
        state = ("finished" if run.summary is not None
                 else f"**unfinished**: {len(run.records)} samples recorded, no summary.json")
        lines.append(
            f"- `{run.name}` ({run.path}): method {run.setting('method', '—')}, dataset "
            f"{run.setting('dataset', '—')}, N={run.setting('num_samples', '—')}, "
            f"α={run.setting('alpha', '—')}, "
            f"calibration {run.setting('calibration', '—')}; target {_model_line(run, 'target')}, "
            f"draft {_model_line(run, 'draft')}; {state}"
        )
    return "\n".join(lines)


def _sci(x: Optional[float]) -> str:
    return "—" if x is None else f"{x:.3g}"


def roofline_table(runs: Sequence[Run], roofline: Roofline) -> str:
    """Per run and phase: counts, the FLOP/byte estimate, T_c, T_m, T_s and r = T_c/(T_m+T_s)."""
    header = ["run", "phase", "tokens", "forwards", "FLOPs", "bytes", "FLOP/byte", "T_c (s)",
              "T_m (s)", "T_s (s)", "r", "bound", "how"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for run in runs:
        table = arithmetic_intensity(run, roofline)
        for phase in (*PHASES, "total"):
            row = table[phase]
            cells = [run.name, phase, fmt_int(row["tokens"]), fmt_int(row["forwards"]),
                     _sci(row["flops"]), _sci(row["bytes"]), fmt_float(row["intensity"], 1),
                     _sci(row["t_compute"]), _sci(row["t_memory"]), _sci(row["t_sync"]),
                     fmt_float(row["ratio"], 2), row["bound"] or "—", row["note"]]
            lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def _machines(runs: Sequence[Run]) -> str:
    seen = sorted({f"{r.machine.get('cpu', '?')} ({r.machine.get('cores', '?')} cores)"
                   for r in runs if r.machine})
    return ", ".join(seen) if seen else "not recorded"


def write_report(
    run_dirs: Sequence[Union[str, os.PathLike]],
    out_dir: Union[str, os.PathLike],
    *,
    roofline: Optional[Roofline] = None,
    roofline_seconds: float = 1.0,
) -> Path:
    """Write out_dir/report.md and its PNGs from the run directories; returns report.md's path.

    roofline: peaks to estimate against; measured here (about roofline_seconds) when None."""
    if not run_dirs:
        raise ValueError("run_dirs is empty: give at least one run directory of `a1 eval --out`")
    runs = [load_run(d) for d in run_dirs]
    check_out_dir(Path(out_dir))  # before the roofline is measured and the plots drawn
    names = [r.name for r in runs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"run_dirs has runs with the same directory name {dup}: rows would be ambiguous")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if roofline is None:
        roofline = measure_roofline(roofline_seconds)

    md = ["# a1 evaluation report", "", f"{len(runs)} run(s).", "", "## Runs", "", run_list(runs), "",
          "## Comparison", "",
          "mean acc: mean correctness of single samples; pass@N: a question has a correct sample; "
          "maj@N: the majority answer is correct. Rejection rate: resample + takeover decisions among "
          "tested steps, with its 95% Clopper-Pearson interval and the question-clustered (cluster-robust) "
          "one, which allows for a question's steps being rejected together.", "",
          comparison_table(runs), "",
          "## Rejection per stratum", "",
          "Per run: each stratum's tests, the share decided in warm-up (the stratum held too few scores of "
          "its own: the warm-up rule decided), the rejection rate with three 95% intervals and the mean "
          "working level (α with a fixed level; the adaptive level's mean otherwise). Clopper-Pearson treats "
          "every test as independent; the question-clustered (cluster-robust) and cluster-bootstrap "
          "intervals resample questions, whose steps are rejected together: trust those.", ""]
    for run in runs:
        md += [f"### {run.name}", "", strata_table(run), ""]
    md += ["## Speed-up over target_only", "",
           "speed-up (wall) = target_only wall time / run wall time; target-token ratio = target_only "
           "target tokens / run target tokens (tokens the target decoded; scoring prefill excluded).", "",
           speedup_table(runs), "## Plots", ""]
    for outcome in write_plots(runs, out):
        md.append(f"### {outcome.title}")
        md.append("")
        if outcome.path is None:
            md.append(f"Not drawn: {outcome.note}.")
        else:
            md += [f"![{outcome.title}]({outcome.path.name})", "", outcome.note + "."]
        md.append("")
    md += ["## Roofline estimate", "",
           f"Measured with torch on {roofline.device} of the machine writing this report: peak fp32 "
           f"matmul {roofline.peak_flops / 1e9:.1f} GFLOP/s, copy bandwidth {roofline.bandwidth / 1e9:.1f} "
           f"GB/s, balance {roofline.balance:.1f} FLOP/byte. Runs' machines: {_machines(runs)}. "
           "r > 1: compute-bound; r < 1: memory- (or barrier-) bound. An estimate from counts, "
           "not a profile.", "",
           roofline_table(runs, roofline), "", "Assumptions:", ""]
    md += [f"- {a}" for a in ASSUMPTIONS]
    path = out / REPORT_FILE
    path.write_text("\n".join(md) + "\n")
    return path
