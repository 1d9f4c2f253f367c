"""Loading a llama.cpp GGUF file (llama and qwen2 architectures): config and tokenizer from the
metadata; weights kept in their block formats (gguf_quantized) or, when a dtype is asked for,
dequantized with the `gguf` package and renamed to transformers' names."""
from __future__ import annotations

import re
import struct
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from .base import DecoderLM
from .config import ModelConfig, positive_int
from .gguf_quantized import load_quantized_weights, rope_row_order
from .tokenizer import Tokenizer
from .weights import load_hf_weights

GGUF_ARCHS = {"llama": "llama", "qwen2": "qwen2"}
_GLOBAL_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_BLOCK_NAMES = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_BLOCK_PATTERN = re.compile(r"^blk\.(\d+)\.(\w+)\.(weight|bias)$")


def _import_gguf() -> Any:
    try:
        import gguf
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("loading a .gguf file needs the `gguf` package: pip install gguf") from err
    return gguf


def hf_tensor_name(gguf_name: str) -> Optional[str]:
    """transformers' name for a GGUF tensor name, None for tensors the model does not use."""
    if gguf_name in _GLOBAL_NAMES:
        return _GLOBAL_NAMES[gguf_name]
    match = _BLOCK_PATTERN.match(gguf_name)
    if match is None or match.group(2) not in _BLOCK_NAMES:
        return None
    return f"model.layers.{match.group(1)}.{_BLOCK_NAMES[match.group(2)]}.{match.group(3)}"


def unpermute_rope_rows(weights: np.ndarray, num_heads: int) -> np.ndarray:
    """Undo convert_hf_to_gguf.py's permute of llama q/k rows (gguf_quantized.rope_row_order)."""
    return weights[rope_row_order(weights.shape[0], num_heads).numpy()]


class GGUFCheckpoint(Mapping):
    """transformers name -> float32 tensor, dequantized when asked for. `tensors`: a GGUFReader's
    .tensors (each holds its data as a view of the mapped file, not the reader)."""

    def __init__(self, tensors: Sequence[Any], config: ModelConfig) -> None:
        self._config = config
        self._tensor_of = {}
        for tensor in tensors:
            name = hf_tensor_name(tensor.name)
            if name is not None:
                self._tensor_of[name] = tensor

    def __getitem__(self, name: str) -> torch.Tensor:
        gguf = _import_gguf()
        tensor = self._tensor_of[name]
        weights = np.asarray(gguf.quants.dequantize(tensor.data, tensor.tensor_type), dtype=np.float32)
        if self._config.arch == "llama":  # llama.cpp permutes llama's q/k for its interleaved RoPE
            if ".self_attn.q_proj." in name:
                weights = unpermute_rope_rows(weights, self._config.num_heads)
            elif ".self_attn.k_proj." in name:
                weights = unpermute_rope_rows(weights, self._config.num_kv_heads)
        if not weights.flags.writeable or not weights.flags.c_contiguous:  # a view of the mapped file
            weights = np.array(weights, order="C")
        return torch.from_numpy(weights)

    def __iter__(self) -> Iterator[str]:
        return iter(self._tensor_of)

    def __len__(self) -> int:
        return len(self._tensor_of)


def _field(reader: Any, key: str, default: Any = None) -> Any:
    field = reader.get_field(key)
    return default if field is None else field.contents()


def open_gguf(path: Path) -> Any:
    """A gguf.GGUFReader over path, or ValueError naming the file when it cannot be parsed (the
    reader's own errors, numpy reshape and index errors, do not say which file)."""
    gguf = _import_gguf()
    try:
        return gguf.GGUFReader(str(path))
    except (ValueError, IndexError, KeyError, OverflowError, EOFError, UnicodeDecodeError, struct.error) as err:
        raise ValueError(f"{path} is not a readable GGUF file (truncated or corrupt?): {type(err).__name__}: {err}") from err


def read_gguf_config(reader: Any, path: Path) -> ModelConfig:
    """The ModelConfig of a GGUF file's metadata; errors name the file."""
    try:
        return _read_gguf_config(reader, path)
    except ValueError as err:
        if str(path) in str(err):
            raise
        raise ValueError(f"{path}: {err}") from err


def _read_gguf_config(reader: Any, path: Path) -> ModelConfig:
    gguf_arch = _field(reader, "general.architecture")
    if gguf_arch not in GGUF_ARCHS:
        raise ValueError(f"{path}: unsupported GGUF architecture {gguf_arch!r}; supported: {', '.join(GGUF_ARCHS)}")
    tensor_names = {tensor.name: tensor for tensor in reader.tensors}
    if "token_embd.weight" not in tensor_names:
        raise ValueError(f"{path} is missing tensors: token_embd.weight")

    def meta(key: str, default: Any = None) -> Any:
        value = _field(reader, f"{gguf_arch}.{key}", default)
        if value is None:
            raise ValueError(f"{path}: GGUF metadata lacks {gguf_arch}.{key}")
        return value

    hidden = positive_int(meta("embedding_length"), f"{gguf_arch}.embedding_length")
    heads = positive_int(meta("attention.head_count"), f"{gguf_arch}.attention.head_count")
    head_dim = int(meta("attention.key_length", hidden // heads))
    rope_dims = int(meta("rope.dimension_count", head_dim))
    if rope_dims != head_dim:
        raise ValueError(f"{path}: unsupported partial RoPE (rope.dimension_count {rope_dims} != head_dim {head_dim})")
    vocab = int(tensor_names["token_embd.weight"].shape[-1])
    eos_ids = [int(_field(reader, f"tokenizer.ggml.{key}")) for key in ("eos_token_id", "eot_token_id", "eom_token_id")
               if _field(reader, f"tokenizer.ggml.{key}") is not None]
    bos = _field(reader, "tokenizer.ggml.bos_token_id")
    return ModelConfig(
        arch=GGUF_ARCHS[gguf_arch],
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=int(meta("feed_forward_length")),
        num_layers=int(meta("block_count")),
        num_heads=heads,
        num_kv_heads=int(meta("attention.head_count_kv", heads)),
        head_dim=head_dim,
        rms_norm_eps=float(meta("attention.layer_norm_rms_epsilon")),
        rope_theta=float(meta("rope.freq_base", 10000.0)),
        rope_scaling=_rope_scaling(reader, gguf_arch, path),
        max_position_embeddings=int(meta("context_length")),
        tie_word_embeddings="output.weight" not in tensor_names,
        attention_bias="blk.0.attn_q.bias" in tensor_names,
        bos_token_id=None if bos is None else int(bos),
        eos_token_ids=list(dict.fromkeys(eos_ids)),
        o_proj_bias="blk.0.attn_output.bias" in tensor_names,
        mlp_bias="blk.0.ffn_up.bias" in tensor_names,
    )


def _rope_scaling(reader: Any, gguf_arch: str, path: Path) -> Optional[dict[str, Any]]:
    freq_factors = next((t for t in reader.tensors if t.name == "rope_freqs.weight"), None)
    if freq_factors is not None:  # llama 3.x files carry their llama3 scaling as per-frequency divisors
        return {"rope_type": "freq_factors", "factors": np.asarray(freq_factors.data, dtype=np.float32).tolist()}
    kind = _field(reader, f"{gguf_arch}.rope.scaling.type", "none")
    if kind == "none":
        return None
    if kind == "linear":
        return {"rope_type": "linear", "factor": float(_field(reader, f"{gguf_arch}.rope.scaling.factor"))}
    raise ValueError(f"{path}: unsupported RoPE scaling {kind!r} in GGUF metadata")


_TOKEN_ID_KEYS = ("bos_token_id", "eos_token_id", "unknown_token_id", "padding_token_id", "eot_token_id",
                  "eom_token_id", "sep_token_id", "cls_token_id", "mask_token_id")


def check_gguf_tokenizer(reader: Any, path: Path) -> None:
    """ValueError naming the file and the tokenizer.ggml.* key that cannot make a tokenizer (missing,
    mistyped, out of range): transformers' conversion would fail on it with a KeyError, an
    IndexError or a tokenizers error that names neither."""
    def bad(key: str, why: str) -> ValueError:
        return ValueError(f"{path}: corrupt GGUF tokenizer metadata: {key} {why}")

    def read(key: str) -> Any:
        field = reader.get_field(key)
        if field is None:
            return None
        try:
            return field.contents()
        except (ValueError, IndexError, UnicodeDecodeError) as err:
            raise bad(key, f"cannot be read ({type(err).__name__}: {err})") from None

    kind = read("tokenizer.ggml.model")
    if not isinstance(kind, str) or not kind:
        raise bad("tokenizer.ggml.model", "is missing" if kind is None else f"must be a string, got {kind!r}")
    tokens = read("tokenizer.ggml.tokens")
    if not isinstance(tokens, list) or not tokens or not all(isinstance(t, str) for t in tokens):
        raise bad("tokenizer.ggml.tokens", "is missing" if tokens is None else "must be a non-empty list of strings")
    for key in ("token_type", "scores"):
        values = read(f"tokenizer.ggml.{key}")
        if values is None:
            continue
        if not isinstance(values, list) or not all(isinstance(v, (int, float)) for v in values):
            raise bad(f"tokenizer.ggml.{key}", "must be a list of numbers")
        if len(values) != len(tokens):
            raise bad(f"tokenizer.ggml.{key}", f"has {len(values)} entries for {len(tokens)} tokens")
    merges = read("tokenizer.ggml.merges")
    if merges is None and read("tokenizer.ggml.scores") is None and kind in ("gpt2", "llama"):
        raise bad("tokenizer.ggml.merges", "is missing (and there are no tokenizer.ggml.scores to derive them from)")
    if merges is not None:  # whether both halves are tokens is left to the conversion (byte-level respelling)
        for number, merge in enumerate(merges if isinstance(merges, list) else [merges]):
            parts = merge.split(" ") if isinstance(merge, str) else []
            if len(parts) != 2 or not all(parts):
                raise bad("tokenizer.ggml.merges", f"entry {number} ({merge!r}) is not two tokens joined by a space")
    for name in _TOKEN_ID_KEYS:
        token_id = read(f"tokenizer.ggml.{name}")
        if token_id is not None and (not isinstance(token_id, int) or not 0 <= token_id < len(tokens)):
            raise bad(f"tokenizer.ggml.{name}", f"is {token_id!r}, not a token id of the {len(tokens)} tokens")
    template = read("tokenizer.chat_template")
    if template is not None and not isinstance(template, str):
        raise bad("tokenizer.chat_template", "must be a string")


def read_gguf_tokenizer(path: Path, config: ModelConfig) -> Tokenizer:
    """Build the tokenizer the GGUF metadata describes with transformers' GGUF conversion (local)."""
    try:
        from transformers.integrations.gguf import convert_gguf_tokenizer, get_gguf_tokenizer
    except ImportError as err:
        raise ImportError("building a tokenizer from GGUF metadata needs transformers >= 5") from err
    try:
        architecture, tokenizer_dict, tokenizer_config = get_gguf_tokenizer(str(path))
        backend, _ = convert_gguf_tokenizer(architecture, tokenizer_dict)
    except Exception as err:  # what check_gguf_tokenizer does not foresee: still name the file, in one line
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        key = ("tokenizer.ggml.merges" if "BPE" in first or "erge" in first
               else "tokenizer.ggml.model" if "stating tokenizer" in first else "tokenizer.ggml.*")
        raise ValueError(f"{path}: corrupt GGUF tokenizer metadata: cannot build a tokenizer from {key} "
                         f"({type(err).__name__}: {first})") from err
    return Tokenizer(
        backend,
        chat_template=tokenizer_config.get("chat_template"),
        special_tokens=tokenizer_config,
        eos_token_ids=config.eos_token_ids,
        bos_token_id=config.bos_token_id,
    )


def load_gguf_file(path: Path, dtype: Optional[torch.dtype]) -> tuple[DecoderLM, Tokenizer]:
    """The model and tokenizer of a GGUF file. dtype None keeps the block formats a1 has kernels for
    as blocks (gguf_quantized: float32 activations, the weights in the file's memory, already in a
    huge-page arena); a dtype dequantizes every weight to it."""
    reader = open_gguf(path)
    config = read_gguf_config(reader, path)
    check_gguf_tokenizer(reader, path)
    tensors = list(reader.tensors)
    # The reader's metadata (the vocabulary and merges parsed into ~200k numpy views: ~160 MiB for a
    # 49k vocabulary) is not needed again; freed now, it is not resident beside the weights at the
    # load's peak. transformers reads the tokenizer with its own, lighter metadata reader.
    del reader
    tokenizer = read_gguf_tokenizer(path, config)
    model = DecoderLM(config, torch.float32 if dtype is None else dtype)
    if dtype is None:
        load_quantized_weights(model, tensors, path, source=str(path),
                               dequantized=GGUFCheckpoint(tensors, config), hf_tensor_name=hf_tensor_name)
    else:
        load_hf_weights(model, GGUFCheckpoint(tensors, config), source=str(path))
    return model, tokenizer
