"""Every policy setting has one definition (a1.policy.PolicyConfig) and reaches a run from the
command line: each field is settable by the flag named after it (`--on-reject`, ...), arrives in
the settings and is recorded in run.json; --method presets apply under the flags given."""
from __future__ import annotations

import json
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from a1.cli import build_parser, main, settings_from
from a1.policy import PolicyConfig

sys.path.insert(0, str(Path(__file__).resolve().parent / "eval"))
from tiny_cli import tiny_llm  # noqa: E402

# field -> (command-line word, the value it gives): a non-default value for every field
VALUES = {
    "alpha": ("0.25", 0.25),
    "alpha_resample": ("0.5", 0.5),
    "max_resamples": ("3", 3),
    "num_samples": ("3", 3),
    "mode": ("async", "async"),  # the default's mode: --method sync --mode sync is tested apart
    "turn_edges": ("1,3", (1, 3)),
    "step_tokens": ("17", 17),
    "max_turns": ("5", 5),
    "max_tokens": ("99", 99),
    "min_tokens": ("3", 3),
    "temperature": ("0.5", 0.5),
    "top_p": ("0.8", 0.8),
    "top_k": ("7", 7),
    "seed": ("5", 5),
    "score": ("max_nll", "max_nll"),
    "on_reject": ("append", "append"),
    "target_step_tokens": ("9", 9),
    "append_until": ("step", "step"),
    "speculative_tokens": ("2", 2),
    "answer_tokens": ("12", 12),
    "concurrency": ("3", 3),
    "warm_start": ("1", 1),
    "level": ("adaptive", "adaptive"),
    "level_gamma": ("0.05", 0.05),
    "attempt_strata": ("false", False),
    "warmup": ("coin", "coin"),
    "warmup_scores": ("7", 7),
    "step_stop": ("\\n", ("\n",)),
}


def parse(argv: list[str]):
    parser = build_parser()
    args = parser.parse_args(argv)
    sub = parser._subparsers._group_actions[0].choices[args.command]
    return settings_from(args, sub)


def test_the_walk_covers_every_field():
    assert set(VALUES) == {f.name for f in fields(PolicyConfig)}  # a new field needs a value here


@pytest.mark.parametrize("name", sorted(VALUES))
def test_each_field_is_settable_by_its_flag(name):
    word, value = VALUES[name]
    flag = "--" + name.replace("_", "-")
    settings = parse(["eval", flag, word])
    assert getattr(settings.policy, name) == value
    recorded = json.loads(json.dumps(settings.run_settings()))[name]
    assert recorded == json.loads(json.dumps(value))
    for other in fields(PolicyConfig):  # and nothing else moved
        if other.name != name:
            assert getattr(settings.policy, other.name) == getattr(PolicyConfig(), other.name), other.name


def test_a_bad_value_names_the_flag(capsys):
    for argv, flag in ((["eval", "--on-reject", "drop"], "--on-reject"), (["eval", "--turn-edges", "3,1"], "--turn-edges"),
                       (["eval", "--temperature", "1e39"], "--temperature"), (["eval", "--top-p", "1e-50"], "--top-p"),
                       (["eval", "--min-tokens", "20", "--max-tokens", "10"], "--min-tokens")):
        with pytest.raises(SystemExit) as info:
            parse(argv)
        err = capsys.readouterr().err
        assert info.value.code == 2 and f"argument {flag}" in err and "Traceback" not in err


def test_method_presets_apply_under_the_given_flags():
    paper = parse(["eval", "--method", "paper"]).policy
    assert (paper.mode, paper.on_reject, paper.append_until) == ("async", "append", "tokens")
    mixed = parse(["eval", "--method", "paper", "--append-until", "step", "--target-step-tokens", "16"]).policy
    assert (mixed.on_reject, mixed.append_until, mixed.target_step_tokens) == ("append", "step", 16)
    assert parse(["eval", "--method", "sync", "--mode", "sync"]).policy.mode == "sync"
    with pytest.raises(SystemExit):
        parse(["eval", "--method", "sync", "--mode", "async"])  # contradictory: refused, not guessed
    assert parse(["calibrate"]).policy.num_samples == 4 and parse(["eval"]).policy.num_samples == 16


def test_a_real_run_records_every_policy_field(tmp_path: Path, capsys):
    data = tmp_path / "q.jsonl"
    data.write_text('{"id": "a", "problem": "What is 1+1?", "answer": "2"}\n')
    chosen = [n for n in VALUES if n not in ("speculative_tokens", "mode")]  # self mode refuses speculation
    argv = ["eval", "--data", str(data), "--out", str(tmp_path / "run"), "--no-progress"]
    for name in chosen:
        argv += ["--" + name.replace("_", "-"), VALUES[name][0]]
    assert main(argv, llm=tiny_llm(self_mode=True)) == 0, capsys.readouterr().err
    settings = json.loads((tmp_path / "run" / "run.json").read_text())["settings"]
    for f in fields(PolicyConfig):
        expected = VALUES[f.name][1] if f.name in chosen else f.default
        assert settings[f.name] == json.loads(json.dumps(expected)), f.name
    assert settings["method"] == "a1"


def test_server_flags_reach_the_settings(capsys):
    settings = parse(["eval", "--target-url", "http://a:1", "--target-url", "http://b:1", "--draft-url", "http://c:1",
                      "--max-model-len", "4096", "--generate-timeout", "30", "--max-retries", "5"])
    assert settings.target_url == ["http://a:1", "http://b:1"] and settings.draft_url == ["http://c:1"]
    assert settings.max_model_len == 4096 and settings.remote == {"generate_timeout": 30.0, "max_retries": 5}
    run = settings.run_settings()
    assert run["max_model_len"] == 4096 and "target_url" not in run and "remote" not in run  # replicas may change
    with pytest.raises(SystemExit):
        parse(["eval", "--target-url", "http://a:1", "--generate-timeout", "0"])
    assert "argument --generate-timeout" in capsys.readouterr().err


def test_adaptive_calibration_sets_the_adaptive_level(capsys, tmp_path: Path):
    settings = parse(["eval", "--calibration", "adaptive"])
    assert settings.calibration == "adaptive" and settings.policy.level == "adaptive"
    assert settings.run_settings()["level"] == "adaptive"  # what run.json records (and a resume repeats)
    assert parse(["eval", "--calibration", "per-question", "--level", "adaptive"]).policy.level == "adaptive"
    with pytest.raises(SystemExit):
        parse(["eval", "--calibration", "adaptive", "--level", "fixed"])  # contradictory: refused
    assert "argument --level" in capsys.readouterr().err


def test_the_warmup_prior_file_goes_with_warmup_prior(capsys, tmp_path: Path):
    from a1.calibration import Calibrator

    path = tmp_path / "prior.json"
    Calibrator().save(path, {})
    settings = parse(["eval", "--warmup", "prior", "--warmup-prior", str(path)])
    run = settings.run_settings()
    assert run["warmup_prior"] == str(path.resolve()) and len(run["warmup_prior_sha256"]) == 64
    for argv in (["eval", "--warmup", "prior"], ["eval", "--warmup-prior", str(path)],
                 ["eval", "--warmup", "prior", "--warmup-prior", str(tmp_path / "missing.json")]):
        with pytest.raises(SystemExit):
            parse(argv)
        assert "argument --warmup-prior" in capsys.readouterr().err


def test_a_layer_skip_draft_spec_is_checked_before_loading(capsys) -> None:
    """--draft self:skip=...: a malformed spec is a usage error naming the flag (its layer range is
    checked against the target once loaded: a1.models.draft_spec)."""
    with pytest.raises(SystemExit) as exit_:
        main(["eval", "--draft", "self:skip=4-2", "--limit", "1"])
    assert exit_.value.code == 2
    assert "argument --draft: range 4-2 in 'self:skip=4-2' is reversed" in capsys.readouterr().err
    assert build_parser().parse_args(["eval", "--draft", "self:skip=14-16"]).draft == "self:skip=14-16"


def test_dtype_is_a_recorded_setting_checked_at_once(capsys) -> None:
    """--dtype: one of the names a model loads in, recorded in run.json (a resumed run repeats it);
    another name, or a dtype for servers' models, is refused naming it."""
    from a1.eval.settings import EvalSettings

    settings = parse(["eval", "--dtype", "bfloat16"])
    assert settings.dtype == "bfloat16" and settings.run_settings()["dtype"] == "bfloat16"
    assert parse(["eval"]).run_settings()["dtype"] is None  # the checkpoint's own way: a GGUF runs quantized
    with pytest.raises(SystemExit):
        parse(["eval", "--dtype", "float64"])
    assert "argument --dtype: invalid choice: 'float64'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="dtype must be one of float32, bfloat16, float16"):
        EvalSettings.build(dtype="int8")
    with pytest.raises(SystemExit):
        parse(["eval", "--dtype", "float32", "--target-url", "http://127.0.0.1:9"])
    assert "argument --dtype: 'float32' applies to models loaded here" in capsys.readouterr().err
