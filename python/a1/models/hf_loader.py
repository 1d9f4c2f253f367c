"""Loading a transformers checkpoint directory: config.json, *.safetensors (one file or sharded
with model.safetensors.index.json), generation_config.json, tokenizer.json + tokenizer_config.json."""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from .base import DecoderLM
from .config import ModelConfig, read_json_object, token_id_list
from .tokenizer import Tokenizer
from .weights import load_hf_weights


class SafetensorsCheckpoint(Mapping):
    """name -> tensor over every shard of a directory; a tensor is read only when asked for."""

    def __init__(self, directory: Path) -> None:
        index_file = directory / "model.safetensors.index.json"
        if index_file.is_file():
            weight_map = read_json_object(index_file).get("weight_map")
            if not isinstance(weight_map, dict):
                raise ValueError(f"{index_file} lacks a weight_map object")
            files = sorted(set(weight_map.values()))
            missing = [name for name in files if not (directory / name).is_file()]
            if missing:
                raise ValueError(f"{index_file} names shards that are not there: {', '.join(missing)}")
            self._file_of = {name: directory / file for name, file in weight_map.items()}
        else:
            files = sorted(directory.glob("*.safetensors"))
            if not files:
                raise ValueError(f"{directory} has no *.safetensors weights (other formats are not supported)")
            self._file_of = {}
            for file in files:
                with safe_open(str(file), framework="pt") as handle:
                    self._file_of.update({name: file for name in handle.keys()})
        self._handles: dict[Path, Any] = {}

    def __getitem__(self, name: str) -> torch.Tensor:
        file = self._file_of[name]
        if file not in self._handles:
            self._handles[file] = safe_open(str(file), framework="pt")
        return self._handles[file].get_tensor(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._file_of)

    def __len__(self) -> int:
        return len(self._file_of)


def read_hf_config(directory: Path) -> ModelConfig:
    config_file = directory / "config.json"
    if not config_file.is_file():
        raise ValueError(f"{directory} has no config.json")
    try:
        config = ModelConfig.from_hf_config(read_json_object(config_file))
    except ValueError as err:
        if str(config_file) in str(err):
            raise
        raise ValueError(f"{config_file}: {err}") from err
    generation_file = directory / "generation_config.json"
    if generation_file.is_file():
        extra = token_id_list(read_json_object(generation_file).get("eos_token_id"))
        eos = config.eos_token_ids + [token for token in extra if token not in config.eos_token_ids]
        config = dataclasses.replace(config, eos_token_ids=eos)
    return config


def load_hf_directory(directory: Path, dtype: torch.dtype) -> tuple[DecoderLM, Tokenizer]:
    config = read_hf_config(directory)
    tokenizer = Tokenizer.from_hf_directory(directory, config.eos_token_ids, config.bos_token_id)
    bos = config.bos_token_id if config.bos_token_id is not None else tokenizer.bos_token_id
    config = dataclasses.replace(config, eos_token_ids=list(tokenizer.eos_token_ids), bos_token_id=bos)
    model = DecoderLM(config, dtype)
    load_hf_weights(model, SafetensorsCheckpoint(directory), source=str(directory))
    return model, tokenizer
