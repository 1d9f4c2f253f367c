"""A resumed adaptive run continues from the levels its recorded decisions reached: seeded_levels
replays the records (in any order: a level depends only on its stratum's counts) into exactly the
state the uninterrupted run's levels were in."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from a1.calibration import AdaptiveLevels
from a1.eval.calibrate import seeded_levels
from a1.eval.run_summary import STEP_KEYS
from a1.eval.settings import EvalSettings
from a1.policy import generate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiny_cli import tiny_llm  # noqa: E402


@pytest.mark.parametrize("calibration", ["adaptive", "per-question"])
def test_seeded_levels_are_the_levels_the_run_reached(tmp_path: Path, calibration: str):
    data = tmp_path / "q.jsonl"
    data.write_text("".join(json.dumps({"id": f"q{i}", "problem": f"What is {i}+1?", "answer": str(i + 1)}) + "\n"
                            for i in range(3)))
    settings = EvalSettings.build(data=str(data), calibration=calibration, level="adaptive", alpha=0.3,
                                  alpha_resample=0.5, num_samples=2, max_tokens=40, step_tokens=4, max_turns=8)
    cfg = settings.policy
    levels = AdaptiveLevels(cfg.alpha, cfg.alpha_resample, cfg.level_gamma)
    keys = ["q0", "q1", "q2"]
    results = generate(["What is 0+1?", "What is 1+1?", "What is 2+1?"], target=tiny_llm(), config=cfg,
                       calibration=calibration, question_ids=keys, progress=False, levels=levels)
    records = [{"question_id": key, "steps": [{k: getattr(s, k) for k in STEP_KEYS} for s in sample.steps]}
               for key, result in zip(keys, results) for sample in result.samples]
    replayed = seeded_levels(settings, records[::-1])  # the order of the records does not matter
    assert set(replayed.strata()) == set(levels.strata()) and levels.strata()
    for key in levels.strata():
        assert replayed.counts(key) == levels.counts(key) and replayed.level(key) == levels.level(key)
    assert seeded_levels(settings.replace(level="fixed", calibration="online"), records) is None
