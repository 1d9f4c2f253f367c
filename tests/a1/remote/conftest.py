import pytest

import a1
from remote_helpers import Faults, serve_with_faults
from tiny_pair import CharTokenizer, tiny_pair


@pytest.fixture(scope="module")
def char_tokenizer() -> CharTokenizer:
    return CharTokenizer()


@pytest.fixture(scope="module")
def char_models(char_tokenizer):
    return tiny_pair(char_tokenizer)


@pytest.fixture(scope="module")
def local_pair(char_models):
    """The embedded engine the remote results are compared with."""
    return a1.LLM(char_models[0], draft=char_models[1], kv_cache_gb=0.02, seed=0)


@pytest.fixture(scope="module")
def faults() -> Faults:
    return Faults()


@pytest.fixture(scope="module")
def server(char_models, faults):
    """The char pair behind an in-process a1 serve whose answers go through `faults`."""
    served = a1.LLM(char_models[0], draft=char_models[1], kv_cache_gb=0.02, seed=0)
    thread = serve_with_faults(served, faults)
    yield thread
    thread.stop()


@pytest.fixture(autouse=True)
def no_faults(faults):
    faults.set(None)
    yield
    faults.set(None)


@pytest.fixture(scope="session")
def smollm2_llm():
    """The bundled SmolLM2 GGUF in the embedded engine (loaded once: ~10 s); skipped if absent."""
    from a1.models.registry import BUILTIN_MODELS

    try:
        BUILTIN_MODELS["smollm2-135m"].find()
    except FileNotFoundError as err:
        print(f"\nskipping: {err}")
        pytest.skip(f"smollm2-135m is not installed: {err}")
    return a1.LLM("smollm2-135m", kv_cache_gb=0.1, max_model_len=1024)
