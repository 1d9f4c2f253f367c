"""What an evaluation run writes and prints besides the records' store: the record of one sample,
summary.json (metrics over every record, cost per phase, engine counters), the progress bar with
live accuracy and takeover rate, and the closing lines of `a1 eval`."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

from a1.eval.metrics import is_tested_step

if TYPE_CHECKING:
    from a1.eval.runner import EvalSettings

CALIBRATION_KINDS = ("online", "per-question")


def build_summary(settings: EvalSettings, records: list[dict], llm, wall: Optional[float], barrier_wait: float,
                  new_samples: int) -> dict:
    """summary.json: metrics over every record of the run directory; wall_time, tokens/s, barrier
    wait and engine counters are this invocation's (a resumed run's earlier time is not known)."""
    from a1.calibration import Calibrator, clopper_pearson
    from a1.eval.metrics import summarize

    new_records = records[len(records) - new_samples:] if new_samples else []
    metrics = summarize(records, alpha=settings.alpha_resample or settings.alpha)
    new_tokens = sum(r["num_tokens"] for r in new_records)
    metrics["wall_time"] = wall
    metrics["tokens_per_second"] = new_tokens / wall if new_samples and wall else None
    tested, takeovers = metrics["tested_steps"], metrics["takeovers"]
    low, high = clopper_pearson(takeovers, tested)
    engine = llm.get_metrics() if llm is not None else {}
    draft_engine = engine.pop("draft", None)
    engine.pop("speculative", None)
    summary = {
        "summary": metrics, "wall_time": wall, "barrier_wait": barrier_wait,
        "phase_tokens": phase_tokens(records),
        "engine": {"target": engine, **({"draft": draft_engine} if draft_engine is not None else {}),
                   "self_mode": None if llm is None else llm.self_mode},
        "takeover": {"alpha": settings.alpha, "tested": tested, "takeovers": takeovers,
                     "rate": metrics["takeover_rate"], "ci_low": low if tested else None,
                     "ci_high": high if tested else None},
        "invocation": {"samples": new_samples, "resumed_samples": len(records) - new_samples,
                       "generated_tokens": new_tokens},
        "calibration": {"kind": settings.calibration if settings.calibration in CALIBRATION_KINDS else "file"},
    }
    if settings.calibration not in CALIBRATION_KINDS:
        cal = Calibrator.load(settings.calibration)
        sizes = [len(cal.scores(k)) for k in cal.strata()]
        summary["calibration"].update(file=settings.calibration, scores=min(sizes) if sizes else 0,
                                      total_scores=sum(sizes))
    return summary


def make_record(problem, sample) -> dict:
    """One line of samples.jsonl for a finished SampleResult of `problem`, graded."""
    from a1.eval.grading import is_equivalent

    steps = [{k: getattr(s, k) for k in STEP_KEYS} for s in sample.steps]
    return {
        "question_id": problem.id, "sample_index": sample.index, "dataset": problem.dataset, "gold": problem.answer,
        "answer": sample.answer, "correct": is_equivalent(sample.answer, problem.answer),
        "finish_reason": sample.finish_reason, "num_tokens": len(sample.token_ids),
        "draft_tokens": sample.draft_tokens, "target_tokens": sample.target_tokens,
        "score_tokens": sample.score_tokens, "latency": sample.latency, "steps": steps, "text": sample.text,
    }


STEP_KEYS = ("turn", "attempt", "stratum", "score", "p_value", "decision", "num_tokens", "by", "kept", "in_warmup")


def phase_tokens(records: list[dict]) -> dict:
    """Tokens per phase: drafted (kept or rolled back), prefilled by the target to score draft
    steps, and decoded by the target (its takeover steps and forced answers)."""
    steps = [s for r in records for s in r["steps"]]
    return {"draft_decode": sum(s["num_tokens"] for s in steps if s["by"] == "draft"),
            "target_score": sum(r["score_tokens"] for r in records),
            "target_decode": sum(s["num_tokens"] for s in steps if s["by"] == "target")}


class EvalProgress:
    """A tqdm bar over the samples still to run, showing the run's accuracy and takeover rate."""

    def __init__(self, records: list[dict], total: int, settings: EvalSettings, enabled: bool = True) -> None:
        self.correct = sum(r["correct"] for r in records)
        self.samples = len(records)
        self.tested = self.takeovers = 0
        for r in records:
            self._count(r)
        self.alpha, self.bar = settings.alpha, None
        if enabled and total:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=f"a1 eval {settings.method}", unit="sample", dynamic_ncols=True)
            self._postfix()

    def _count(self, record: dict) -> None:
        tested = [s for s in record["steps"] if is_tested_step(s)]
        self.tested += len(tested)
        self.takeovers += sum(s["decision"] == "takeover" for s in tested)

    def _postfix(self) -> None:
        acc = f"{self.correct / self.samples:.3f}" if self.samples else "-"
        rate = f"{self.takeovers / self.tested:.3f}" if self.tested else "-"
        self.bar.set_postfix_str(f"acc={acc} takeover={rate} (alpha={self.alpha:g})", refresh=False)

    def add(self, record: dict) -> None:
        self.samples += 1
        self.correct += record["correct"]
        self._count(record)
        if self.bar is not None:
            self._postfix()
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _pct(x: Optional[float]) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def summary_lines(summary: dict, settings: EvalSettings, run_settings: dict, out: Path) -> list[str]:
    """What `a1 eval` prints at the end: accuracy, takeover rate vs alpha, cost split, files."""
    m, t, phases = summary["summary"], summary["takeover"], summary["phase_tokens"]
    n = settings.samples
    lines = [
        f"{m['questions']} questions x {n} samples ({m['samples']} recorded) of {settings.dataset_name}, "
        f"method {settings.method}, target {run_settings['target']}, draft {run_settings['draft']}",
        f"accuracy: mean {_pct(m['mean_accuracy'])}  pass@{n} {_pct(m['pass_at_n'])}  maj@{n} {_pct(m['maj_at_n'])}"
        f"  (answered {_pct(m['answered'])})",
    ]
    if t["tested"]:
        lines.append(f"takeover rate: {_pct(t['rate'])} of {t['tested']} tested steps, 95% CI "
                     f"[{_pct(t['ci_low'])}, {_pct(t['ci_high'])}] vs alpha {100 * t['alpha']:g}%")
    else:
        lines.append(f"takeover rate: no step was tested (method {settings.method})")
    tps = m.get("tokens_per_second")
    lines.append(
        f"tokens: {m['generated_tokens']} generated ({m['draft_tokens']} draft, {m['target_tokens']} target); "
        f"phases: draft decode {phases['draft_decode']}, target score {phases['target_score']}, "
        f"target decode {phases['target_decode']}"
    )
    if summary["wall_time"] is not None:
        lines.append(f"time: {summary['wall_time']:.1f} s for {summary['invocation']['samples']} samples"
                     + (f", {tps:.1f} tokens/s" if tps else ""))
    lines.append(f"files: {out}/run.json, {out}/samples.jsonl, {out}/summary.json")
    return lines

