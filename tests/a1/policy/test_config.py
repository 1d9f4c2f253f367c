"""PolicyConfig is the one definition of the policy's settings: each field checked once, at
construction, naming it; generate() takes a PolicyConfig or overrides of its fields."""
from __future__ import annotations

import pytest

import a1_ext
from a1.policy import PolicyConfig
from a1.policy.config import PRESETS
from a1.policy.decide import DecisionRule

BUDGET = dict(num_samples=2, max_tokens=24, step_tokens=6, max_turns=4, alpha=0.3)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(alpha=1.5), ValueError, r"alpha must be in \(0, 1\)"),
    (dict(alpha="0.1"), TypeError, "alpha must be a number"),
    (dict(num_samples=0), ValueError, "num_samples must be an int >= 1"),
    (dict(max_resamples=True), TypeError, "max_resamples must be an int"),
    (dict(turn_edges=(3, 1)), ValueError, "turn_edges must be strictly increasing"),
    (dict(step_stop="\n\n"), TypeError, "step_stop must be a list of non-empty strings"),
    (dict(temperature=1e39), ValueError, "temperature must be finite and >= 0 in float32"),
    (dict(on_reject="drop"), ValueError, "on_reject must be one of"),
    (dict(alpha=0.3, alpha_resample=0.2), ValueError, "alpha_resample"),
    (dict(min_tokens=5, max_tokens=4), ValueError, "min_tokens"),
    (dict(nosuch=1), TypeError, r"unknown policy setting\(s\) \['nosuch'\]"),
])
def test_every_field_is_checked_at_construction(kwargs, error, match):
    with pytest.raises(error, match=match):
        PolicyConfig.of(kwargs)


def test_values_are_stored_normalized_and_replace_checks_again():
    cfg = PolicyConfig(turn_edges=[1, 3], alpha=1 / 4, step_stop=["\n"])
    assert cfg.turn_edges == (1, 3) and cfg.step_stop == ("\n",) and isinstance(cfg.alpha, float)
    assert cfg.replace(num_samples=3).num_samples == 3 and cfg.num_samples == 16
    with pytest.raises(ValueError, match="num_samples"):
        cfg.replace(num_samples=-1)
    with pytest.raises(TypeError, match="unknown policy setting"):
        cfg.replace(samples=3)


def test_presets_name_fields_and_overrides_win():
    for name, values in PRESETS.items():
        cfg = PolicyConfig.preset(name)
        assert all(getattr(cfg, k) == v for k, v in values.items())
    assert PolicyConfig.preset("paper", append_until="step").append_until == "step"
    with pytest.raises(ValueError, match="method must be one of"):
        PolicyConfig.preset("fast")


def test_the_decision_rule_checks_its_levels_once():
    rule = DecisionRule(0.1, 0.3)
    assert (rule(0.05), rule(0.2), rule(0.5)) == ("takeover", "resample", "accept")
    with pytest.raises(ValueError, match="alpha_resample"):
        DecisionRule(0.3, 0.1)
    with pytest.raises(ValueError, match="p must be in"):
        rule(1.5)


def test_generate_takes_a_config_or_overrides_of_it(llm):
    by_config = a1_ext.generate(["Hi"], target=llm, config=PolicyConfig(**BUDGET), progress=False)
    by_keywords = a1_ext.generate(["Hi"], target=llm, progress=False, **BUDGET)
    on_top = a1_ext.generate(["Hi"], target=llm, config=PolicyConfig(**BUDGET).replace(num_samples=1),
                             num_samples=2, progress=False)
    for results in (by_config, by_keywords, on_top):
        assert len(results[0].samples) == 2
    with pytest.raises(TypeError, match=r"unknown policy setting\(s\) \['samples'\]"):
        a1_ext.generate(["Hi"], target=llm, samples=2, progress=False)
