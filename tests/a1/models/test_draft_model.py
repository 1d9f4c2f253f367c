"""Layer-skip self-drafts: the target's own layers minus some, same tensors; against a pure-torch
reference and transformers with those layers removed; in a1.LLM, speculative decoding and A1."""
from __future__ import annotations

import copy

import pytest
import torch

from a1 import LLM, SamplingParams
from a1.distill.forward import layers_forward, logits_of
from a1.models.draft_model import DraftLM, new_layers_draft, skip_draft
from hf_reference import PROMPT, hf_logits
from paged_driver import PagedDriver

KEPT = [0, 2, 3]  # skip layer 1 of 4


def test_shares_the_targets_tensors(four_layers) -> None:
    _, _, loaded = four_layers
    target = loaded.model
    draft = skip_draft(target, KEPT)
    assert draft.embed_weight.data_ptr() == target.embed_weight.data_ptr()
    assert draft.lm_head.data_ptr() == target.lm_head.data_ptr()
    assert draft.norm.weight.data_ptr() == target.norm.weight.data_ptr()
    for layer, source in zip(draft.layers, KEPT):
        ours = [w.data_ptr() for w in layer.weights() if w is not None]
        assert ours == [w.data_ptr() for w in target.layers[source].weights() if w is not None]
    assert draft.own_parameters() == []
    assert draft.config.num_layers == 3 and target.config.num_layers == 4
    assert draft.kv_cache_shape(8, 16) == target.kv_cache_shape(8, 16)
    assert draft.bytes_per_token() * 4 == target.bytes_per_token() * 3


def test_forward_matches_the_reference_and_transformers(four_layers) -> None:
    hf_model, _, loaded = four_layers
    draft = skip_draft(loaded.model, KEPT)
    ids = loaded.tokenizer.encode(PROMPT)
    ours = PagedDriver(draft, block_size=4).step([(0, ids)])
    with torch.no_grad():
        hidden = layers_forward(loaded.model, list(draft.layers), draft.norm.weight, torch.tensor([ids]))[0]
    torch.testing.assert_close(ours, logits_of(loaded.model, hidden), atol=1e-4, rtol=0)
    pruned = copy.deepcopy(hf_model)
    pruned.model.layers = torch.nn.ModuleList(pruned.model.layers[i] for i in KEPT)
    for index, layer in enumerate(pruned.model.layers):
        layer.self_attn.layer_idx = index  # its slot in transformers' cache
    pruned.config.num_hidden_layers = len(KEPT)
    torch.testing.assert_close(ours, hf_logits(pruned, ids), atol=1e-4, rtol=0)


def test_moving_a_draft_alone_is_refused(four_layers) -> None:
    draft = skip_draft(four_layers[2].model, KEPT)
    with pytest.raises(RuntimeError, match="move or cast the target"):
        draft.to(torch.float64)
    with pytest.raises(ValueError, match="outside the target's 0-3"):
        skip_draft(four_layers[2].model, [0, 4])
    with pytest.raises(ValueError, match="repeat a layer"):
        skip_draft(four_layers[2].model, [1, 1])


def test_new_layers_draft_owns_only_its_layers(four_layers) -> None:
    target = four_layers[2].model
    draft = new_layers_draft(target, 2)
    assert isinstance(draft, DraftLM) and draft.config.num_layers == 2
    own = {id(p) for p in draft.own_parameters()}
    assert id(draft.embed_weight) not in own and id(draft.lm_head) not in own
    assert own == {id(p) for p in [*draft.layers.parameters(), *draft.norm.parameters()]}


def test_llm_with_a_skip_draft(four_layers) -> None:
    _, directory, _ = four_layers
    llm = LLM(str(directory), draft="self:skip=1", kv_cache_gb=0.01)
    assert not llm.self_mode and llm.pair.draft_name == "self:skip=1"
    assert llm.draft_loaded.model.config.num_layers == 3
    assert llm.draft_loaded.model.embed_weight is llm.loaded.model.embed_weight
    assert llm.pair.draft.runner.kv_caches.__len__() == 3 and len(llm.pair.target.runner.kv_caches) == 4
    from a1.serve.cli import load_llm
    from a1.serve.config import ServeConfig

    served = load_llm(ServeConfig(model=str(directory), draft="self:skip=1", kv_cache_gb=0.01))  # a1 serve --draft
    assert served.pair.draft_name == "self:skip=1" and served.draft_loaded.model.config.num_layers == 3
    with pytest.raises(ValueError, match="draft: skip=0-3 skips all 4 layers"):
        LLM(str(directory), draft="self:skip=0-3")
    with pytest.raises(ValueError, match="draft: skip range 2-9 is out of range"):
        LLM(str(directory), draft="self:skip=2-9")


def test_speculative_decoding_with_a_skip_draft_is_lossless(four_layers) -> None:
    _, directory, loaded = four_layers
    ids = loaded.tokenizer.encode(PROMPT)
    params = SamplingParams(temperature=0.0, max_tokens=16, ignore_eos=True)
    plain = LLM(loaded, kv_cache_gb=0.01).generate([ids], params)[0].outputs[0].token_ids
    spec = LLM(loaded, draft="self:skip=1-2", num_speculative_tokens=3, kv_cache_gb=0.01)
    out = spec.generate([ids], params)[0].outputs[0].token_ids
    assert list(out) == list(plain)
    assert spec.get_metrics()["speculative"]["proposed"] > 0


def test_a1_policy_with_a_skip_draft(four_layers) -> None:
    import a1_ext

    _, directory, _ = four_layers  # the draft named by its spec string, as a1 eval --draft passes it
    result = a1_ext.generate(["what is two plus three?"], target=str(directory), draft="self:skip=2", num_samples=2,
                             max_tokens=24, step_tokens=6, max_turns=3, answer_tokens=4, alpha=0.5, progress=False)[0]
    assert len(result.samples) == 2
    assert sum(s.draft_tokens for s in result.samples) > 0
    assert any(step.by == "draft" for s in result.samples for step in s.steps)
