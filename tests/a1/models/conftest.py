"""Fixtures for the model tests: tiny random checkpoints, built and saved once per session."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest
import torch

from tiny_checkpoints import VARIANTS, build_hf_model, save_checkpoint, train_tokenizer

@pytest.fixture(scope="session")
def bpe_tokenizer():
    return train_tokenizer()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, bpe_tokenizer) -> Callable[[str], tuple[torch.nn.Module, Path]]:
    """name -> (transformers model, its saved directory), built once per session."""
    built: dict[str, tuple[torch.nn.Module, Path]] = {}

    def get(name: str) -> tuple[torch.nn.Module, Path]:
        if name not in built:
            model_type, extra = VARIANTS[name]
            hf_model = build_hf_model(model_type, **extra)
            directory = save_checkpoint(hf_model, bpe_tokenizer, tmp_path_factory.mktemp(name))
            built[name] = (hf_model, directory)
        return built[name]

    return get
