import pytest

import a1
from tiny_pair import CharTokenizer, tiny_pair


@pytest.fixture(scope="module")
def char_tokenizer() -> CharTokenizer:
    return CharTokenizer()


@pytest.fixture(scope="module")
def tiny_models(char_tokenizer):
    return tiny_pair(char_tokenizer)


@pytest.fixture(scope="module")
def tiny_target(tiny_models):
    return tiny_models[0]


@pytest.fixture(scope="module")
def tiny_draft(tiny_models):
    return tiny_models[1]


@pytest.fixture(params=["pair", "self"])
def llm(request, tiny_target, tiny_draft):
    """A fresh engine per test (pools start empty), as a target/draft pair or in self mode."""
    draft = tiny_draft if request.param == "pair" else "self"
    return a1.LLM(tiny_target, draft=draft, kv_cache_gb=0.02, seed=0)
