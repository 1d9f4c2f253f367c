"""A tiny random target/draft pair over a character vocabulary of printable ASCII, so that the
policy's inserted text ("Wait,", "Final Answer: \\boxed{") and boxed answers are encodable."""
from __future__ import annotations

import string
import sys
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine"))

from fake_lm import FakeConfig, FakeTokenizer, TinyLM  # noqa: E402

ALPHABET = string.printable[:95] + "\n"  # letters, digits, punctuation, space, newline
VOCAB = 2 + len(ALPHABET)


class CharTokenizer(FakeTokenizer):
    def __init__(self) -> None:
        super().__init__(VOCAB, {i + 2: ch for i, ch in enumerate(ALPHABET)})


def tiny_loaded(seed: int, tokenizer: CharTokenizer, name: str, **config) -> SimpleNamespace:
    """Anything with .model and .tokenizer is a loaded model for a1.LLM."""
    model = TinyLM(FakeConfig(vocab_size=VOCAB, **config), seed=seed)
    return SimpleNamespace(model=model, tokenizer=tokenizer, source=name)


def tiny_pair(tokenizer: CharTokenizer) -> tuple[SimpleNamespace, SimpleNamespace]:
    """The target and draft the policy, remote and serve tests share: a 2-layer target and a smaller
    1-layer draft of the same character vocabulary."""
    target = tiny_loaded(0, tokenizer, "tiny-target")
    draft = tiny_loaded(1, tokenizer, "tiny-draft", hidden_size=16, intermediate_size=32, num_layers=1)
    return target, draft
