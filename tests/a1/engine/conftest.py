import pytest
import torch

from fake_lm import FakeTokenizer, TinyLM


@pytest.fixture(scope="session")
def tiny_model() -> TinyLM:
    torch.manual_seed(0)
    return TinyLM(seed=0)


@pytest.fixture(scope="session")
def tokenizer() -> FakeTokenizer:
    return FakeTokenizer()
