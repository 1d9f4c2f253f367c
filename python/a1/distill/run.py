"""`a1 distill-draft` end to end: data from the target, training, measurement, the draft directory.

    config = DistillConfig(target="smollm2-135m", num_layers=4, minutes=30)
    result = run_distillation(config, "drafts/smollm2-4l")      # rerun the same call to resume
    a1.LLM("smollm2-135m", draft="drafts/smollm2-4l")

The time budget covers the whole run: data generation stops at `data_fraction` of it (whole shards),
training takes what is left less the time the final measurement needs. Work files (data shards, the
checkpoint) live in OUT/.work until the draft is written; --keep-work keeps them after.
"""
from __future__ import annotations

import dataclasses
import json
import os
import platform
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch

PROGRESS_EVERY = 5  # steps between progress-bar refreshes


@dataclass
class DistillConfig:
    """target: the model to distill (a built-in name, HF directory or GGUF). num_layers: the draft's
    depth. init: which target layers start the draft's layers ("first", "spread" or indices "0,1,2,29";
    "new": random). datasets: their calibration splits give the prompts. minutes: the whole run."""

    target: str = "smollm2-135m"
    num_layers: int = 4
    init: str = "first"
    datasets: tuple[str, ...] = ("arith", "gsm8k", "math500")
    prompts_per_dataset: Optional[int] = None
    temperatures: tuple[float, ...] = (0.0, 0.7)
    max_new_tokens: int = 160
    top_k: int = 32
    minutes: float = 30.0
    data_fraction: float = 0.35
    measure_seconds: float = 90.0
    batch_tokens: int = 1536
    lr: float = 3e-4
    seed: int = 0
    threads: Optional[int] = None  # torch threads (None: torch's default)
    shard_size: int = 32
    eval_prompts: int = 12
    keep_work: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.num_layers, bool) or not isinstance(self.num_layers, int) or self.num_layers < 1:
            raise ValueError(f"num_layers must be an int >= 1, got {self.num_layers!r}")
        if not (self.minutes > 0):
            raise ValueError(f"minutes must be > 0, got {self.minutes!r}")
        if not 0 < self.data_fraction < 1:
            raise ValueError(f"data_fraction must be in (0, 1), got {self.data_fraction!r}")
        if not self.datasets:
            raise ValueError("datasets must name at least one bundled dataset")
        from a1.data import DATASETS

        bad = [d for d in self.datasets if d not in DATASETS]
        if bad:
            raise ValueError(f"datasets: unknown {bad}; bundled: {', '.join(DATASETS)}")
        for name in ("top_k", "max_new_tokens", "batch_tokens", "shard_size", "eval_prompts"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")

    def init_layers(self, target_layers: int) -> list[Optional[int]]:
        """The target layer each draft layer starts from (None: random)."""
        k = self.num_layers
        if self.init == "new":
            return [None] * k
        if self.init == "first":
            return list(range(min(k, target_layers))) + [None] * max(0, k - target_layers)
        if self.init == "spread":  # evenly spaced, first and last included
            return sorted({round(i * (target_layers - 1) / max(1, k - 1)) for i in range(k)})
        try:
            chosen = [int(x) for x in self.init.split(",")]
        except ValueError:
            raise ValueError(f"init must be first, spread, new or layer indices like 0,1,2,29; got {self.init!r}") from None
        if len(chosen) != k or not all(0 <= i < target_layers for i in chosen):
            raise ValueError(f"init: {self.init!r} must name {k} layers in 0-{target_layers - 1}")
        return chosen

    def training_key(self) -> dict:
        """What a resumed run must repeat (the time budget may change)."""
        keep = ("target", "num_layers", "init", "datasets", "prompts_per_dataset", "temperatures", "max_new_tokens",
                "top_k", "batch_tokens", "lr", "seed", "shard_size")
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items() if k in keep}


@dataclass
class DistillResult:
    out: str
    sequences: int
    tokens: int  # continuation tokens in the data
    data_seconds: float
    train_seconds: float
    steps: int
    epochs: float
    final_loss: float
    train_agreement: float
    measured: dict = field(default_factory=dict)  # a1.distill.measure.DraftQuality.as_dict()
    wall_seconds: float = 0.0


def run_distillation(config: DistillConfig, out, progress: bool = True) -> DistillResult:
    from tqdm.auto import tqdm

    from a1.llm import LLM
    from a1.models.draft_dir import save_distilled_draft
    from a1.models.draft_model import new_layers_draft
    from a1.models.loader import load_model

    from .data import build_shards, calibration_prompts
    from .train import init_layers, iterate_sequences, train

    wall = time.perf_counter()
    if config.threads:
        torch.set_num_threads(config.threads)
    out = Path(out)
    work = out / ".work"
    work.mkdir(parents=True, exist_ok=True)
    state = _state(work, config)
    budget = config.minutes * 60
    target = load_model(config.target)
    llm = LLM(target, seed=config.seed, kv_cache_gb=0.5)
    prompts = [ids for _, ids in calibration_prompts(target.tokenizer, config.datasets, config.seed,
                                                      config.prompts_per_dataset)]
    data_budget = budget * config.data_fraction
    began = time.perf_counter()
    spent_before = state["data_seconds"]
    bar = tqdm(total=-(-len(prompts) // config.shard_size), desc="distill: target data", unit="shard", disable=not progress)
    shards = build_shards(llm, prompts, work / "data", config.shard_size, config.temperatures, config.max_new_tokens,
                          config.top_k, config.seed,
                          should_stop=lambda: spent_before + time.perf_counter() - began >= data_budget,
                          on_shard=lambda done, total: bar.update(done - bar.n))
    bar.close()
    state["data_seconds"] = spent_before + time.perf_counter() - began
    _save_state(work, state)
    del llm
    sequences = list(iterate_sequences(shards))
    if not sequences:
        raise ValueError("no training data: the data budget ran out before the first shard; give more --minutes")
    tokens = sum(s.num_targets for s in sequences)

    draft = new_layers_draft(target.model, config.num_layers)
    draft.use_weight_panels(False)
    init_layers(draft, target.model, config.init_layers(target.config.num_layers))
    train_budget = max(1.0, budget - state["data_seconds"] - config.measure_seconds)
    bar = tqdm(total=round(train_budget), desc="distill: training", unit="s", disable=not progress)

    def on_step(s) -> None:
        if s.step % PROGRESS_EVERY == 0:
            bar.update(min(round(s.seconds), bar.total) - bar.n)
            bar.set_postfix(loss=f"{s.loss:.3f}", top1=f"{s.agreement:.3f}", epoch=s.epoch, tok_s=f"{s.tokens / max(s.seconds, 1e-9):.0f}")

    trained = train(draft, target.model, sequences, train_budget, config.lr, config.batch_tokens, config.seed,
                    work / "checkpoint.pt", on_step=on_step)
    bar.update(bar.total - bar.n)
    bar.close()
    draft.use_weight_panels(True)
    measured = measure(target, draft, config)
    info = {"made_by": "a1 distill-draft", "config": config.training_key(),
            "init_layers": config.init_layers(target.config.num_layers),
            "training": {"sequences": len(sequences), "tokens": tokens, "data_seconds": round(state["data_seconds"], 1),
                         "train_seconds": round(trained.seconds, 1), "steps": trained.step,
                         "final_loss": round(trained.loss, 4), "train_agreement": round(trained.agreement, 4),
                         "cpu": _cpu(), "threads": torch.get_num_threads()},
            "measured": measured}
    save_distilled_draft(out, draft, target, config.target, info)
    if not config.keep_work:
        shutil.rmtree(work, ignore_errors=True)
    batches_per_epoch = max(1, -(-tokens // config.batch_tokens))
    return DistillResult(str(out), len(sequences), tokens, state["data_seconds"], trained.seconds, trained.step,
                         trained.epoch + trained.position / batches_per_epoch, trained.loss, trained.agreement, measured,
                         time.perf_counter() - wall)


def measure(target, draft, config: DistillConfig) -> dict:
    """Agreement, speculative acceptance (k = 4) and cost ratio on held-out prompts: the first test
    questions of the distillation datasets (never trained on: training reads calibration splits)."""
    from a1.data import format_prompt, load_dataset
    from a1.llm import LLM
    from a1.models.loader import LoadedModel
    from a1.models.prompts import encode_prompts

    from .measure import DraftQuality, cost_ratio, greedy_continuations, speculative_acceptance, top1_agreement

    per = max(1, config.eval_prompts // len(config.datasets))
    problems = [p for name in config.datasets for p in load_dataset(name, split="test", seed=config.seed, limit=per)]
    prompts = [ids for _, ids in encode_prompts(target.tokenizer, [format_prompt(p) for p in problems], chat=True)]
    draft_loaded = LoadedModel(draft, target.tokenizer, draft.config, "distilled")
    continuations = greedy_continuations(LLM(target, kv_cache_gb=0.25), prompts, 64)
    agreement, positions = top1_agreement(target.model, draft, list(zip(prompts, continuations)))
    acceptance, per_verify, first = speculative_acceptance(target, draft_loaded, prompts, 4, 64)
    ratio, draft_ms, target_ms = cost_ratio(target, draft_loaded, prompts, batch=16, steps=16, repeats=2)
    return DraftQuality(agreement, positions, acceptance, 4, per_verify, first, ratio, 16, draft_ms, target_ms).as_dict()


def _state(work: Path, config: DistillConfig) -> dict:
    path = work / "state.json"
    if path.exists():
        state = json.loads(path.read_text())
        if state.get("config") != config.training_key():
            changed = sorted(k for k, v in config.training_key().items() if state.get("config", {}).get(k) != v)
            raise ValueError(f"{work.parent} holds a run with other settings ({', '.join(changed)}); rerun it with "
                             "the same settings to resume, or choose another --out")
        return state
    state = {"config": config.training_key(), "data_seconds": 0.0}
    _save_state(work, state)
    return state


def _save_state(work: Path, state: dict) -> None:
    (work / "state.json").write_text(json.dumps(state, indent=1) + "\n")


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        return f"{names[0]} x{os.cpu_count()}" if names else platform.processor()
    except OSError:
        return platform.processor() or platform.machine()
