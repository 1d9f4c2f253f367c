"""Write a transformers checkpoint as a GGUF the way llama.cpp's convert_hf_to_gguf.py does: gguf's
own tensor-name map, q/k rows permuted for llama, llama3 RoPE as a rope_freqs tensor, byte-level
BPE vocabulary and merges in the metadata."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Iterable, Optional

import numpy as np
import torch


def llama_cpp_permute(weights: np.ndarray, n_head: int, n_head_kv: Optional[int] = None) -> np.ndarray:
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    rows = weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
    return rows.swapaxes(1, 2).reshape(weights.shape)


def llama3_rope_factors(config) -> np.ndarray:
    """convert_hf_to_gguf.py's LlamaModel.generate_extra_tensors, in float64 like the original."""
    scaling = config.rope_parameters
    base, dim = scaling["rope_theta"], config.head_dim
    freqs = 1.0 / (base ** (np.arange(0, dim, 2, dtype=np.float64) / dim))
    factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
    old_len = scaling["original_max_position_embeddings"]
    low_wavelen, high_wavelen = old_len / low, old_len / high
    factors = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < high_wavelen:
            factors.append(1.0)
        elif wavelen > low_wavelen:
            factors.append(factor)
        else:
            smooth = (old_len / wavelen - low) / (high - low)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(factors, dtype=np.float32)


def quantized_tensor(data: np.ndarray, name: str, seed: int = 0) -> tuple[np.ndarray, object]:
    """(raw bytes [N, row_bytes], GGML type) of a float32 [N, K] weight in block format `name`: the gguf
    package's own quantization for Q4_0, Q4_1 and Q8_0; for the K-quants (which it cannot quantize)
    random blocks of small weights, seeded, with the same shape."""
    import gguf

    qtype = gguf.GGMLQuantizationType[name]
    if name in ("Q4_0", "Q4_1", "Q8_0"):
        return gguf.quants.quantize(data, qtype), qtype
    block_size, block_bytes = gguf.GGML_QUANT_SIZES[qtype]
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, size=(data.shape[0] * data.shape[1] // block_size, block_bytes), dtype=np.uint8)
    halves = {"Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208]}[name]
    for offset in halves:  # d (and dmin) small and positive: weights of ~0.1
        blocks[:, offset : offset + 2] = (rng.uniform(0.002, 0.006, len(blocks)).astype(np.float16)
                                          .view(np.uint8).reshape(-1, 2))
    return blocks.reshape(data.shape[0], -1), qtype


def write_gguf(hf_model: torch.nn.Module, tokenizer_dir: Path, path: Path, arch: Optional[str] = None,
               skip_tensors: Iterable[str] = (), formats: Optional[dict[str, str]] = None) -> Path:
    """formats: GGUF tensor kind (attn_q, ffn_down, token_embd, output, ...) -> block format of its
    2-D weights (quantized_tensor); the others are written as float32."""
    import gguf

    config = hf_model.config
    arch = arch or config.model_type
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_rope_freq_base(config.rope_parameters["rope_theta"])
    writer.add_rope_dimension_count(config.head_dim)
    _add_tokenizer(writer, tokenizer_dir, config)

    gguf_arch = gguf.MODEL_ARCH.LLAMA if arch == "llama" else gguf.MODEL_ARCH.QWEN2
    name_map = gguf.get_tensor_name_map(gguf_arch, config.num_hidden_layers)
    for hf_name, tensor in hf_model.state_dict().items():
        if hf_name == "lm_head.weight" and config.tie_word_embeddings:
            continue
        stem, suffix = hf_name.rsplit(".", 1)
        gguf_name = f"{name_map.get_name(stem)}.{suffix}"
        data = tensor.float().numpy()
        if arch == "llama" and ".q_proj." in hf_name:
            data = llama_cpp_permute(data, config.num_attention_heads, config.num_attention_heads)
        elif arch == "llama" and ".k_proj." in hf_name:
            data = llama_cpp_permute(data, config.num_attention_heads, config.num_key_value_heads)
        kind = gguf_name.split(".")[-2]
        if gguf_name in skip_tensors:
            continue
        if formats and kind in formats and data.ndim == 2:
            raw, qtype = quantized_tensor(np.ascontiguousarray(data), formats[kind], seed=len(gguf_name))
            writer.add_tensor(gguf_name, raw, raw_shape=raw.shape, raw_dtype=qtype)
        else:
            writer.add_tensor(gguf_name, np.ascontiguousarray(data))
    if config.rope_parameters.get("rope_type") == "llama3":
        writer.add_tensor("rope_freqs.weight", llama3_rope_factors(config))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _add_tokenizer(writer, tokenizer_dir: Path, config) -> None:
    data = json.loads((tokenizer_dir / "tokenizer.json").read_text())
    vocab = data["model"]["vocab"]
    special = {token["content"] for token in data["added_tokens"] if token["special"]}
    tokens = sorted(vocab, key=vocab.get)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([3 if token in special else 1 for token in tokens])
    writer.add_token_merges([" ".join(pair) if isinstance(pair, list) else pair for pair in data["model"]["merges"]])
    writer.add_bos_token_id(config.bos_token_id)
    writer.add_eos_token_id(vocab["<|im_end|>"])
    template = json.loads((tokenizer_dir / "tokenizer_config.json").read_text()).get("chat_template")
    if template:
        writer.add_chat_template(template)


TOKENS = ["a", "b", "ab", "<|end|>"]


def write_tokenizer_gguf(path: Path, **fields) -> Path:
    """A llama GGUF of valid config metadata and a 4-token byte-level tokenizer, with only the
    embedding tensor (loading it stops at the missing tensors, after the tokenizer): for tests of
    tokenizer metadata. fields: tokenizer.ggml.<key> -> value (None: left out) overrides."""
    import gguf

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(1)
    writer.add_context_length(64)
    writer.add_embedding_length(8)
    writer.add_feed_forward_length(16)
    writer.add_head_count(2)
    writer.add_head_count_kv(2)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_freq_base(10000.0)
    meta = {"model": "gpt2", "tokens": TOKENS, "token_type": [1, 1, 1, 3], "merges": ["a b"], "eos_token_id": 3,
            **fields}
    adders = {"model": writer.add_tokenizer_model, "tokens": writer.add_token_list,
              "token_type": writer.add_token_types, "merges": writer.add_token_merges,
              "scores": writer.add_token_scores, "eos_token_id": writer.add_eos_token_id,
              "bos_token_id": writer.add_bos_token_id}
    for key, value in meta.items():
        if value is not None:
            adders[key](value)
    writer.add_tensor("token_embd.weight", np.zeros((len(TOKENS), 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
