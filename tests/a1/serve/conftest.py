import sys
from pathlib import Path

import pytest

import a1

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "policy"))

from tiny_pair import CharTokenizer, tiny_pair  # noqa: E402


@pytest.fixture(scope="module")
def char_tokenizer() -> CharTokenizer:
    return CharTokenizer()


@pytest.fixture(scope="module")
def served_pair(char_tokenizer):
    """The tiny character pair, served in-process (its own engine) and loaded for reference."""
    from a1.serve import ServerThread, create_app

    target, draft = tiny_pair(char_tokenizer)
    served = a1.LLM(target, draft=draft, kv_cache_gb=0.02, max_model_len=256)
    local = a1.LLM(target, draft=draft, kv_cache_gb=0.02, max_model_len=256)
    thread = ServerThread(create_app(served)).start()
    yield thread.url, local
    thread.stop()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> str:
    """A tiny random llama with a real (HF tokenizers) BPE tokenizer: the one that raises on a lone surrogate."""
    from serve_helpers import write_tiny_checkpoint

    return str(write_tiny_checkpoint(tmp_path_factory.mktemp("serve") / "tiny", seed=3))

