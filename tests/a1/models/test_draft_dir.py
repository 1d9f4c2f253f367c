"""Distilled draft directories: save / load round trip, use through a1.LLM(target, draft=DIR), and
the refusal of a directory made for another target."""
from __future__ import annotations

import json

import pytest
import torch

from a1 import LLM, SamplingParams
from a1.distill.forward import prefill_hidden
from a1.distill.train import init_layers
from a1.models import load_model
from a1.models.draft_dir import load_distilled_draft, save_distilled_draft, weights_probe
from a1.models.draft_model import new_layers_draft
from hf_reference import PROMPT
from tiny_checkpoints import build_hf_model, save_checkpoint


@pytest.fixture(scope="module")
def draft_dir(four_layers, tmp_path_factory):
    """A 2-layer draft of the 4-layer target (layers 3 and 0, slightly perturbed), saved."""
    _, _, target = four_layers
    draft = new_layers_draft(target.model, 2)
    init_layers(draft, target.model, [3, 0])
    with torch.no_grad():
        draft.layers[0].mlp.down_weight.add_(0.01)
    draft.use_weight_panels(True)
    out = save_distilled_draft(tmp_path_factory.mktemp("draft"), draft, target, "four-layers", {"note": "test"})
    return out, draft


def test_round_trip(four_layers, draft_dir) -> None:
    _, _, target = four_layers
    out, draft = draft_dir
    assert sorted(p.name for p in out.iterdir()) == ["a1_draft.json", "config.json", "model.safetensors"]
    marker = json.loads((out / "a1_draft.json").read_text())
    assert marker["target"] == "four-layers" and marker["num_layers"] == 2 and marker["note"] == "test"
    loaded = load_distilled_draft(out, target)
    assert loaded.config.num_layers == 2 and loaded.embed_weight is target.model.embed_weight
    assert loaded.lm_head is target.model.lm_head  # shared, not saved: the file holds the layers only
    ids = target.tokenizer.encode(PROMPT)
    torch.testing.assert_close(prefill_hidden(loaded, ids), prefill_hidden(draft, ids), atol=1e-6, rtol=0)


def test_llm_loads_a_draft_directory(four_layers, draft_dir) -> None:
    _, directory, _ = four_layers
    out, _ = draft_dir
    llm = LLM(str(directory), draft=str(out), num_speculative_tokens=2, kv_cache_gb=0.01)
    assert not llm.self_mode and llm.pair.draft_name == str(out)
    assert llm.draft_loaded.model.embed_weight is llm.loaded.model.embed_weight
    ids = llm.tokenizer.encode(PROMPT)
    params = SamplingParams(temperature=0.0, max_tokens=12, ignore_eos=True)
    plain = LLM(str(directory), kv_cache_gb=0.01).generate([ids], params)[0].outputs[0].token_ids
    assert list(llm.generate([ids], params)[0].outputs[0].token_ids) == list(plain)  # lossless


def test_same_target_in_bfloat16_is_accepted(four_layers, draft_dir) -> None:
    _, directory, _ = four_layers
    out, _ = draft_dir
    target = load_model(directory, dtype=torch.bfloat16)
    draft = load_distilled_draft(out, target)
    assert draft.dtype == torch.bfloat16 and draft.layers[0].attention.qkv_weight.dim() == 2


def test_another_target_is_refused(four_layers, draft_dir, tmp_path, bpe_tokenizer) -> None:
    out, _ = draft_dir
    other = build_hf_model("llama", seed=1, num_hidden_layers=4, tie_word_embeddings=False)
    other_dir = save_checkpoint(other, bpe_tokenizer, tmp_path / "other")
    with pytest.raises(ValueError, match=r"--draft: .* was distilled for target 'four-layers', not for .*weights differ"):
        load_distilled_draft(out, load_model(other_dir), name="--draft")
    with pytest.raises(ValueError, match="draft: .* was distilled for target 'four-layers'"):
        LLM(str(other_dir), draft=str(out))
    deeper = save_checkpoint(build_hf_model("llama", num_hidden_layers=3, tie_word_embeddings=False), bpe_tokenizer,
                             tmp_path / "deeper")
    with pytest.raises(ValueError, match="of another architecture"):
        load_distilled_draft(out, load_model(deeper))


def test_probe_reads_panels_as_rows(four_layers) -> None:
    _, directory, target = four_layers  # fp32: panels; bf16: rows; the probe is the same up to rounding
    rows = weights_probe(load_model(directory, dtype=torch.bfloat16).model)
    panels = weights_probe(target.model)
    assert sorted(rows) == sorted(panels)
    for name in panels:
        torch.testing.assert_close(torch.tensor(rows[name]), torch.tensor(panels[name]), atol=0.02, rtol=0.01)


def test_broken_marker(draft_dir, four_layers, tmp_path) -> None:
    out, _ = draft_dir
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("config.json", "model.safetensors"):
        (broken / name).write_bytes((out / name).read_bytes())
    (broken / "a1_draft.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ValueError, match="this a1 reads"):
        load_distilled_draft(broken, four_layers[2])
