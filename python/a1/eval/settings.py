"""EvalSettings: what an evaluation runs (the data, the models, the calibration) and the policy it
runs them with (an a1.policy.PolicyConfig: the one definition of every policy setting).

    settings = EvalSettings.build(dataset="gsm8k", limit=8, num_samples=4, out="runs/demo")
    settings.policy.num_samples, settings.run_settings()["num_samples"]   # 4, 4

`method` names a pipeline (a1.policy.PRESETS: a1, sync, paper, ...): build() applies it and any
policy field given on top; the constructor takes a finished PolicyConfig and refuses one whose
mode is not the method's.
"""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional, Union

from a1.policy.config import FIELDS as POLICY_FIELDS
from a1.policy.config import PRESETS, PolicyConfig

# where the p-values come from (besides a file): online (the run's earlier scores of the stratum),
# per-question (of the question's stratum), adaptive (online, at ACI levels: policy.level="adaptive")
CALIBRATION_KINDS = ("online", "per-question", "adaptive")
# how a run is watched, where it is written and which servers answer it, not what it computes (a
# resumed run may use other replicas of the same models; run.json's invocations record them)
NOT_SETTINGS = ("out", "progress", "target_url", "draft_url", "remote")
PROMPT_FORMAT = "a1.data.format_prompt/1"  # the question template (a1.data.prompts); bump it when it changes


@dataclass
class EvalSettings:
    """data: a user JSONL file (id, problem, answer) instead of the bundled `dataset`; calibration:
    "online", "per-question", "adaptive" (online p-values at adaptive levels: it sets
    policy.level="adaptive", which also adapts the level over per-question or a file) or a
    calibration file of `a1 calibrate`; warmup_prior: with policy.warmup="prior", the calibration
    file whose scores decide warm-up tests; target_url / draft_url: drive
    servers (one URL or several replicas) instead of loading the models (a1.remote; tokenizer: the
    served model's tokenizer, default target; remote: RemoteConfig fields such as generate_timeout,
    max_retries); max_model_len: the longest sequence (default: the model's or the server's); dtype:
    the loaded models' weights, "float32", "bfloat16" or "float16" (None: a GGUF runs quantized,
    other checkpoints in float32);
    out: the run directory (default runs/<dataset>-<method>-N<samples>-a<alpha>)."""

    method: str = "a1"
    dataset: str = "gsm8k"
    data: Optional[str] = None
    limit: Optional[int] = None
    target: str = "smollm2-135m"
    draft: str = "self"
    target_url: Union[str, list[str], None] = None
    draft_url: Union[str, list[str], None] = None
    tokenizer: Optional[str] = None
    max_model_len: Optional[int] = None
    dtype: Optional[str] = None
    remote: dict = field(default_factory=dict)  # a1.remote.RemoteConfig fields (timeouts, retries, api_key)
    calibration: str = "online"
    warmup_prior: Optional[str] = None  # with policy.warmup="prior": the calibration file warm-up tests use
    out: Optional[str] = None
    progress: bool = True
    policy: PolicyConfig = field(default_factory=PolicyConfig)

    def __post_init__(self) -> None:
        if self.method not in PRESETS:
            raise ValueError(f"method must be one of {', '.join(PRESETS)}; got {self.method!r}")
        if not isinstance(self.policy, PolicyConfig):
            raise TypeError(f"policy must be a PolicyConfig, got {type(self.policy).__name__}")
        mode = PRESETS[self.method]["mode"]
        if self.policy.mode != mode:
            raise ValueError(f"mode {self.policy.mode!r} is not method {self.method!r}'s ({mode!r}); give one of "
                             "them, or build the settings with EvalSettings.build(method=..., ...)")
        if self.max_model_len is not None and (isinstance(self.max_model_len, bool) or
                                               not isinstance(self.max_model_len, int) or self.max_model_len < 2):
            raise ValueError(f"max_model_len must be None or an int >= 2, got {self.max_model_len!r}")
        from a1.models.config import check_dtype_name

        check_dtype_name(self.dtype)
        if self.dtype is not None and self.target_url is not None:
            raise ValueError(f"dtype: {self.dtype!r} applies to models loaded here; with target_url the servers "
                             "choose their own")
        if self.remote:
            from a1.remote.config import RemoteConfig

            RemoteConfig(**self.remote)  # checked now, naming the field (unknown names: TypeError)
        limit = self.limit
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise ValueError(f"limit must be None or an int >= 1, got {self.limit!r}")
        if self.data is None:
            from a1.data import DATASETS

            if self.dataset.strip().lower() not in DATASETS:
                raise ValueError(f"dataset must be one of {', '.join(DATASETS)}; got {self.dataset!r}")
            self.dataset = self.dataset.strip().lower()
        elif Path(self.data).is_dir():
            raise IsADirectoryError(f"data: {self.data!r} is a directory; give a JSONL file (id, problem, answer)")
        elif not Path(self.data).is_file():
            raise FileNotFoundError(f"data: no such file {self.data!r}")
        if self.calibration not in CALIBRATION_KINDS:
            self._check_calibration_file()
        if self.calibration == "adaptive" and self.policy.level != "adaptive":
            self.policy = self.policy.replace(level="adaptive")  # what run.json records, and resumes with
        if (self.policy.warmup == "prior") != (self.warmup_prior is not None):
            raise ValueError(f"warmup_prior: a calibration file is needed exactly with warmup 'prior' (warmup "
                             f"{self.policy.warmup!r}, warmup_prior {self.warmup_prior!r})")
        if self.warmup_prior is not None:
            self._check_calibration_file(self.warmup_prior, "warmup_prior")

    @classmethod
    def build(cls, method: str = "a1", **values: Any) -> "EvalSettings":
        """Settings from flat keywords: the evaluation's own fields, and policy fields applied on
        top of the method's preset (a1.policy.PRESETS). An unknown name is refused naming it."""
        own = {f.name for f in fields(cls)} - {"policy", "method"}
        unknown = [k for k in values if k not in own and k not in POLICY_FIELDS]
        if unknown:
            raise TypeError(f"unknown setting(s) {unknown}; evaluation settings: {sorted(own)}; policy settings: "
                            f"{list(POLICY_FIELDS)}")
        policy = {k: v for k, v in values.items() if k in POLICY_FIELDS}
        if "mode" in policy and method in PRESETS and policy["mode"] != PRESETS[method]["mode"]:
            raise ValueError(f"mode {policy['mode']!r} conflicts with method {method!r} (mode "
                             f"{PRESETS[method]['mode']!r}); give one of them")
        if method not in PRESETS:
            raise ValueError(f"method must be one of {', '.join(PRESETS)}; got {method!r}")
        if values.get("calibration") == "adaptive" and policy.get("level", "adaptive") != "adaptive":
            raise ValueError(f"level {policy['level']!r} conflicts with calibration 'adaptive' (online p-values at "
                             "adaptive levels); give one of them")
        return cls(method=method, policy=PolicyConfig.preset(method, **policy),
                   **{k: v for k, v in values.items() if k in own})

    def replace(self, **values: Any) -> "EvalSettings":
        """A copy with evaluation or policy fields changed (checked again)."""
        policy = {k: v for k, v in values.items() if k in POLICY_FIELDS}
        rest = {k: v for k, v in values.items() if k not in POLICY_FIELDS}
        return dataclasses.replace(self, policy=self.policy.replace(**policy) if policy else self.policy, **rest)

    def _check_calibration_file(self, path: Optional[str] = None, name: str = "calibration") -> None:
        """A readable calibration file of `a1 calibrate` (its metadata is checked against the
        models once they are loaded: a1.policy.prepare)."""
        from a1.calibration.persistence import read_document

        path = self.calibration if path is None else path
        if Path(path).is_dir():
            raise IsADirectoryError(f"{name}: {path!r} is a directory, not a calibration file")
        if not Path(path).is_file():
            if name != "calibration":
                raise FileNotFoundError(f"{name}: no such file {path!r}")
            raise FileNotFoundError(
                f"calibration must be 'online', 'per-question', 'adaptive' or a calibration file; no such file {path!r}"
            )
        try:
            read_document(path)
        except ValueError as err:
            raise ValueError(f"{name}: {err}") from None
        except OSError as err:  # unreadable (permissions): name the file, not an errno
            raise ValueError(f"{name}: cannot read {path}: {err.strerror or err}") from None

    @property
    def dataset_name(self) -> str:
        return Path(self.data).stem if self.data is not None else self.dataset

    def prompt_source(self) -> dict:
        """Where the prompts come from, as calibration files record it (a1.policy.calibration_metadata)."""
        return {"dataset": self.dataset_name, "prompt_format": PROMPT_FORMAT}

    def out_dir(self) -> Path:
        if self.out is not None:
            return Path(self.out)
        p = self.policy
        return Path("runs") / f"{self.dataset_name}-{self.method}-N{p.num_samples}-a{p.alpha:g}"

    def run_settings(self) -> dict:
        """The settings run.json keeps and a resumed run must repeat: the evaluation's and every
        policy field, flat; files are named by absolute path and pinned by content hash (an edited
        file is a different run)."""
        settings = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in NOT_SETTINGS + ("policy",)}
        settings.update(self.policy.as_dict())
        settings["dataset"] = self.dataset_name
        if self.data is not None:
            settings["data"] = str(Path(self.data).resolve())
            settings["data_sha256"] = file_sha256(self.data)
        if self.calibration not in CALIBRATION_KINDS:
            settings["calibration"] = str(Path(self.calibration).resolve())
            settings["calibration_sha256"] = file_sha256(self.calibration)
        if self.warmup_prior is not None:
            settings["warmup_prior"] = str(Path(self.warmup_prior).resolve())
            settings["warmup_prior_sha256"] = file_sha256(self.warmup_prior)
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
    return load_dataset(settings.dataset, limit=settings.limit, seed=settings.policy.seed, split=split)


def build_llm(settings: EvalSettings):
    """The run's a1.LLM: the target and (unless "self") the draft, loaded once."""
    from a1.llm import LLM

    if settings.target_url is not None:
        from a1.remote import RemoteLLM
        from a1.remote.config import RemoteConfig

        return RemoteLLM(settings.target_url, settings.draft_url, tokenizer=settings.tokenizer or settings.target,
                         max_model_len=settings.max_model_len, config=RemoteConfig(**settings.remote))
    from a1.models.loader import dtype_named

    draft = None if settings.draft in (None, "self") else settings.draft
    return LLM(settings.target, draft=draft, seed=settings.policy.seed, max_model_len=settings.max_model_len,
               dtype=dtype_named(settings.dtype))
