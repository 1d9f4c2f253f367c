"""Distillation data: calibration prompts only, shards written once and resumed, the teacher's top-k."""
from __future__ import annotations

from types import SimpleNamespace

import torch

from a1.data import is_calibration
from a1.distill.data import build_shards, calibration_prompts, load_shard, teacher_targets
from a1.distill.forward import logits_of, prefill_hidden


class FakeTokenizer:
    def apply_chat_template(self, messages, add_generation_prompt=True) -> str:
        return "<user>" + messages[0]["content"] + "<assistant>"

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [2 + ord(c) % 60 for c in text[:12]]


class FakeLLM:
    """generate() continues every prompt with 5 fixed tokens; counts its calls."""

    def __init__(self, model) -> None:
        self.loaded = SimpleNamespace(model=model)
        self.calls = 0

    def generate(self, prompts, params):
        self.calls += 1
        assert len(params) == len(prompts)
        return [SimpleNamespace(outputs=[SimpleNamespace(token_ids=[7, 8, 9, 10, 11])]) for _ in prompts]


def test_only_calibration_prompts() -> None:
    prompts = calibration_prompts(FakeTokenizer(), ["arith", "gsm8k"], seed=0)
    names = {name.split("/", 1)[0] for name, _ in prompts}
    assert names == {"arith", "gsm8k"} and len(prompts) == 193 + 247
    assert all(is_calibration(name.split("/", 1)[1]) for name, _ in prompts)
    assert calibration_prompts(FakeTokenizer(), ["arith"], seed=0, limit_per_dataset=3).__len__() == 3


def test_teacher_targets_are_the_targets_top_k(target) -> None:
    ids = [3, 14, 15, 9, 26, 5]
    values, indices = teacher_targets(target.model, ids, 2, 4)
    assert values.shape == (4, 4) and values.dtype == torch.float16 and indices.dtype == torch.int32
    full = torch.log_softmax(logits_of(target.model, prefill_hidden(target.model, ids)[1:5]), -1)
    torch.testing.assert_close(values.float(), full.topk(4, -1).values, atol=2e-3, rtol=0)


def test_shards_are_written_once_and_resumed(target, tmp_path) -> None:
    llm = FakeLLM(target.model)
    prompts = [[5, 6, 7], [8, 9], [10, 11, 12, 13], [14, 15], [16, 17, 18]]
    stop_after = iter([False, True])  # the budget runs out after the first shard
    paths = build_shards(llm, prompts, tmp_path, 2, (0.0, 0.7), 5, 4, 0, should_stop=lambda: next(stop_after))
    assert [p.name for p in paths] == ["shard-0000.pt"] and llm.calls == 1
    paths = build_shards(llm, prompts, tmp_path, 2, (0.0, 0.7), 5, 4, 0)  # resumed: shard 0 is not made again
    assert [p.name for p in paths] == ["shard-0000.pt", "shard-0001.pt", "shard-0002.pt"] and llm.calls == 3
    sequences = load_shard(paths[0])
    assert len(sequences) == 4  # 2 prompts x 2 temperatures
    first = sequences[0]
    assert first.ids.tolist() == [5, 6, 7, 7, 8, 9, 10, 11] and first.start == 3 and first.num_targets == 5
    assert first.top_ids.shape == (5, 4)
