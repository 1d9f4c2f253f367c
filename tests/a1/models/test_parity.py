"""Our decoders on the paged cache against transformers on the same weights: full prefill, chunked
prefill over shuffled blocks, step-by-step decode, ragged batches, greedy continuations, bf16/fp16."""
from __future__ import annotations

import copy

import pytest
import torch

from a1.models import load_model
from hf_reference import OTHER_PROMPT, PROMPT, hf_greedy, hf_logits, reset_dynamic_rope
from paged_driver import PagedDriver
from tiny_checkpoints import VARIANTS

FP32_ATOL = 1e-4


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def pair(request, tiny_checkpoint):
    """(transformers model, our LoadedModel, prompt ids) for one variant."""
    hf_model, directory = tiny_checkpoint(request.param)
    loaded = load_model(directory)
    ids = loaded.tokenizer.encode(PROMPT)
    assert len(ids) > 20
    return hf_model, loaded, ids


def test_full_prefill(pair):
    hf_model, loaded, ids = pair
    ours = PagedDriver(loaded.model, block_size=16).step([(0, ids)])
    torch.testing.assert_close(ours, hf_logits(hf_model, ids), atol=FP32_ATOL, rtol=0)


@pytest.mark.parametrize("block_size,cuts", [(4, [5, 13]), (16, [7]), (1, [3, 4, 19])])
def test_chunked_prefill_over_shuffled_blocks(pair, block_size, cuts):
    hf_model, loaded, ids = pair
    ours = PagedDriver(loaded.model, block_size=block_size, num_blocks=80, seed=block_size).chunked(0, ids, cuts)
    torch.testing.assert_close(ours, hf_logits(hf_model, ids, cuts), atol=FP32_ATOL, rtol=0)


def test_step_by_step_decode(pair):
    hf_model, loaded, ids = pair
    driver = PagedDriver(loaded.model, block_size=4)
    prefix = 6
    ours = torch.cat([driver.step([(0, ids[:prefix])])] + [driver.step([(0, [token])]) for token in ids[prefix:]])
    torch.testing.assert_close(ours, hf_logits(hf_model, ids, range(prefix, len(ids))), atol=FP32_ATOL, rtol=0)


def test_ragged_batch(pair):
    """Two sequences in one forward (both prefill), then one decoding next to the other's chunk."""
    hf_model, loaded, ids = pair
    other = loaded.tokenizer.encode(OTHER_PROMPT)
    driver = PagedDriver(loaded.model, block_size=4, seed=3)
    first = driver.step([(0, ids[:-3]), (1, other[:8])])
    second = driver.step([(1, other[8:]), (0, ids[-3:-2])])
    split = len(ids) - 3
    torch.testing.assert_close(first[:split], hf_logits(hf_model, ids[:-3]), atol=FP32_ATOL, rtol=0)
    torch.testing.assert_close(first[split:], hf_logits(hf_model, other[:8]), atol=FP32_ATOL, rtol=0)
    expected = torch.cat([hf_logits(hf_model, other, [8])[8:], hf_logits(hf_model, ids[:-2], [split])[split:]])
    torch.testing.assert_close(second, expected, atol=FP32_ATOL, rtol=0)


def test_empty_row_in_batch(pair):
    """A row with no new tokens (q_len 0) neither breaks nor shifts the others."""
    hf_model, loaded, ids = pair
    driver = PagedDriver(loaded.model, block_size=4)
    driver.step([(1, ids[:4])])
    ours = driver.step([(1, []), (0, ids)])
    torch.testing.assert_close(ours, hf_logits(hf_model, ids), atol=FP32_ATOL, rtol=0)


def test_greedy_continuation_matches_generate(pair):
    hf_model, loaded, ids = pair
    ours = PagedDriver(loaded.model, block_size=4, seed=7).greedy(0, ids[:12], max_new_tokens=10)
    assert ours == hf_greedy(hf_model, ids[:12], max_new_tokens=10)


def assert_bf16_error_within_transformers(ours_bf16, fp32_logits, hf_model, ids) -> None:
    """A model cast to bf16 is off its float32 logits by no more than transformers' own cast of the
    same weights: 1.25x its mean error, 2x its largest (test_half_precision's bounds). A fixed bound
    like a mean of 0.05, 2.4x transformers' error here, would let a sloppier cast through."""
    hf_error = (hf_logits(copy.deepcopy(hf_model).to(torch.bfloat16), ids) - hf_logits(hf_model, ids)).abs()
    ours_error = (ours_bf16.float() - fp32_logits).abs()
    assert ours_error.mean() <= 1.25 * hf_error.mean(), (
        f"mean |error| {float(ours_error.mean()):.4g} vs transformers' {float(hf_error.mean()):.4g}")
    assert ours_error.max() <= 2.0 * hf_error.max(), (
        f"max |error| {float(ours_error.max()):.4g} vs transformers' {float(hf_error.max()):.4g}")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", ["llama", "qwen2_tied"])
def test_half_precision(tiny_checkpoint, name, dtype):
    """bf16/fp16 weights, activations and cache: against the float32 logits, no less accurate than
    transformers running the same weights in the same dtype."""
    hf_model, directory = tiny_checkpoint(name)
    loaded = load_model(directory, dtype=dtype)
    assert loaded.model.dtype == dtype and loaded.model.lm_head_weight.dtype == dtype
    ids = loaded.tokenizer.encode(PROMPT)
    driver = PagedDriver(loaded.model, block_size=4)
    assert driver.kv_caches[0][0].dtype == dtype
    ours_error = (driver.chunked(0, ids, [9]) - hf_logits(hf_model, ids)).abs()
    hf_error = (hf_logits(copy.deepcopy(hf_model).to(dtype), ids, [9]) - hf_logits(hf_model, ids)).abs()
    assert ours_error.mean() <= 1.25 * hf_error.mean()
    assert ours_error.max() <= 2.0 * hf_error.max()


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_rope_tables_match_transformers_bit_for_bit(tiny_checkpoint, name):
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    from a1.models.rope import inv_frequencies

    hf_model, directory = tiny_checkpoint(name)
    loaded = load_model(directory)
    rotary = hf_model.model.rotary_emb
    reset_dynamic_rope(hf_model)
    assert torch.equal(inv_frequencies(loaded.config), rotary.original_inv_freq)
    positions = torch.arange(loaded.config.max_position_embeddings)
    cos, sin = rotary(torch.ones(1, dtype=torch.float32), positions[None])
    half = loaded.config.head_dim // 2
    assert torch.equal(loaded.model.rotary.cos_table, cos[0])
    assert torch.equal(loaded.model.rotary.sin_table[:, half:], sin[0, :, half:])
    assert torch.equal(loaded.model.rotary.sin_table[:, :half], -sin[0, :, :half])
    if loaded.config.rope_type == "dynamic":
        longer, _ = ROPE_INIT_FUNCTIONS["dynamic"](hf_model.config, None, seq_len=torch.tensor(40))
        assert torch.equal(inv_frequencies(loaded.config, 40), longer)
        assert not torch.equal(longer, rotary.original_inv_freq)


def test_layers_follow_weight_updates_after_a_forward(tiny_checkpoint):
    """Each layer binds its weight Parameters at the first forward (DecoderLayer.weights): in-place
    updates are seen, and a .to() that replaces the Parameters rebinds them."""
    hf_model, directory = tiny_checkpoint("llama")
    loaded = load_model(directory)
    ids = loaded.tokenizer.encode(PROMPT)
    before = PagedDriver(loaded.model, block_size=16).step([(0, ids)])
    torch.testing.assert_close(before, hf_logits(hf_model, ids), atol=FP32_ATOL, rtol=0)
    with torch.no_grad():
        loaded.model.layers[0].mlp.down_weight.mul_(0.5)  # in place: same Parameter
    halved = PagedDriver(loaded.model, block_size=16).step([(0, ids)])
    hf_copy = copy.deepcopy(hf_model)
    with torch.no_grad():
        hf_copy.model.layers[0].mlp.down_proj.weight.mul_(0.5)
    torch.testing.assert_close(halved, hf_logits(hf_copy, ids), atol=FP32_ATOL, rtol=0)
    overwrite = torch.__future__.get_overwrite_module_params_on_conversion()
    torch.__future__.set_overwrite_module_params_on_conversion(True)  # .to() makes new Parameter objects
    try:
        loaded.model.to(torch.bfloat16)  # a stale binding would feed the old fp32 weights to bf16 activations
    finally:
        torch.__future__.set_overwrite_module_params_on_conversion(overwrite)
    converted = PagedDriver(loaded.model, block_size=16).step([(0, ids)])
    assert_bf16_error_within_transformers(converted, halved, hf_copy, ids)


def weight_dims(model) -> set[int]:
    return {getattr(m, n).dim() for layer in model.layers for m, n in layer.projections()} | {model.lm_head_weight.dim()}


@pytest.mark.parametrize("name", ["qwen2", "qwen2_tied"])
def test_fp32_loads_weights_as_panels(tiny_checkpoint, name):
    """load_model lays out fp32 projections and the LM head (tied: the embedding too) as panels
    (a1's CPU kernel); use_weight_panels(False) restores [N, K]; the logits are transformers' either
    way. bf16 stays [N, K] (BLAS)."""
    hf_model, directory = tiny_checkpoint(name)
    loaded = load_model(directory)
    model = loaded.model
    assert weight_dims(model) == {3}
    assert model.embed_weight.dim() == (3 if model.lm_head is None else 2)
    ids = loaded.tokenizer.encode(PROMPT)
    paneled = PagedDriver(model, block_size=16).step([(0, ids)])
    assert model.use_weight_panels(False) == 4 * len(model.layers) + 1
    assert weight_dims(model) == {2} and model.embed_weight.dim() == 2
    rows = PagedDriver(model, block_size=16).step([(0, ids)])
    for logits in (paneled, rows):
        torch.testing.assert_close(logits, hf_logits(hf_model, ids), atol=FP32_ATOL, rtol=0)
    assert weight_dims(load_model(directory, dtype=torch.bfloat16).model) == {2}


def test_casting_a_paneled_model_restores_rows(tiny_checkpoint):
    """Panels serve a1's CPU fp32 kernel only: .to(bf16) (or to a GPU) lays the weights out as [N, K]."""
    hf_model, directory = tiny_checkpoint("llama")
    model = load_model(directory).model
    assert weight_dims(model) == {3}
    model.to(torch.bfloat16)
    assert weight_dims(model) == {2} and model.dtype == torch.bfloat16
    ids = load_model(directory).tokenizer.encode(PROMPT)
    logits = PagedDriver(model, block_size=16).step([(0, ids)])
    assert_bf16_error_within_transformers(logits, hf_logits(hf_model, ids), hf_model, ids)
