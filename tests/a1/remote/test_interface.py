"""The surface the policy uses (a1.engine.interface) is implemented by the embedded engine and by
the remote one: every member is there, and every method accepts the Protocol's parameters with
the same kinds and defaults (a test of the definitions, not of hasattr)."""
from __future__ import annotations

import inspect

import pytest

import a1
from a1.engine.interface import EnginePair, ModelEngine, PolicyBackend
from a1.remote import RemoteLLM


def protocol_methods(protocol) -> dict:
    return {name: member for name, member in vars(protocol).items()
            if callable(member) and not name.startswith("_")}


def check_signatures(protocol, implementation) -> None:
    for name, method in protocol_methods(protocol).items():
        impl = getattr(type(implementation), name)
        want = list(inspect.signature(method).parameters.values())[1:]  # after self
        have = inspect.signature(impl).parameters
        for p in want:
            assert p.name in have, f"{type(implementation).__name__}.{name} lacks parameter {p.name}"
            got = have[p.name]
            assert got.kind == p.kind, f"{type(implementation).__name__}.{name}({p.name}): {got.kind} vs {p.kind}"
            assert got.default == p.default, f"{type(implementation).__name__}.{name}({p.name}) default"


@pytest.fixture(scope="module")
def backends(char_models, server):
    embedded = a1.LLM(char_models[0], draft=char_models[1], kv_cache_gb=0.02)
    remote = RemoteLLM(server.url, server.url, tokenizer=char_models[0].tokenizer, target_model="tiny-target",
                       draft_model="tiny-draft", check_alignment=False)
    yield {"embedded": embedded, "remote": remote}
    remote.close()


@pytest.mark.parametrize("kind", ["embedded", "remote"])
def test_both_backends_implement_the_surface(backends, kind):
    llm = backends[kind]
    assert isinstance(llm, PolicyBackend) and isinstance(llm.pair, EnginePair)
    check_signatures(PolicyBackend, llm)
    check_signatures(EnginePair, llm.pair)
    for engine in llm.pair.engines:
        assert isinstance(engine, ModelEngine)
        check_signatures(ModelEngine, engine)
    assert llm.encode(["Hi"], chat=False) == backends["embedded"].encode(["Hi"], chat=False)  # one encoding rule


def test_the_check_fails_on_a_backend_that_differs():
    class Bent:
        def add_sequence(self, ids):  # renamed parameter
            return 0

        def truncate(self, seq_id, num_tokens=0):  # a default the Protocol does not have
            pass

    with pytest.raises(AssertionError, match="lacks parameter token_ids"):
        check_signatures(type("P", (), {"add_sequence": ModelEngine.add_sequence}), Bent())
    with pytest.raises(AssertionError, match="default"):
        check_signatures(type("P", (), {"truncate": ModelEngine.truncate}), Bent())
    assert not isinstance(Bent(), ModelEngine)
