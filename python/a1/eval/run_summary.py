"""What an evaluation run writes and prints besides the records' store: the record of one sample,
summary.json (metrics over every record, cost per phase, engine counters), the progress bar with
live accuracy and takeover rate, and the closing lines of `a1 eval`."""
from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from a1.eval.metrics import is_tested_step
from a1.eval.settings import CALIBRATION_KINDS

if TYPE_CHECKING:
    from a1.eval.settings import EvalSettings


def build_summary(settings: EvalSettings, records: list[dict], llm, invocations: list, new_samples: int) -> dict:
    """summary.json: metrics over every record of the run directory; wall time, tokens/s and
    barrier wait summed over every invocation of the run (run.json's: a resumed run counts the
    time of each one, a1.eval.timings); the engine counters are this invocation's."""
    from a1.calibration import Calibrator, clopper_pearson
    from a1.eval.metrics import summarize
    from a1.eval.timings import invocation_timings

    new_records = records[len(records) - new_samples:] if new_samples else []
    policy = settings.policy
    metrics = summarize(records, alpha=policy.alpha_resample or policy.alpha)
    new_tokens = sum(r["num_tokens"] for r in new_records)
    timings = invocation_timings(invocations, records)
    wall, barrier_wait = timings["wall_time"], timings["barrier_wait"]
    metrics["wall_time"] = wall
    metrics["tokens_per_second"] = timings["tokens_per_second"]
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
        "timings": timings,
        "takeover": {"alpha": policy.alpha, "tested": tested, "takeovers": takeovers,
                     "rate": metrics["takeover_rate"], "ci_low": low if tested else None,
                     "ci_high": high if tested else None},
        "invocation": {"samples": new_samples, "resumed_samples": len(records) - new_samples,
                       "generated_tokens": new_tokens},
        "calibration": {"kind": settings.calibration if settings.calibration in CALIBRATION_KINDS else "file",
                        "level": policy.level, "level_gamma": policy.level_gamma if policy.level == "adaptive" else None,
                        "warmup": policy.warmup, "attempt_strata": policy.attempt_strata},
    }
    if settings.calibration not in CALIBRATION_KINDS:
        cal = Calibrator.load(settings.calibration)
        sizes = [len(cal.scores(k)) for k in cal.strata()]
        summary["calibration"].update(file=settings.calibration, scores=min(sizes) if sizes else 0,
                                      total_scores=sum(sizes))
    return summary


def make_record(problem, sample) -> dict:
    """One line of samples.jsonl for a finished SampleResult of `problem`, graded."""
    from a1.answers.grading import is_equivalent

    steps = [{k: getattr(s, k) for k in STEP_KEYS} for s in sample.steps]
    return {
        "question_id": problem.id, "sample_index": sample.index, "dataset": problem.dataset, "gold": problem.answer,
        "answer": sample.answer, "correct": is_equivalent(sample.answer, problem.answer),
        "finish_reason": sample.finish_reason, "num_tokens": len(sample.token_ids),
        "draft_tokens": sample.draft_tokens, "target_tokens": sample.target_tokens,
        "score_tokens": sample.score_tokens, "latency": sample.latency, "steps": steps, "text": sample.text,
    }


# level / resample_level: the working levels a tested step was decided at (None when not tested);
# readers take them as optional (records written before them lack them)
STEP_KEYS = ("turn", "attempt", "stratum", "score", "p_value", "decision", "num_tokens", "by", "kept", "in_warmup",
             "level", "resample_level")


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
        self.alpha, self.bar = settings.policy.alpha, None
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
    n = settings.policy.num_samples
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
    timings = summary.get("timings") or {}
    if summary["wall_time"] is not None:
        runs = len(timings.get("invocations") or [])
        over = f" over {runs} invocations" if runs > 1 else ""
        lines.append(f"time: {summary['wall_time']:.1f} s for {timings.get('samples', m['samples'])} samples{over}"
                     + (f", {tps:.1f} tokens/s" if tps else ""))
        if not timings.get("same_machine", True):
            lines.append("note: the invocations ran on different machines: the time is not one machine's")
    lines.append(f"files: {out}/run.json, {out}/samples.jsonl, {out}/summary.json")
    return lines


# ---------------------------------------------------------------------------- run.json's informative part
def model_info(llm) -> dict:
    """name, params (sum of numel) and bytes of the target and the draft."""
    def info(name: str, loaded, engine) -> dict:
        if loaded is None:  # a remote server: its weights are not here
            return {"name": name, "url": getattr(engine, "url", None), "params": None, "bytes": None}
        params = list(loaded.model.parameters())
        return {"name": name, "params": sum(p.numel() for p in params),
                "bytes": sum(p.numel() * p.element_size() for p in params)}

    models = {"target": info(llm.pair.target_name, getattr(llm, "loaded", None), llm.pair.target),
              "draft": info(llm.pair.draft_name, getattr(llm, "draft_loaded", None), llm.pair.draft)}
    models["draft"]["self"] = llm.self_mode
    return models


def versions() -> dict:
    import torch

    try:
        from importlib.metadata import version

        a1_version = version("a1")
    except Exception:  # not installed (a source checkout on sys.path)
        a1_version = "unknown"
    return {"a1": a1_version, "torch": torch.__version__, "python": platform.python_version()}


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count()}
    import torch

    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info
