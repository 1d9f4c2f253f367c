"""A tiny random Llama (DecoderLM, panels as load_model lays out fp32) and distillation data made
from it: what the training tests need, in milliseconds."""
from __future__ import annotations

import random

import pytest
import torch

from a1.distill.data import TrainSequence, teacher_targets
from a1.models.base import DecoderLM
from a1.models.config import ModelConfig
from a1.models.loader import LoadedModel
from a1.models.weights import expected_tensors


def tiny_config(**overrides) -> ModelConfig:
    values = dict(arch="llama", vocab_size=64, hidden_size=32, intermediate_size=48, num_layers=4, num_heads=4,
                  num_kv_heads=2, head_dim=8, rms_norm_eps=1e-5, rope_theta=10000.0, rope_scaling=None,
                  max_position_embeddings=128, tie_word_embeddings=False, attention_bias=False, bos_token_id=0,
                  eos_token_ids=[1])
    values.update(overrides)
    return ModelConfig(**values)


def tiny_target(seed: int = 0, **overrides) -> LoadedModel:
    model = DecoderLM(tiny_config(**overrides))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in expected_tensors(model).items():
            if name.endswith("norm.weight"):
                tensor.copy_(1.0 + 0.1 * torch.randn(tensor.shape, generator=g))
            else:
                tensor.copy_(0.3 * torch.randn(tensor.shape, generator=g))
    model.eval()
    model.use_weight_panels()
    return LoadedModel(model=model, tokenizer=None, config=model.config, source=f"tiny-{seed}")


def make_sequences(model, count: int = 12, top_k: int = 8, seed: int = 0) -> list[TrainSequence]:
    """Random prompts, each continued by the target's greedy tokens (the teacher's own text)."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        ids = [rng.randrange(2, 64) for _ in range(rng.randint(4, 10))]
        start = len(ids)
        for _ in range(rng.randint(6, 14)):
            values, indices = teacher_targets(model, ids + [0], len(ids), 1)
            ids.append(int(indices[-1, 0]))
        values, indices = teacher_targets(model, ids, start, top_k)
        out.append(TrainSequence(torch.tensor(ids, dtype=torch.int32), start, values, indices))
    return out


@pytest.fixture(scope="module")
def target() -> LoadedModel:
    return tiny_target()


@pytest.fixture(scope="module")
def sequences(target) -> list[TrainSequence]:
    return make_sequences(target.model)
