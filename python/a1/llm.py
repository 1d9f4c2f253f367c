"""Offline API shaped like vLLM's: LLM(model).generate(prompts, SamplingParams(...))."""
from __future__ import annotations

import os
from typing import Optional, Sequence, Union

from a1.engine.config import EngineConfig
from a1.engine.llm_engine import LLMEngine
from a1.engine.outputs import RequestOutput, ScoreResult
from a1.engine.sampling_params import SamplingParams

Prompt = Union[str, list[int]]


def _is_token_ids(value) -> bool:
    return isinstance(value, (list, tuple)) and len(value) > 0 and all(
        isinstance(t, int) and not isinstance(t, bool) for t in value
    )


class LLM:
    """model: an HF directory, a GGUF file, a built-in name (see a1.models.loader.load_model) or an
    already loaded LoadedModel (anything with .model and .tokenizer). kv_cache_gb: KV budget (None:
    1 GiB on CPU, half the free memory on CUDA). seed: seeds the requests that give none."""

    def __init__(
        self,
        model,
        dtype=None,
        kv_cache_gb: Optional[float] = None,
        block_size: int = 16,
        max_num_batched_tokens: int = 2048,
        max_num_seqs: int = 256,
        max_model_len: Optional[int] = None,
        enable_prefix_caching: bool = True,
        seed: int = 0,
    ) -> None:
        if isinstance(model, (str, os.PathLike)):
            from a1.models.loader import load_model

            loaded = load_model(str(model), dtype=dtype)
        elif hasattr(model, "model") and hasattr(model, "tokenizer"):
            loaded = model
            if dtype is not None and loaded.model.dtype != dtype:
                raise ValueError(f"dtype={dtype} differs from the loaded model's {loaded.model.dtype}; load it with that dtype")
        else:
            raise TypeError(f"model must be a path, a built-in name or a LoadedModel, got {type(model).__name__}")
        self.loaded, self.tokenizer = loaded, loaded.tokenizer
        config = EngineConfig(
            kv_cache_gb=kv_cache_gb, block_size=block_size, max_num_batched_tokens=max_num_batched_tokens,
            max_num_seqs=max_num_seqs, max_model_len=max_model_len, enable_prefix_caching=enable_prefix_caching,
            seed=seed,
        )
        self.engine = LLMEngine(loaded.model, loaded.tokenizer, config)

    def _prompts(self, prompts, chat: bool) -> list[tuple[Optional[str], list[int]]]:
        if isinstance(prompts, str) or _is_token_ids(prompts):
            prompts = [prompts]
        out = []
        for i, prompt in enumerate(prompts):
            if isinstance(prompt, str):
                if chat:
                    text = self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True)
                    out.append((prompt, self.tokenizer.encode(text, add_special_tokens=False)))
                else:
                    out.append((prompt, self.tokenizer.encode(prompt, add_special_tokens=True)))
            elif _is_token_ids(prompt):
                if chat:
                    raise ValueError(f"prompts[{i}]: chat=True needs string prompts, got token ids")
                out.append((None, list(prompt)))
            else:
                raise TypeError(f"prompts[{i}] must be a non-empty string or list of token ids, got {prompt!r}")
        return out

    def generate(
        self,
        prompts: Union[Prompt, Sequence[Prompt]],
        sampling_params: Union[SamplingParams, Sequence[SamplingParams], None] = None,
        chat: bool = False,
        use_tqdm: bool = False,
    ) -> list[RequestOutput]:
        """One RequestOutput per prompt, in order. A string prompt is tokenized (with the
        tokenizer's special tokens) or, with chat=True, becomes one user message of the chat template."""
        items = self._prompts(prompts, chat)
        if sampling_params is None or isinstance(sampling_params, SamplingParams):
            params = [sampling_params or SamplingParams()] * len(items)
        else:
            params = list(sampling_params)
            if len(params) != len(items):
                raise ValueError(f"sampling_params has {len(params)} entries for {len(items)} prompts")
        ids = [self.engine.add_request(token_ids, p) for (_, token_ids), p in zip(items, params)]
        index = {seq_id: i for i, seq_id in enumerate(ids)}
        results: list[Optional[RequestOutput]] = [None] * len(ids)
        bar = None
        if use_tqdm:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(ids), desc="generate")
        remaining = len(ids)
        while remaining:
            for out in self.engine.step():
                i = index.get(out.request_id) if isinstance(out, RequestOutput) else None
                if i is not None and results[i] is None:
                    out.prompt = items[i][0]
                    results[i] = out
                    remaining -= 1
                    if bar is not None:
                        bar.update(1)
        if bar is not None:
            bar.close()
        return results

    def score(
        self,
        prompt_token_ids: Union[list[int], Sequence[list[int]]],
        continuation_token_ids: Union[list[int], Sequence[list[int]]],
        temperature: float = 1.0,
    ) -> Union[ScoreResult, list[ScoreResult]]:
        """Log-prob of every continuation token given the prompt (and the preceding continuation),
        batched; one pair gives one ScoreResult, lists of pairs a list."""
        single = _is_token_ids(prompt_token_ids)
        prompts = [prompt_token_ids] if single else list(prompt_token_ids)
        conts = [continuation_token_ids] if single else list(continuation_token_ids)
        if len(prompts) != len(conts):
            raise ValueError(f"{len(prompts)} prompts but {len(conts)} continuations")
        seq_ids = [self.engine.add_sequence(p) for p in prompts]
        results: dict[int, ScoreResult] = {}
        try:
            for seq_id, cont in zip(seq_ids, conts):
                self.engine.submit_score(seq_id, list(cont), keep=False, temperature=temperature)
            while len(results) < len(seq_ids):
                for out in self.engine.step():
                    if isinstance(out, ScoreResult) and out.seq_id in seq_ids:
                        results[out.seq_id] = out
        finally:
            for seq_id in seq_ids:
                if seq_id in self.engine.seqs:
                    self.engine.abort(seq_id)
        ordered = [results[s] for s in seq_ids]
        return ordered[0] if single else ordered

    def get_metrics(self) -> dict:
        return self.engine.metrics.as_dict()
