"""Markdown tables over runs: every run side by side, and the paper's speed-up over target_only.

Numbers come from each run's summary.json (metrics of a1.eval.metrics.summarize) or, for a run
that did not finish, from its sample records; a figure a run does not have is shown as "—",
never filled in.
"""
from __future__ import annotations

from typing import Optional, Sequence

from a1.eval.rejection import stratum_order
from a1.eval.results import Run
from a1.eval.timings import comparable, invocation_timings

CONDITIONAL = ("per-question", "per_question")
TESTING_METHODS = ("a1", "paper", "reference")  # methods that test draft steps against calibration


def fmt_pct(x: Optional[float]) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def fmt_int(x: Optional[float]) -> str:
    return "—" if x is None else f"{int(round(x)):,}"


def fmt_float(x: Optional[float], digits: int = 2) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def fmt_ratio(x: Optional[float]) -> str:
    if x is None:
        return "—"
    return "∞" if x == float("inf") else f"{x:.2f}×"


def rejection_cell(run: Run) -> str:
    overall = (run.metrics.get("rejection") or {}).get("overall") or {}
    if not overall.get("tested"):
        return "—"
    return f"{fmt_pct(overall['rate'])} [{fmt_pct(overall['ci_low'])}, {fmt_pct(overall['ci_high'])}]"


def clustered_cell(entry: dict) -> str:
    """The question-clustered (cluster-robust) interval of a rejection entry, or why there is none."""
    if not entry.get("tested"):
        return "—"
    if entry.get("ci_cluster_low") is None:
        return "— (< 2 questions)" if "ci_cluster_low" in entry else "— (not recorded)"
    return f"[{fmt_pct(entry['ci_cluster_low'])}, {fmt_pct(entry['ci_cluster_high'])}]"


def _cp_cell(entry: dict) -> str:
    return "—" if not entry.get("tested") else f"[{fmt_pct(entry['ci_low'])}, {fmt_pct(entry['ci_high'])}]"


def strata_table(run: Run) -> str:
    """One row per stratum (then per attempt, then overall) of one run: tests, warm-up share,
    rejection rate with its Clopper-Pearson, question-clustered (cluster-robust) and cluster
    bootstrap intervals, the mean working level and the level α."""
    rejection = run.metrics.get("rejection") or {}
    header = ["stratum", "tested", "warm-up share", "rejection rate", "Clopper-Pearson 95%",
              "question-clustered 95%", "cluster bootstrap 95%", "mean level", "α"]
    rows = []
    groups = [("", rejection.get("by_stratum") or {}), ("attempt ", rejection.get("by_attempt") or {})]
    for prefix, entries in groups:  # numeric order: summary.json's keys may come back sorted as text
        for name, e in sorted(entries.items(), key=lambda item: stratum_order(item[0])):
            rows.append(_strata_row(prefix + name, e, rejection.get("alpha")))
    if rejection.get("overall"):
        rows.append(_strata_row("**all**", rejection["overall"], rejection.get("alpha")))
    return _table(header, rows) if rows else "no tested step with a p-value."


def _strata_row(name: str, e: dict, alpha) -> list[str]:
    boot = ("—" if e.get("ci_bootstrap_low") is None
            else f"[{fmt_pct(e['ci_bootstrap_low'])}, {fmt_pct(e['ci_bootstrap_high'])}]")
    share = e.get("warmup_share")
    if share is None and e.get("tested"):
        share = e.get("warmup", 0) / e["tested"]
    return [name, fmt_int(e.get("tested")), fmt_pct(share), fmt_pct(e.get("rate")), _cp_cell(e), clustered_cell(e),
            boot, fmt_float(e.get("level_mean"), 3), "—" if alpha is None else f"{alpha:g}"]


def wall_cell(run: Run) -> str:
    if run.wall_time is None:
        return f"unfinished ({len(run.records)} samples)"
    return f"{run.wall_time:.1f}"


def tokens_per_second(run: Run) -> Optional[float]:
    m = run.metrics
    if m.get("tokens_per_second") is not None:
        return m["tokens_per_second"]
    wall = run.wall_time
    return m["generated_tokens"] / wall if wall and m.get("generated_tokens") is not None else None


def _esc(text: object) -> str:
    return str(text).replace("|", "\\|")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_esc(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def comparison_table(runs: Sequence[Run]) -> str:
    """One row per run: settings that tell runs apart, accuracies, rejection, tokens, speed."""
    header = ["run", "method", "dataset", "calibration", "α", "N", "mean acc", "pass@N", "maj@N",
              "takeover rate", "rejection rate [95% CI]", "question-clustered 95% CI", "draft tokens",
              "target tokens", "wall time (s)", "tok/s"]
    rows = []
    for run in runs:
        m = run.metrics
        rows.append([
            run.name, run.setting("method", "—"), run.setting("dataset", "—"),
            run.setting("calibration", "—"), run.setting("alpha", "—"), run.setting("num_samples", "—"),
            fmt_pct(m.get("mean_accuracy")), fmt_pct(m.get("pass_at_n")), fmt_pct(m.get("maj_at_n")),
            fmt_pct(m.get("takeover_rate")), rejection_cell(run),
            clustered_cell((m.get("rejection") or {}).get("overall") or {}), fmt_int(m.get("draft_tokens")),
            fmt_int(m.get("target_tokens")), wall_cell(run), fmt_float(tokens_per_second(run), 1),
        ])
    return _table(header, rows)


def calibration_class(run: Run) -> str:
    """'conditional' (per-question strata), 'marginal' (online / file), or 'none' for methods
    that test no step against calibration (target_only, draft_only, sync's ranking)."""
    if run.setting("method") not in TESTING_METHODS:
        return "none"
    return "conditional" if run.setting("calibration") in CONDITIONAL else "marginal"


_CLASS_TITLE = {
    "marginal": "marginal calibration (online / file)",
    "conditional": "conditional calibration (per-question)",
    "none": "no calibration (the method tests no step)",
}


def _ratio(base: Optional[float], value: Optional[float]) -> Optional[float]:
    if base is None or value is None:
        return None
    return float("inf") if value == 0 else base / value


def run_timings(run: Run) -> dict:
    """The run's time over its invocations (summary.json's, else computed from run.json)."""
    timings = (run.summary or {}).get("timings")
    return timings if isinstance(timings, dict) else invocation_timings(run.invocations, run.records)


def speedup_table(runs: Sequence[Run]) -> str:
    """Per dataset and N: speed-up of each method over the target_only run of the same dataset
    and N, as wall-time ratio (target_only wall / run wall) and target-token ratio (target_only
    target tokens / run target tokens: how many fewer tokens the target decoded), with both
    runs' accuracies side by side. Marginal and conditional calibration get separate tables. A
    wall-time speed-up needs both runs on one and the same machine (every invocation of each:
    a1.eval.timings); otherwise it says why not."""
    groups: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        key = (str(run.setting("dataset", "—")), str(run.setting("num_samples", "—")))
        groups.setdefault(key, []).append(run)
    out: list[str] = []
    header = ["run", "method", "α", "wall time (s)", "speed-up (wall)", "target tokens",
              "target-token ratio", "pass@N", "maj@N", "target_only pass@N", "target_only maj@N"]
    for (dataset, n), members in sorted(groups.items()):
        out.append(f"### {dataset}, N={n}")
        bases = [r for r in members if r.setting("method") == "target_only"]
        finished = [r for r in bases if r.wall_time is not None]
        base = (finished or bases or [None])[0]
        others = [r for r in members if r.setting("method") != "target_only"]
        if base is None:
            out.append(f"no target_only run for {dataset} with N={n}: no speed-up is computed.")
        else:
            bm = base.metrics
            out.append(
                f"baseline: target_only run `{base.name}`: wall time {wall_cell(base)} s, "
                f"target tokens {fmt_int(bm.get('target_tokens'))}, pass@N {fmt_pct(bm.get('pass_at_n'))}, "
                f"maj@N {fmt_pct(bm.get('maj_at_n'))}"
                + (f" ({len(bases)} target_only runs; the first finished one is used)"
                   if len(bases) > 1 else "")
            )
        if not others:
            out.append("\nno other method was run for this dataset and N.\n")
            continue
        for cls in ("marginal", "conditional", "none"):
            chosen = [r for r in others if calibration_class(r) == cls]
            if not chosen:
                continue
            rows = []
            for run in chosen:
                m = run.metrics
                if base is None:
                    wall = tok = "no target_only run"
                    bpass = bmaj = "no target_only run"
                else:
                    bm = base.metrics
                    why_not = comparable(run_timings(run), run_timings(base))
                    wall = f"not comparable: {why_not}" if why_not else fmt_ratio(_ratio(base.wall_time, run.wall_time))
                    tok = fmt_ratio(_ratio(bm.get("target_tokens"), m.get("target_tokens")))
                    bpass, bmaj = fmt_pct(bm.get("pass_at_n")), fmt_pct(bm.get("maj_at_n"))
                rows.append([run.name, run.setting("method", "—"), run.setting("alpha", "—"),
                             wall_cell(run), wall, fmt_int(m.get("target_tokens")), tok,
                             fmt_pct(m.get("pass_at_n")), fmt_pct(m.get("maj_at_n")), bpass, bmaj])
            out += ["", f"**{_CLASS_TITLE[cls]}**", "", _table(header, rows), ""]
    return "\n".join(out).strip() + "\n"
