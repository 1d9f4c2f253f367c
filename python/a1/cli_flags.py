"""The flags `a1 eval | calibrate | generate` share. The policy's flags are built from
a1.policy.PolicyConfig's fields (flag = the field name with dashes, help and check from the field),
so a setting added there is on the command line at once; `--method` names a preset of them.

Policy flags default to "not given" (argparse.SUPPRESS): settings_from applies the method's preset
first and only the flags given on top, so `--method paper --target-step-tokens 32` keeps the
preset's on_reject.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import MISSING, fields
from typing import Any, Callable, Optional

from a1.models.config import DTYPE_NAMES
from a1.policy.config import PRESETS, PolicyConfig

DEFAULT = " (default: %(default)s)"


def _flag_type(f) -> Callable[[str], Any]:
    """argparse type of a policy field: its parse, then its check; a refusal names the flag."""
    parse, check = f.metadata["parse"], f.metadata["check"]

    def convert(text: str) -> Any:
        try:
            value = parse(text)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"expected a finite number, got {text!r}")
            return check(value, f.name)
        except (TypeError, ValueError) as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    convert.__name__ = f.name  # argparse names it in "invalid <name> value"
    return convert


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value) if all(isinstance(v, int) for v in value) else repr(list(value))
    return str(value)


def add_policy_flags(p: argparse.ArgumentParser, defaults: Optional[dict[str, Any]] = None,
                     with_method: bool = True) -> None:
    """--method and one flag per PolicyConfig field; `defaults`: this command's own defaults."""
    defaults = defaults or {}
    g = p.add_argument_group("policy (a1.policy.PolicyConfig; a calibration file must be made with the same "
                             "sampling and step settings)")
    if with_method:
        g.add_argument("--method", choices=tuple(PRESETS), default="a1",
                       help="a named pipeline: a1 (mode async), sync, target_only, draft_only, reference, or paper "
                            "(async with on_reject=append, append_until=tokens: the paper's pipeline with exact "
                            "statistics); the flags below override it" + DEFAULT)
    for f in fields(PolicyConfig):
        meta = f.metadata
        default = defaults.get(f.name, f.default if f.default is not MISSING else None)
        flags = [f"--{f.name.replace('_', '-')}", *meta["aliases"]]
        g.add_argument(*flags, dest=f.name, type=_flag_type(f), default=argparse.SUPPRESS, choices=meta["choices"],
                       metavar=meta["metavar"], help=f"{meta['help']} (default: {_shown(default)})")
    p.set_defaults(_policy_defaults=defaults)


def policy_values(args: argparse.Namespace) -> dict[str, Any]:
    """The policy fields given on the command line, over the command's own defaults."""
    given = dict(getattr(args, "_policy_defaults", {}))
    given.update({f.name: getattr(args, f.name) for f in fields(PolicyConfig) if hasattr(args, f.name)})
    return given


def add_model_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("models")
    g.add_argument("--target", default="smollm2-135m",
                   help="target model: a built-in name, an HF directory or a .gguf file" + DEFAULT)
    g.add_argument("--draft", default="self", type=draft_flag,
                   help="draft model of the same vocabulary, 'self' (the target drafts too), 'self:skip=A-B[,C-D]' "
                        "(the target's own layers minus those ranges) or a directory of `a1 distill-draft`" + DEFAULT)
    g.add_argument("--max-model-len", type=int_at_least(2), default=None,
                   help="longest sequence (default: the model's; with --target-url, the server's)")
    g.add_argument("--dtype", choices=DTYPE_NAMES, default=None,
                   help="load the models' weights in this dtype (default: a GGUF runs quantized, as llama.cpp "
                        "runs it; other checkpoints in float32)")
    g = p.add_argument_group("servers (a1.remote: vLLM, SGLang, llama.cpp or `a1 serve`)")
    g.add_argument("--target-url", action="append", default=None, metavar="URL",
                   help="drive a server instead of loading --target; repeat it for several replicas of the "
                        "model (a sample stays on one, a replica that fails is taken out and its samples go on "
                        "on another); its tokenizer: --tokenizer, default --target")
    g.add_argument("--draft-url", action="append", default=None, metavar="URL",
                   help="the draft's server(s) (default: self mode on --target-url)")
    g.add_argument("--tokenizer", default=None,
                   help="with --target-url: the served model's tokenizer (HF directory, GGUF or built-in name)")
    for flag, kind, text in (("--generate-timeout", float, "seconds one generation request may take, per attempt"),
                             ("--score-timeout", float, "seconds one scoring request may take, per attempt"),
                             ("--connect-timeout", float, "seconds to open a connection"),
                             ("--max-retries", int, "retries of a request that failed to connect, timed out or "
                                                    "got 429/502/503/504")):
        g.add_argument(flag, type=kind, default=None, dest="remote_" + flag[2:].replace("-", "_"),
                       help=f"{text} (default: a1.remote.RemoteConfig's)")


def remote_values(args: argparse.Namespace) -> dict[str, Any]:
    """The RemoteConfig fields given on the command line."""
    return {name[len("remote_"):]: value for name, value in vars(args).items()
            if name.startswith("remote_") and value is not None}


def draft_flag(text: str) -> str:
    """--draft as given; a layer-skip spec's form is checked now (its range once the target is loaded)."""
    from a1.models.draft_spec import is_skip_spec, parse_skip_spec

    if is_skip_spec(text):
        try:
            parse_skip_spec(text, name="draft")
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err).split(": ", 1)[1]) from None  # argparse names the flag
    return text


def int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an int, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an int >= {minimum}, got {text!r}")
        return value

    parse.__name__ = f"int>={minimum}"
    return parse


def add_data_flags(p: argparse.ArgumentParser, split: str) -> None:
    from a1.data import DATASETS

    g = p.add_argument_group("data")
    src = g.add_mutually_exclusive_group()
    src.add_argument("--dataset", default="gsm8k", choices=DATASETS,
                     help=f"a bundled dataset, its {split} split" + DEFAULT)
    src.add_argument("--data", metavar="FILE.jsonl",
                     help="your own questions: JSONL with id, problem, answer (all of it is used)")
    g.add_argument("--limit", type=int_at_least(1),
                   help="first LIMIT questions (bundled sets are shuffled by --seed first)")


def add_calibration_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--calibration", default="online", metavar="online|per-question|adaptive|FILE",
                   help="calibration scores: online (the run's earlier steps), per-question, adaptive (online "
                        "p-values, each stratum's level adapted so that its long-run rejection rate is α under any "
                        "drift: sets --level adaptive, which also composes with per-question or a file), or a file "
                        "of `a1 calibrate`" + DEFAULT)
    p.add_argument("--warmup-prior", default=None, metavar="FILE",
                   help="with --warmup prior: a calibration file of `a1 calibrate` (made with this run's settings) "
                        "whose scores decide the tests of strata still in warm-up")
