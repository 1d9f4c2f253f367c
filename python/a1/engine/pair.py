"""A draft and a target model in one engine: one KV budget, one stepping loop.

Each model keeps its own LLMEngine (block pool, scheduler, runner), so sequences are addressed per
model (`pair.draft.add_sequence(...)`, `pair.target.submit_score(...)`); the two pools get the same
number of blocks from one budget split by bytes per token, so both can hold the same histories.
`step()` runs the target's batch and then the draft's, back to back on the same cores: never two
threads competing for them. In self mode (the draft is the target) one engine serves both roles.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Optional

from .config import EngineConfig, num_blocks_for_budget
from .llm_engine import LLMEngine, Output


def check_same_vocabulary(target, target_tokenizer, draft, draft_tokenizer, names: tuple[str, str]) -> None:
    """Draft and target exchange token ids, so they must mean the same tokens: the same embedding
    rows, tokenizer size, special ids and id -> token string for every id."""
    target_name, draft_name = names
    where = f"draft {draft_name!r} and target {target_name!r} do not share a vocabulary"
    if target.config.vocab_size != draft.config.vocab_size:
        raise ValueError(f"{where}: {target.config.vocab_size} vs {draft.config.vocab_size} embedding rows")
    if target_tokenizer.vocab_size != draft_tokenizer.vocab_size:
        raise ValueError(f"{where}: tokenizers of {target_tokenizer.vocab_size} vs {draft_tokenizer.vocab_size} tokens")
    for what in ("eos_token_id", "bos_token_id"):
        a, b = getattr(target_tokenizer, what, None), getattr(draft_tokenizer, what, None)
        if a != b:
            raise ValueError(f"{where}: {what} is {a} in the target and {b} in the draft")
    if sorted(target.config.eos_token_ids) != sorted(draft.config.eos_token_ids):
        raise ValueError(f"{where}: eos ids {target.config.eos_token_ids} vs {draft.config.eos_token_ids}")
    for token_id in range(target_tokenizer.vocab_size):
        a, b = target_tokenizer.id_to_token(token_id), draft_tokenizer.id_to_token(token_id)
        if a != b:
            raise ValueError(f"{where}: the first differing id is {token_id}: {a!r} in the target, {b!r} in the draft")


class PairEngine:
    """target and draft LLMEngines (the same object in self mode) driven by one step()."""

    def __init__(
        self, target: LLMEngine, draft: Optional[LLMEngine] = None, names: tuple[str, str] = ("target", "draft")
    ) -> None:
        self.target = target
        self.draft = target if draft is None else draft
        self.target_name = names[0]
        self.draft_name = names[0] if self.draft is target else names[1]
        pools = [getattr(e, "block_manager", None) for e in (self.target, self.draft)]
        if self.draft is not target and None not in pools and pools[0].num_blocks != pools[1].num_blocks:
            raise ValueError("the draft's and the target's pools must hold the same number of blocks")

    @classmethod
    def build(
        cls,
        target_model,
        target_tokenizer,
        draft_model=None,
        draft_tokenizer=None,
        config: Optional[EngineConfig] = None,
        names: tuple[str, str] = ("target", "draft"),
    ) -> "PairEngine":
        """Engines for a target and an optional draft model (None or the same model: self mode)
        with the pools sized from one budget (config.kv_cache_gb or num_blocks, for both)."""
        config = config or EngineConfig()
        if draft_model is None or draft_model is target_model:
            return cls(LLMEngine(target_model, target_tokenizer, config), names=names)
        check_same_vocabulary(target_model, target_tokenizer, draft_model, draft_tokenizer or target_tokenizer, names)
        num_blocks = config.num_blocks or num_blocks_for_budget(
            [target_model, draft_model], config.kv_cache_gb, config.block_size
        )[0]
        shared = replace(config, num_blocks=num_blocks)
        target = LLMEngine(target_model, target_tokenizer, shared)
        # the draft draws its unseeded requests' seeds from its own stream
        draft = LLMEngine(draft_model, draft_tokenizer or target_tokenizer, replace(shared, seed=config.seed + 1))
        limit = min(target.max_model_len, draft.max_model_len)
        target.max_model_len = draft.max_model_len = limit
        return cls(target, draft, names)

    @property
    def self_mode(self) -> bool:
        return self.draft is self.target

    @property
    def engines(self) -> tuple[LLMEngine, ...]:
        return (self.target,) if self.self_mode else (self.target, self.draft)

    @property
    def max_model_len(self) -> int:
        return min(e.max_model_len for e in self.engines)

    def has_unfinished(self) -> bool:
        return any(e.has_unfinished() for e in self.engines)

    def step(self) -> list[tuple[LLMEngine, Output]]:
        """One step of each model with work, the target's first; each finished output with the
        engine it came from (sequence ids are per engine)."""
        finished: list[tuple[LLMEngine, Output]] = []
        for engine in self.engines:
            if engine.has_unfinished():
                finished.extend((engine, out) for out in engine.step())
        return finished

    def num_used_blocks(self) -> dict[str, int]:
        return {role: getattr(getattr(e, "block_manager", None), "num_used_blocks", 0)
                for role, e in (("target", self.target), ("draft", self.draft))}
