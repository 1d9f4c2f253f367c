"""load_model: an HF checkpoint directory, a .gguf file or a built-in name -> model + tokenizer."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import torch

from a1_ext.quant_panels import int8_panels_supported

from .base import DecoderLM
from .config import DTYPE_NAMES, ModelConfig, check_dtype_name
from .gguf_loader import load_gguf_file
from .hf_loader import load_hf_directory
from .registry import BUILTIN_MODELS
from .tokenizer import Tokenizer
from .huge_pages import pack_parameters, release_free_heap

SUPPORTED_DTYPES = tuple(getattr(torch, name) for name in DTYPE_NAMES)


def dtype_named(name: Optional[str], argument: str = "dtype") -> Optional[torch.dtype]:
    """The torch dtype of a name in DTYPE_NAMES; None for None (the checkpoint's own way)."""
    return None if check_dtype_name(name, argument) is None else getattr(torch, name)


@dataclass
class LoadedModel:
    model: DecoderLM
    tokenizer: Tokenizer
    config: ModelConfig
    source: str  # the file or directory the weights came from


def load_model(model: Union[str, os.PathLike], dtype: Optional[torch.dtype] = None) -> LoadedModel:
    """Load `model`: an HF directory (config.json, *.safetensors, tokenizer.json), a .gguf file, or a
    built-in name (see a1.models.registry.BUILTIN_MODELS). A GGUF file without a dtype runs
    quantized, as llama.cpp runs it: its Q4_0, Q4_1, Q8_0, Q4_K, Q5_K and Q6_K weights stay in their
    blocks (a1_ext.quant_formats; the model takes about the file's memory) and the activations are
    float32. Otherwise dtype defaults to float32 and the weights are cast to it (GGUF weights
    dequantized). The model is on the CPU, its parameters packed in one huge-page buffer
    (a1.models.huge_pages); float32 projection weights are laid out as panels for a1's CPU kernel
    (DecoderLM.use_weight_panels; .to() another device or dtype restores [N, K]); where the CPU has
    the int8 panel kernels, Q4_0 / Q4_1 / Q8_0 layer weights are packed panels (DecoderLM.use_quant_panels;
    .to("cuda") restores the blocks). Move it with .to()."""
    if dtype is not None and dtype not in SUPPORTED_DTYPES:
        raise ValueError(f"dtype must be one of {SUPPORTED_DTYPES}, got {dtype}")
    path = resolve_model_path(model)
    packed = False
    if path.is_dir():
        decoder, tokenizer = load_hf_directory(path, dtype or torch.float32)
    elif path.suffix.lower() == ".gguf" or _has_gguf_magic(path):
        decoder, tokenizer = load_gguf_file(path, dtype)
        packed = dtype is None  # read straight into its arena
    else:
        raise ValueError(f"{path} is neither a checkpoint directory nor a .gguf file")
    check_vocab(tokenizer, decoder.config, str(path))
    decoder.eval()
    # The layout of a1's fp32 CPU kernel (its bf16/fp16 kernel reads [N, K]); quantized weights stay blocks.
    relaid = decoder.use_weight_panels() if decoder.dtype == torch.float32 else 0
    if not packed or relaid:
        pack_parameters(decoder)  # one huge-page arena: decode streams every weight per token
    if int8_panels_supported():
        decoder.use_quant_panels()  # the int8 kernels' layout for GGUF blocks, in place in the arena
    release_free_heap()  # what loading parsed and copied through, freed, no longer resident
    return LoadedModel(model=decoder, tokenizer=tokenizer, config=decoder.config, source=str(path))


def resolve_model_path(model: Union[str, os.PathLike]) -> Path:
    if isinstance(model, str) and model in BUILTIN_MODELS:
        return BUILTIN_MODELS[model].find()
    path = Path(model).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"{str(model)!r} is neither an existing directory or .gguf file nor a built-in model "
            f"({', '.join(BUILTIN_MODELS)})"
        )
    return path


def check_vocab(tokenizer: Tokenizer, config: ModelConfig, source: str) -> None:
    """Embedding rows may exceed the tokenizer (padded vocabularies); the reverse is a broken checkpoint."""
    if tokenizer.vocab_size > config.vocab_size:
        raise ValueError(
            f"{source}: vocab mismatch: the tokenizer has {tokenizer.vocab_size} tokens but the embedding "
            f"has only {config.vocab_size} rows"
        )
    bad = [token for token in config.eos_token_ids if not 0 <= token < config.vocab_size]
    if bad:
        raise ValueError(f"{source}: eos token ids {bad} are outside the vocabulary of {config.vocab_size}")


def _has_gguf_magic(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(4) == b"GGUF"
