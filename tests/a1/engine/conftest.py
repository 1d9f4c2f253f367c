import sys
import types
from dataclasses import dataclass

import pytest
import torch

try:
    import a1.models.base  # noqa: F401
except ImportError:  # branch `models` not merged yet: the one name the engine needs from it
    import a1

    @dataclass
    class AttentionMetadata:
        slot_mapping: torch.Tensor
        block_table: torch.Tensor
        seq_lens: torch.Tensor
        query_start_loc: torch.Tensor

    models = types.ModuleType("a1.models")
    base = types.ModuleType("a1.models.base")
    base.AttentionMetadata = AttentionMetadata
    models.base = base
    sys.modules["a1.models"], sys.modules["a1.models.base"] = models, base

from fake_lm import FakeTokenizer, TinyLM  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model() -> TinyLM:
    torch.manual_seed(0)
    return TinyLM(seed=0)


@pytest.fixture(scope="session")
def tokenizer() -> FakeTokenizer:
    return FakeTokenizer()
