"""PNG figures of a report (matplotlib's object API on the Agg canvas: no pyplot, no global
backend switch, so importing this never changes a caller's matplotlib state).

Each plot function writes one PNG or raises SkipPlot with the reason the given runs cannot show
it (e.g. no run varies N); write_plots collects both so report.md can say why a plot is absent.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

from matplotlib.figure import Figure

from a1.eval.results import Run


class SkipPlot(Exception):
    """The runs given cannot show this plot; the message says why."""


@dataclass
class PlotOutcome:
    title: str
    path: Optional[Path]  # None when skipped
    note: str  # caption, or the reason it was skipped


def _tested(run: Run) -> bool:
    return bool(((run.metrics.get("rejection") or {}).get("overall") or {}).get("tested"))


def _alpha(run: Run) -> Optional[float]:
    a = run.setting("alpha")
    return float(a) if isinstance(a, (int, float)) and not isinstance(a, bool) else None


def calibration_size(run: Run) -> Optional[int]:
    """Calibration scores behind the run's p-values (the smallest stratum's), for the conformal
    band; from summary.json "calibration": {"scores": n} or setting "calibration_size"."""
    n = ((run.summary or {}).get("calibration") or {}).get("scores", run.setting("calibration_size"))
    return int(n) if isinstance(n, int) and not isinstance(n, bool) and n > 0 else None


def _errbar(entry: dict) -> tuple[float, list[list[float]]]:
    rate = entry["rate"]
    return rate, [[rate - entry["ci_low"]], [entry["ci_high"] - rate]]


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=110)
    return path


def rejection_vs_alpha(runs: Sequence[Run], path: Path) -> str:
    """Empirical rejection rate of tested steps vs α, with Clopper-Pearson bars, the y = x line
    and the conformal band [α − 1/(n+1), α] for runs that record their calibration size n."""
    chosen = [r for r in runs if _tested(r) and _alpha(r) is not None]
    if not chosen:
        raise SkipPlot("no run tested a step (methods a1/reference) with an α setting")
    fig = Figure(figsize=(6, 5))
    ax = fig.add_subplot()
    top = max(max(_alpha(r) for r in chosen) * 1.5, 0.05)
    ax.plot([0, top], [0, top], "k--", lw=1, label="y = α")
    sizes = sorted({n for n in map(calibration_size, chosen) if n is not None})
    for n in sizes:
        ax.fill_between([0, top], [-1 / (n + 1), top - 1 / (n + 1)], [0, top], alpha=0.15,
                        label=f"conformal band, n={n}")
    placed: dict[float, int] = {}
    for run in chosen:
        rate, err = _errbar(run.metrics["rejection"]["overall"])
        k = placed[_alpha(run)] = placed.get(_alpha(run), -1) + 1
        x = _alpha(run) + top * 0.012 * ((k + 1) // 2) * (-1) ** k  # runs at one α side by side
        ax.errorbar([x], [rate], yerr=err, fmt="o", capsize=4,
                    label=f"{run.name} ({run.setting('method')})")
    ax.set(xlim=(0, top), ylim=(0, None), xlabel="α", ylabel="rejection rate of tested steps",
           title="Rejection rate vs α (95% Clopper-Pearson)")
    ax.legend(fontsize=7)
    _save(fig, path)
    missing = [r.name for r in chosen if calibration_size(r) is None]
    return ("conformal band not drawn for " + ", ".join(missing) +
            " (calibration size not recorded)") if missing else "conformal band drawn per calibration size"


def rejection_by_stratum(runs: Sequence[Run], path: Path) -> str:
    """Rejection rate per turn bucket (stratum) with CI bars and each run's α."""
    chosen = [r for r in runs if _tested(r)]
    if not chosen:
        raise SkipPlot("no run tested a step (methods a1/reference)")
    strata: list[str] = []
    for run in chosen:
        for s in run.metrics["rejection"]["by_stratum"]:
            if s not in strata:
                strata.append(s)
    fig = Figure(figsize=(max(6, 1 + 0.8 * len(strata)), 4.5))
    ax = fig.add_subplot()
    width = 0.8 / len(chosen)
    for i, run in enumerate(chosen):
        by = run.metrics["rejection"]["by_stratum"]
        xs, ys, lo, hi = [], [], [], []
        for j, s in enumerate(strata):
            if by.get(s, {}).get("tested"):
                rate, err = _errbar(by[s])
                xs.append(j - 0.4 + width * (i + 0.5))
                ys.append(rate)
                lo.append(err[0][0])
                hi.append(err[1][0])
        line = ax.errorbar(xs, ys, yerr=[lo, hi], fmt="o", capsize=3, label=run.name)
        if _alpha(run) is not None:
            ax.axhline(_alpha(run), color=line[0].get_color(), ls="--", lw=1)
    ax.set_xticks(range(len(strata)), strata)
    ax.set(xlabel="stratum (turn bucket)", ylabel="rejection rate", ylim=(0, None),
           title="Rejection rate per stratum (dashed: α)")
    ax.legend(fontsize=7)
    _save(fig, path)
    return "rejection per stratum; bars are 95% Clopper-Pearson intervals"


def accuracy_vs_cost(runs: Sequence[Run], path: Path) -> str:
    """maj@N accuracy against target tokens and against wall time, one colour per method."""
    chosen = [r for r in runs if r.metrics.get("maj_at_n") is not None]
    if not chosen:
        raise SkipPlot("no run has a sample")
    fig = Figure(figsize=(10, 4.5))
    axes = fig.subplots(1, 2)
    methods = sorted({str(r.setting("method")) for r in chosen})
    colors = {m: f"C{i}" for i, m in enumerate(methods)}
    for ax, xlabel, cost in ((axes[0], "target tokens", lambda r: r.metrics.get("target_tokens")),
                             (axes[1], "wall time (s)", lambda r: r.wall_time)):
        seen: set[str] = set()
        for run in chosen:
            x, method = cost(run), str(run.setting("method"))
            if x is None:
                continue
            ax.scatter([x], [run.metrics["maj_at_n"]], color=colors[method],
                       label=None if method in seen else method)
            ax.annotate(run.name, (x, run.metrics["maj_at_n"]), fontsize=6)
            seen.add(method)
        ax.set(xlabel=xlabel, ylabel="maj@N", ylim=(0, 1.05))
        if seen:
            ax.legend(fontsize=7)
    fig.suptitle("Accuracy vs cost")
    _save(fig, path)
    unfinished = [r.name for r in chosen if r.wall_time is None]
    return ("unfinished runs have no wall time: " + ", ".join(unfinished)) if unfinished else "maj@N vs cost"


def _sweep_groups(runs: Sequence[Run], key: str) -> dict[str, list[Run]]:
    """Runs equal in every setting but `key`, with at least two values of `key`."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        if run.wall_time is None or not isinstance(run.setting(key), (int, float)):
            continue
        rest = {k: v for k, v in run.settings.items() if k != key}
        groups.setdefault(json.dumps(rest, sort_keys=True, default=str), []).append(run)
    return {k: v for k, v in groups.items() if len({r.setting(key) for r in v}) >= 2}


def sweep(runs: Sequence[Run], path: Path, key: str, label: str) -> str:
    """Wall time and barrier wait vs `key` (samples N or turns), one line per run group."""
    groups = _sweep_groups(runs, key)
    if not groups:
        raise SkipPlot(f"no finished runs that differ only in {label}")
    fig = Figure(figsize=(10, 4.5))
    axes = fig.subplots(1, 2)
    for i, members in enumerate(groups.values()):
        members = sorted(members, key=lambda r: r.setting(key))
        xs = [r.setting(key) for r in members]
        name = f"{members[0].setting('method')} / {members[0].setting('dataset')}"
        axes[0].plot(xs, [r.wall_time for r in members], "o-", color=f"C{i}", label=name)
        axes[1].plot(xs, [r.barrier_wait for r in members], "o-", color=f"C{i}", label=name)
    for ax, ylabel in zip(axes, ("wall time (s)", "barrier wait (sample-seconds)")):
        ax.set(xlabel=label, ylabel=ylabel, ylim=(0, None))
        if key == "num_samples":
            ax.set_xscale("log", base=2)
        values = sorted({r.setting(key) for v in groups.values() for r in v})
        ax.set_xticks(values, [f"{v:g}" for v in values])
        ax.minorticks_off()
        ax.legend(fontsize=7)
    fig.suptitle(f"Sweep over {label}")
    _save(fig, path)
    return f"{len(groups)} group(s) of runs equal in every setting but {label}"


PLOTS: list[tuple[str, str, Callable[[Sequence[Run], Path], str]]] = [
    ("rejection_vs_alpha.png", "Rejection rate vs α", rejection_vs_alpha),
    ("rejection_by_stratum.png", "Rejection rate per stratum", rejection_by_stratum),
    ("accuracy_vs_cost.png", "Accuracy vs cost", accuracy_vs_cost),
    ("sweep_samples.png", "Wall time and barrier wait vs N",
     lambda runs, path: sweep(runs, path, "num_samples", "N (samples)")),
    ("sweep_turns.png", "Wall time and barrier wait vs turns",
     lambda runs, path: sweep(runs, path, "max_turns", "turns")),
]


def write_plots(runs: Sequence[Run], out_dir: Path) -> list[PlotOutcome]:
    """Write every plot the runs can show into out_dir; skipped ones carry their reason."""
    outcomes = []
    for filename, title, plot in PLOTS:
        path = Path(out_dir) / filename
        try:
            note = plot(runs, path)
        except SkipPlot as skip:
            path.unlink(missing_ok=True)  # a stale PNG of an earlier report would mislead
            outcomes.append(PlotOutcome(title, None, str(skip)))
        else:
            outcomes.append(PlotOutcome(title, path, note))
    return outcomes
