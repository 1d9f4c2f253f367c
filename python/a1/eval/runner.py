"""The evaluation run behind `a1 eval`: settings -> prompts -> A1 policy -> records -> summary.

    from a1.eval.runner import EvalSettings, run_eval
    summary = run_eval(EvalSettings(dataset="gsm8k", limit=8, samples=4, out="runs/demo"))

Every finished sample is appended to DIR/samples.jsonl (a1.eval.results.RunStore) as it ends, so a
killed run resumes with the same --out and only runs the samples not yet recorded. Seeds derive
from (seed, question id, sample index), so a resumed sample draws the same tokens it would have.
A rerun with other settings is refused, naming the first setting that differs.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

from a1.eval.results import RUN_FILE, SUMMARY_FILE, RunStore
from a1.eval.run_summary import CALIBRATION_KINDS, EvalProgress, build_summary, make_record, summary_lines

# --method -> a1.policy mode
METHODS: dict[str, str] = {
    "a1": "async", "sync": "sync", "target_only": "target_only", "draft_only": "draft_only", "reference": "reference",
}
NOT_SETTINGS = ("out", "progress")  # how a run is watched and where it is written, not what it computes


@dataclass
class EvalSettings:
    """Everything that decides an evaluation's samples (see `a1 eval --help` for each field).
    data: a user JSONL file (id, problem, answer) instead of the bundled `dataset`; calibration:
    "online", "per-question" or a calibration file of `a1 calibrate`; out: the run directory
    (default runs/<dataset>-<method>-N<samples>-a<alpha>)."""

    method: str = "a1"
    dataset: str = "gsm8k"
    data: Optional[str] = None
    limit: Optional[int] = None
    samples: int = 16
    alpha: float = 0.1
    alpha_resample: Optional[float] = None
    turns: int = 32
    step_tokens: int = 64
    max_tokens: int = 1024
    min_tokens: int = 0
    target: str = "smollm2-135m"
    draft: str = "self"
    target_url: Optional[str] = None  # drive servers instead of loading the models (a1.remote)
    draft_url: Optional[str] = None
    tokenizer: Optional[str] = None  # the served model's tokenizer (default: target)
    calibration: str = "online"
    speculative_tokens: int = 0
    seed: int = 0
    temperature: float = 0.7
    top_p: float = 0.95
    concurrency: int = 8
    out: Optional[str] = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}; got {self.method!r}")
        limit = self.limit
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise ValueError(f"limit must be None or an int >= 1, got {self.limit!r}")
        if self.data is None:
            from a1.data import DATASETS

            if self.dataset.strip().lower() not in DATASETS:
                raise ValueError(f"dataset must be one of {', '.join(DATASETS)}; got {self.dataset!r}")
            self.dataset = self.dataset.strip().lower()
        elif not Path(self.data).is_file():
            raise FileNotFoundError(f"data: no such file {self.data!r}")
        if self.calibration not in CALIBRATION_KINDS and not Path(self.calibration).is_file():
            raise FileNotFoundError(
                f"calibration must be 'online', 'per-question' or a calibration file; no such file {self.calibration!r}"
            )
        self.policy_config()  # checks the policy's own settings, naming the field

    @property
    def mode(self) -> str:
        return METHODS[self.method]

    def policy_config(self):
        from a1.policy import PolicyConfig

        return PolicyConfig(**self.policy_kwargs())

    def policy_kwargs(self) -> dict:
        """The keyword arguments of a1.policy.generate (and PolicyConfig) for these settings."""
        return dict(
            alpha=self.alpha, alpha_resample=self.alpha_resample, num_samples=self.samples, mode=self.mode,
            step_tokens=self.step_tokens, max_turns=self.turns, max_tokens=self.max_tokens, min_tokens=self.min_tokens,
            temperature=self.temperature, top_p=self.top_p, seed=self.seed, speculative_tokens=self.speculative_tokens,
            concurrency=self.concurrency,
        )

    @property
    def dataset_name(self) -> str:
        return Path(self.data).stem if self.data is not None else self.dataset

    def out_dir(self) -> Path:
        if self.out is not None:
            return Path(self.out)
        return Path("runs") / f"{self.dataset_name}-{self.method}-N{self.samples}-a{self.alpha:g}"

    def run_settings(self) -> dict:
        """The settings run.json keeps and a resumed run must repeat; files are named by absolute
        path and pinned by content hash (an edited file is a different run)."""
        settings = {k: v for k, v in asdict(self).items() if k not in NOT_SETTINGS}
        settings["dataset"] = self.dataset_name
        if self.data is not None:
            settings["data"] = str(Path(self.data).resolve())
            settings["data_sha256"] = file_sha256(self.data)
        if self.calibration not in CALIBRATION_KINDS:
            settings["calibration"] = str(Path(self.calibration).resolve())
            settings["calibration_sha256"] = file_sha256(self.calibration)
        return settings


def file_sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_problems(settings: EvalSettings, split: str = "test") -> list:
    """The questions of the run: the bundled dataset's `split` (shuffled by seed, then the first
    `limit`), or the user's JSONL file in file order (all of it: the user chose the split)."""
    from a1.data import load_dataset, load_jsonl

    if settings.data is not None:
        problems = load_jsonl(settings.data)
        return problems if settings.limit is None else problems[: settings.limit]
    return load_dataset(settings.dataset, limit=settings.limit, seed=settings.seed, split=split)


def build_llm(settings: EvalSettings):
    """The run's a1.LLM: the target and (unless "self") the draft, loaded once."""
    from a1.llm import LLM

    if settings.target_url is not None:
        from a1.remote import RemoteLLM

        return RemoteLLM(settings.target_url, settings.draft_url, tokenizer=settings.tokenizer or settings.target)
    draft = None if settings.draft in (None, "self") else settings.draft
    return LLM(settings.target, draft=draft, seed=settings.seed)


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


def run_eval(settings: EvalSettings, llm=None, *, log: Callable[[str], None] = print) -> dict:
    """Run (or resume) the evaluation of `settings`; returns the summary written to summary.json.
    llm: an already built a1.LLM to use instead of loading settings.target/draft (tests). A run
    with nothing left to do loads no model: it prints (and if missing, writes) its summary."""
    out = settings.out_dir()
    problems = load_problems(settings)
    if not problems:
        raise ValueError(f"dataset {settings.dataset_name!r} has no questions to evaluate")
    started = time.perf_counter()
    run_settings = settings.run_settings()
    if llm is not None:  # a model built by the caller: record what it is, not the defaults
        run_settings.update(target=llm.pair.target_name, draft="self" if llm.self_mode else llm.pair.draft_name)
    store = None
    if (out / RUN_FILE).exists():  # resuming: refuse other settings before loading any model
        store = RunStore.open(out, run_settings)
        if not pending(problems, store, settings.samples) and (out / SUMMARY_FILE).exists():
            store.close()
            summary = json.loads((out / SUMMARY_FILE).read_text())
            log(f"{out} is finished: nothing to run")
            for line in summary_lines(summary, settings, run_settings, out):
                log(line)
            return summary
    try:
        if llm is None and (store is None or pending(problems, store, settings.samples)):
            llm = build_llm(settings)
        if store is None:
            store = RunStore.open(out, run_settings, versions=versions(), models=model_info(llm), machine=machine())
    except BaseException:
        if store is not None:
            store.close()
        raise
    with store:
        todo = pending(problems, store, settings.samples)
        remaining = sum(len(indices) for _, indices in todo)
        if store.records():
            log(f"resuming {out}: {len(store.records())} samples recorded, {remaining} to run")
        bar = EvalProgress(store.records(), remaining, settings, enabled=settings.progress)
        barrier_wait, start = 0.0, time.perf_counter()
        if todo:
            from a1.data import format_prompt
            from a1.eval.calibrate import seeded_calibrator
            from a1.policy import generate

            calibration = settings.calibration
            if calibration in CALIBRATION_KINDS and store.records():  # resume online calibration where it was
                calibration = seeded_calibrator(settings, store.records())

            def on_sample(prompt_index: int, sample) -> None:
                record = make_record(todo[prompt_index][0], sample)
                store.append(record)
                bar.add(record)

            try:
                results = generate(
                    [format_prompt(p) for p, _ in todo], target=llm, calibration=calibration, chat=True,
                    progress=False, question_ids=[p.id for p, _ in todo], sample_indices=[ix for _, ix in todo],
                    on_sample=on_sample, calibration_update=None if isinstance(calibration, str) else True,
                    **settings.policy_kwargs(),
                )
            except Exception as err:
                if not hasattr(err, "samples"):  # not a run stopped by failed samples (a1.remote)
                    raise
                raise RunStopped(err, [(todo[q][0].id, s) for q, s in err.samples], store, out,
                                 settings.samples * len(problems)) from err
            finally:
                bar.close()
            barrier_wait = sum(float(r.stats.get("barrier_wait") or 0.0) for r in results)
        wall = time.perf_counter() - start if todo else None  # None: every sample ran in an earlier invocation
        summary = build_summary(settings, store.records(), llm, wall, barrier_wait, remaining)
        summary["total_time"] = time.perf_counter() - started
        store.write_summary(summary)
    for line in summary_lines(summary, settings, run_settings, out):
        log(line)
    return summary


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
