"""A calibration file refuses a run whose scores would not be exchangeable with its own: every
setting that moves the score distribution is recorded (models and weights, sampling, step rule,
budgets, score kind, strata, prompt format, data) and a difference is refused naming the field."""
from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch

import a1
import a1_ext
from a1.calibration import Calibrator
from a1.policy import PolicyConfig, calibration_metadata

BUDGET = dict(num_samples=2, max_tokens=24, step_tokens=6, max_turns=4, alpha=0.3, progress=False)
SOURCE = {"dataset": "gsm8k", "prompt_format": "a1.data.format_prompt/1"}


@pytest.fixture(scope="module")
def self_llm(tiny_target):
    return a1.LLM(tiny_target, draft="self", kv_cache_gb=0.02)


@pytest.fixture(scope="module")
def cal_file(self_llm, tmp_path_factory):
    """A calibration file made for BUDGET's settings on SOURCE's data."""
    cfg = PolicyConfig(**{k: v for k, v in BUDGET.items() if k != "progress"})
    cal = Calibrator(cfg.turn_edges)
    cal.fit([1.0, 2.0, 3.0, 4.0], [0, 0, 1, 2])
    path = tmp_path_factory.mktemp("cal") / "cal.json"
    cal.save(path, calibration_metadata(self_llm, cfg, chat=True, prompt_source=SOURCE))
    return path


def run(llm, cal_file, **kwargs):
    settings = {**BUDGET, **kwargs}
    source = settings.pop("prompt_source", SOURCE)
    return a1_ext.generate(["Hi"], target=llm, calibration=str(cal_file), prompt_source=source, **settings)


def test_the_same_run_is_accepted(self_llm, cal_file):
    assert len(run(self_llm, cal_file)[0].samples) == 2


@pytest.mark.parametrize("change, field", [
    (dict(max_tokens=30), "max_tokens"),
    (dict(min_tokens=2), "min_tokens"),
    (dict(temperature=0.5), "temperature"),
    (dict(top_p=0.5), "top_p"),
    (dict(step_tokens=7), "step_tokens"),
    (dict(step_stop=("\n",)), "step_stop"),
    (dict(score="max_nll"), "score"),
    (dict(turn_edges=(1, 3)), "turn_edges"),
    (dict(attempt_strata=False), "attempt_strata"),
    (dict(chat=False), "chat"),
    (dict(prompt_source={"dataset": "math500", "prompt_format": SOURCE["prompt_format"]}), "dataset"),
    (dict(prompt_source={"dataset": "gsm8k", "prompt_format": "other"}), "prompt_format"),
])
def test_a_different_setting_is_refused_naming_it(self_llm, cal_file, change, field):
    with pytest.raises(ValueError, match=f"field '{field}'"):
        run(self_llm, cal_file, **change)
    assert self_llm.pair.num_used_blocks()["target"] == 0


def test_other_weights_under_the_same_name_are_refused(tiny_target, cal_file):
    other = copy.deepcopy(tiny_target.model)
    with torch.no_grad():
        other.lm_head.mul_(1.01)
    renamed = SimpleNamespace(model=other, tokenizer=tiny_target.tokenizer, source=tiny_target.source)
    llm = a1.LLM(renamed, draft="self", kv_cache_gb=0.02)
    assert llm.pair.target_name == "tiny-target"  # the same name: only the fingerprint tells them apart
    with pytest.raises(ValueError, match="field 'target_weights'"):
        run(llm, cal_file)
