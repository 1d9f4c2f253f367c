"""on_reject="append", the paper's pipeline: a rejected draft step is kept and the target then
writes exactly target_step_tokens tokens, ending early only at EOS or a final answer (not at the
step's blank line, which used to cut it to a few tokens); append_until="step" ends it there too."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

import a1
import a1_ext
from tiny_pair import ALPHABET, VOCAB
from fake_lm import FakeConfig, TinyLM

NEWLINE = 2 + ALPHABET.index("\n")
K = 12


class NewlineLM(TinyLM):
    """Writes "\\n" often, so a blank line (the step boundary) comes within a few tokens."""

    def compute_logits(self, hidden):
        logits = super().compute_logits(hidden)
        logits[:, NEWLINE] += 7.0
        return logits


@pytest.fixture(scope="module")
def newline_llm(char_tokenizer):
    model = NewlineLM(FakeConfig(vocab_size=VOCAB), seed=3)
    return a1.LLM(SimpleNamespace(model=model, tokenizer=char_tokenizer, source="newline"), kv_cache_gb=0.02)


def continuations(llm, **kwargs) -> list[tuple[object, str, bool]]:
    """(continuation record, its text, the sample went on after it) per rejected-and-kept draft."""
    results = a1_ext.generate(["Solve: 1+1"] * 3, target=llm, num_samples=4, alpha=0.5, on_reject="append",
                              step_tokens=6, target_step_tokens=K, max_tokens=400, max_turns=6, progress=False,
                              **kwargs)
    found = []
    for result in results:
        for sample in result.samples:
            steps, texts, position = sample.steps, [], 0
            for step in steps:  # kept steps tile the sample's tokens in order
                ids = sample.token_ids[position : position + step.num_tokens] if step.kept else []
                position += len(ids)
                texts.append(llm.tokenizer.decode(ids))
            for i, step in enumerate(steps[:-1]):
                if step.decision == "takeover" and step.by == "draft" and steps[i + 1].by == "target":
                    assert step.kept and steps[i + 1].kept
                    found.append((steps[i + 1], texts[i + 1], i + 2 < len(steps)))
    return found


def test_the_target_writes_exactly_k_tokens(newline_llm, char_tokenizer):
    found = continuations(newline_llm)
    assert len(found) >= 5
    for continuation, _, went_on in found:
        if went_on:  # neither EOS nor an answer ended it: exactly K tokens
            assert continuation.num_tokens == K
    assert any(went_on and "\n\n" in text for _, text, went_on in found)  # blank lines did not end them


def test_append_until_step_ends_at_the_blank_line(newline_llm):
    found = continuations(newline_llm, append_until="step")
    assert found
    assert any(c.num_tokens < K for c, _, went_on in found if went_on)  # the blank line cut some short
    for c, text, went_on in found:
        assert c.num_tokens <= K and (c.num_tokens == K or text.endswith("\n\n") or not went_on)


def test_append_until_is_checked():
    with pytest.raises(ValueError, match="append_until must be one of"):
        a1.policy.PolicyConfig(append_until="never")
