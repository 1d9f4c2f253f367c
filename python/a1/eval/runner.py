"""The evaluation run behind `a1 eval`: settings -> prompts -> A1 policy -> records -> summary.

    from a1.eval.runner import EvalSettings, run_eval
    summary = run_eval(EvalSettings.build(dataset="gsm8k", limit=8, num_samples=4, out="runs/demo"))

Every finished sample is appended to DIR/samples.jsonl (a1.eval.results.RunStore) as it ends, so a
killed run resumes with the same --out and only runs the samples not yet recorded. Seeds derive
from (seed, question id, sample index), so a resumed sample draws the same tokens it would have.
A rerun with other settings is refused, naming the first setting that differs, once a sample is
recorded. Every start-up check (a1.eval.startup) runs before run.json is written, so a refused
start leaves nothing that blocks the fixed rerun.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from a1.eval.results import SUMMARY_FILE, RunStore, has_records, read_summary
from a1.eval.run_files import damaged
from a1.eval.run_summary import EvalProgress, build_summary, machine, make_record, model_info, summary_lines, versions
from a1.eval.settings import CALIBRATION_KINDS, EvalSettings, build_llm, load_problems
from a1.eval.startup import check_out_dir, check_run

__all__ = ["EvalSettings", "RunStopped", "build_llm", "load_problems", "pending", "run_eval"]

def run_eval(settings: EvalSettings, llm=None, *, log: Callable[[str], None] = print) -> dict:
    """Run (or resume) the evaluation of `settings`; returns the summary written to summary.json.
    llm: an already built a1.LLM to use instead of loading settings.target/draft (tests). A run
    with nothing left to do loads no model: it prints (and if missing, writes) its summary.

    Every start-up check (settings, --out, the questions, the models, the policy, every prompt's
    length, the calibration file) runs before run.json is written, and run.json is written under
    the lock of samples.jsonl (RunStore.open): a refused start leaves nothing that blocks the fixed
    rerun, and of two runs started at once on one --out only the one that records its settings runs."""
    out = settings.out_dir()
    check_out_dir(out)
    RunStore.check_free(out)  # another run writing it: refuse now, not after loading the models
    problems = load_problems(settings)
    if not problems:
        raise ValueError(f"dataset {settings.dataset_name!r} has no questions to evaluate")
    started = time.perf_counter()
    run_settings = settings.run_settings()
    if llm is not None:  # a model built by the caller: record what it is, not the defaults
        run_settings.update(target=llm.pair.target_name, draft="self" if llm.self_mode else llm.pair.draft_name)
    store = None
    if has_records(out):  # resuming: refuse other settings before loading any model
        store = RunStore.open(out, run_settings)
        if not pending(problems, store, settings.policy.num_samples) and (out / SUMMARY_FILE).exists():
            store.close()
            summary = read_summary(out / SUMMARY_FILE)
            lines = printed_summary(summary, settings, run_settings, out)
            log(f"{out} is finished: nothing to run")
            for line in lines:
                log(line)
            return summary
    try:
        todo = pending(problems, store, settings.policy.num_samples) if store is not None else [(p, None) for p in problems]
        if todo:  # checked before run.json is written: a refused start leaves nothing behind
            llm = build_llm(settings) if llm is None else llm
            check_run(settings, llm, [p for p, _ in todo])
        if store is None:
            store = RunStore.open(out, run_settings, versions=versions(), models=model_info(llm), machine=machine())
    except BaseException:
        if store is not None:
            store.close()
        raise
    with store:
        todo = pending(problems, store, settings.policy.num_samples)
        remaining = sum(len(indices) for _, indices in todo)
        if store.records():
            log(f"resuming {out}: {len(store.records())} samples recorded, {remaining} to run")
        bar = EvalProgress(store.records(), remaining, settings, enabled=settings.progress)
        if todo:
            servers = {"target": settings.target_url, "draft": settings.draft_url} if settings.target_url else None
            store.start_invocation(machine(), versions(), **({"servers": servers} if servers else {}))
            from a1.data import format_prompt
            from a1.eval.calibrate import seeded_calibrator, seeded_levels
            from a1.policy import generate

            calibration = settings.calibration
            if calibration in CALIBRATION_KINDS and store.records():  # resume online calibration where it was
                calibration = seeded_calibrator(settings, store.records())
            levels = seeded_levels(settings, store.records()) if store.records() else None  # and adaptive levels

            def on_sample(prompt_index: int, sample) -> None:
                record = make_record(todo[prompt_index][0], sample)
                record.update(invocation=store.invocation, finished_at=time.time())
                store.append(record)
                bar.add(record)

            results = []
            try:
                results = generate(
                    [format_prompt(p) for p, _ in todo], target=llm, config=settings.policy, calibration=calibration,
                    chat=True, progress=False, question_ids=[p.id for p, _ in todo],
                    sample_indices=[ix for _, ix in todo], on_sample=on_sample,
                    calibration_update=None if isinstance(calibration, str) else True,
                    prompt_source=settings.prompt_source(), levels=levels, warmup_prior=settings.warmup_prior,
                )
            except Exception as err:
                if not hasattr(err, "samples"):  # not a run stopped by failed samples (a1.remote)
                    raise
                raise RunStopped(err, [(todo[q][0].id, s) for q, s in err.samples], store, out,
                                 settings.policy.num_samples * len(problems)) from err
            finally:  # a stopped invocation records its end too: its time counts
                bar.close()
                barrier_wait = sum(float(r.stats.get("barrier_wait") or 0.0) for r in results)
                store.end_invocation(barrier_wait=barrier_wait)
        summary = build_summary(settings, store.records(), llm, store.invocations(), remaining)
        summary["total_time"] = time.perf_counter() - started
        store.write_summary(summary)
    for line in summary_lines(summary, settings, run_settings, out):
        log(line)
    return summary


def printed_summary(summary: dict, settings: EvalSettings, run_settings: dict, out: Path) -> list[str]:
    """summary_lines of a summary.json read back; one that lacks what they print is damaged."""
    try:
        return summary_lines(summary, settings, run_settings, out)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise damaged(out / SUMMARY_FILE, f"{type(err).__name__}: {err}") from None


class RunStopped(RuntimeError):
    """A run stopped by samples whose requests failed (a server went away): names them by question
    id and says what is recorded, so that rerunning the same command finishes the rest."""

    def __init__(self, cause: BaseException, failed: list[tuple[str, int]], store: RunStore, out: Path,
                 total: int) -> None:
        self.failed = failed
        named = ", ".join(f"{question} #{sample}" for question, sample in failed) or "none named"
        recorded = len(store.records())
        super().__init__(f"the run stopped; samples that failed: {named}\n{cause}\n{recorded} of {total} samples are "
                         f"recorded in {out}: rerun the same command to run the {total - recorded} others")


def pending(problems: list, store: RunStore, samples: int) -> list[tuple[object, list[int]]]:
    """(problem, sample indices not yet recorded) of every problem with some left."""
    done = store.finished()
    todo = [(p, [i for i in range(samples) if (p.id, i) not in done]) for p in problems]
    return [(p, indices) for p, indices in todo if indices]
