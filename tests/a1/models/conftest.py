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


@pytest.fixture(scope="session")
def four_layers(tmp_path_factory, bpe_tokenizer):
    """(transformers model, its directory, our LoadedModel) of a 4-layer tiny Llama: drafts made from
    the target (layer skip, distilled layers) need a few layers to leave some out."""
    from a1.models import load_model
    from tiny_checkpoints import build_hf_model, save_checkpoint

    hf_model = build_hf_model("llama", num_hidden_layers=4, tie_word_embeddings=False)
    directory = save_checkpoint(hf_model, bpe_tokenizer, tmp_path_factory.mktemp("four_layers"))
    return hf_model, directory, load_model(directory)
