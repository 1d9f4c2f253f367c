"""`a1 distill-draft`'s whole run on a tiny HF checkpoint: data from the target, training, the
held-out measurement, and a directory a1.LLM loads as the target's draft (its layers only)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serve"))
from serve_helpers import write_tiny_checkpoint  # noqa: E402


def test_a_whole_run_writes_a_draft_the_target_loads(tmp_path):
    import a1
    from a1.distill.run import DistillConfig, run_distillation

    target = str(write_tiny_checkpoint(tmp_path / "target", seed=4))
    config = DistillConfig(target=target, num_layers=1, datasets=("arith",), prompts_per_dataset=4,
                           temperatures=(0.0,), max_new_tokens=8, top_k=4, minutes=0.15, measure_seconds=1.0,
                           batch_tokens=256, shard_size=2, eval_prompts=2)
    out = tmp_path / "draft"
    result = run_distillation(config, out, progress=False)
    assert result.sequences == 4 and result.steps >= 1 and result.tokens > 0
    marker = json.loads((out / "a1_draft.json").read_text())
    assert marker["num_layers"] == 1 and marker["made_by"] == "a1 distill-draft"
    assert 0 <= marker["measured"]["agreement"] <= 1 and marker["measured"]["cost_ratio"] > 0
    assert not (out / ".work").exists()  # cleaned up without --keep-work
    llm = a1.LLM(target, draft=str(out), kv_cache_gb=0.02)
    assert llm.draft_loaded.model.config.num_layers == 1
    assert llm.draft_loaded.model.embed_weight is llm.loaded.model.embed_weight  # shared, not copied
    out_text = llm.generate(["What is 2+3?"], a1.SamplingParams(temperature=0, max_tokens=4), chat=True)
    assert len(out_text[0].token_ids) == 4
