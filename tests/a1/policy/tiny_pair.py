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
