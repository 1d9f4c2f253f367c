"""Offline API shaped like vLLM's: LLM(model).generate(prompts, SamplingParams(...))."""
from __future__ import annotations

import os
from typing import Optional, Sequence, Union

from a1.engine.config import EngineConfig
from a1.engine.llm_engine import LLMEngine
from a1.engine.outputs import RequestFailed, RequestOutput, ScoreResult
from a1.engine.pair import PairEngine
from a1.engine.sampling_params import SamplingParams
from a1.engine.validation import params_per_prompt, score_pairs
from a1.models.draft_spec import load_draft
from a1.models.prompts import encode_prompts

Prompt = Union[str, list[int]]


def _load(model, dtype, name: str):
    if isinstance(model, (str, os.PathLike)):
        from a1.models.loader import load_model

        return load_model(str(model), dtype=dtype)
    if hasattr(model, "model") and hasattr(model, "tokenizer"):
        if dtype is not None and model.model.dtype != dtype:
            raise ValueError(f"dtype={dtype} differs from the loaded {name}'s {model.model.dtype}; load it with that dtype")
        return model
    raise TypeError(f"{name} must be a path, a built-in name or a LoadedModel, got {type(model).__name__}")


def _is_self(draft, model) -> bool:
    if draft is None or draft is model or (isinstance(draft, str) and draft == "self"):
        return True
    return isinstance(draft, (str, os.PathLike)) and isinstance(model, (str, os.PathLike)) and str(draft) == str(model)


class LLM:
    """model: the target, an HF directory, a GGUF file, a built-in name (see
    a1.models.loader.load_model) or an already loaded LoadedModel (anything with .model and
    .tokenizer). draft: a second model of the same vocabulary for the A1 policy and speculative
    decoding; None, "self" or the same path as model loads one model that serves both roles;
    "self:skip=A-B[,C-D...]" runs the target's own layers minus those ranges (same weights), and a
    directory of `a1 distill-draft` its distilled layers on the target's embedding and LM head
    (a1.models.draft_spec).
    num_speculative_tokens: k > 0 makes generate() lossless speculative decoding (the draft proposes
    k tokens, the target verifies them in one forward). kv_cache_gb: the KV budget of both models
    together (None: 1 GiB on CPU, half the free memory on CUDA). seed: seeds the requests that give none."""

    def __init__(
        self,
        model,
        draft=None,
        num_speculative_tokens: int = 0,
        dtype=None,
        kv_cache_gb: Optional[float] = None,
        block_size: int = 16,
        max_num_batched_tokens: int = 2048,
        max_num_seqs: int = 256,
        max_model_len: Optional[int] = None,
        enable_prefix_caching: bool = True,
        seed: int = 0,
    ) -> None:
        if isinstance(num_speculative_tokens, bool) or not isinstance(num_speculative_tokens, int) or num_speculative_tokens < 0:
            raise ValueError(f"num_speculative_tokens must be an int >= 0, got {num_speculative_tokens!r}")
        loaded = _load(model, dtype, "model")
        draft_loaded = loaded if _is_self(draft, model) else (load_draft(draft, loaded) or _load(draft, dtype, "draft"))
        if draft_loaded is not loaded and draft_loaded.model is loaded.model:
            draft_loaded = loaded
        self.loaded, self.tokenizer, self.draft_loaded = loaded, loaded.tokenizer, draft_loaded
        config = EngineConfig(
            kv_cache_gb=kv_cache_gb, block_size=block_size, max_num_batched_tokens=max_num_batched_tokens,
            max_num_seqs=max_num_seqs, max_model_len=max_model_len, enable_prefix_caching=enable_prefix_caching,
            seed=seed,
        )
        names = (_name(model, loaded), _name(draft, draft_loaded))
        self.pair = PairEngine.build(
            loaded.model, loaded.tokenizer, draft_loaded.model, draft_loaded.tokenizer, config, names=names
        )
        self.engine: LLMEngine = self.pair.target  # the target's engine (the only one in self mode)
        self.num_speculative_tokens = num_speculative_tokens
        if num_speculative_tokens:
            from a1.engine.speculative import SpeculativeDecoder

            self._speculative = SpeculativeDecoder(self.pair, num_speculative_tokens)

    @property
    def self_mode(self) -> bool:
        """Whether one model serves as both draft and target."""
        return self.pair.self_mode

    def encode(self, prompts, chat: bool = False) -> list[tuple[Optional[str], list[int]]]:
        """(text or None, token ids) per prompt, as generate() feeds them (a1.models.prompts)."""
        return encode_prompts(self.tokenizer, prompts, chat)

    def generate(
        self,
        prompts: Union[Prompt, Sequence[Prompt]],
        sampling_params: Union[SamplingParams, Sequence[SamplingParams], None] = None,
        chat: bool = False,
        use_tqdm: bool = False,
    ) -> list[RequestOutput]:
        """One RequestOutput per prompt, in order. A string prompt is tokenized (with the
        tokenizer's special tokens) or, with chat=True, becomes one user message of the chat template.
        Every prompt and its params are validated before any is submitted (an error leaves nothing
        queued). If a request's step fails, the others still finish, then RequestFailed names the
        failed prompts (its .outputs holds every output, the failed ones with finish_reason 'error');
        the engine stays usable."""
        items = self.encode(prompts, chat)
        params = params_per_prompt(sampling_params, len(items))
        if self.num_speculative_tokens:
            results = self._speculative.generate([token_ids for _, token_ids in items], params, use_tqdm=use_tqdm)
            for (prompt, _), out in zip(items, results):
                out.prompt = prompt
            return _raise_failed(results)
        for i, ((_, token_ids), p) in enumerate(zip(items, params)):
            self.engine.check_request(token_ids, p, name=f"prompts[{i}]")
        ids: list[int] = []
        results: list[Optional[RequestOutput]] = [None] * len(items)
        bar = None
        try:
            for (_, token_ids), p in zip(items, params):
                ids.append(self.engine.add_request(token_ids, p))
            index = {seq_id: i for i, seq_id in enumerate(ids)}
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
        finally:
            for seq_id in ids:  # only after an error: drop what is left of this call's requests
                if self.engine.is_live(seq_id):
                    self.engine.abort(seq_id)
            if bar is not None:
                bar.close()
        return _raise_failed(results)

    def score(
        self,
        prompt_token_ids: Union[list[int], Sequence[list[int]]],
        continuation_token_ids: Union[list[int], Sequence[list[int]]],
        temperature: float = 1.0,
    ) -> Union[ScoreResult, list[ScoreResult]]:
        """Log-prob of every continuation token given the prompt (and the preceding continuation),
        batched; one pair gives one ScoreResult, lists of pairs a list. Every pair is validated before
        any is submitted. If a pair's step fails, RequestFailed names it (its .outputs holds every
        ScoreResult, the failed ones with .error) after the others finish; the engine stays usable."""
        single, prompts, conts = score_pairs(prompt_token_ids, continuation_token_ids)
        for i, (prompt, cont) in enumerate(zip(prompts, conts)):
            prompt = self.engine.check_sequence(prompt, f"prompt_token_ids[{i}]")
            self.engine.check_score(len(prompt), cont, temperature, f"continuation_token_ids[{i}]")
        seq_ids: list[int] = []
        results: dict[int, ScoreResult] = {}
        try:
            for p in prompts:
                seq_ids.append(self.engine.add_sequence(p))
            for seq_id, cont in zip(seq_ids, conts):
                self.engine.submit_score(seq_id, list(cont), keep=False, temperature=temperature)
            while len(results) < len(seq_ids):
                for out in self.engine.step():
                    if isinstance(out, ScoreResult) and out.seq_id in seq_ids:
                        results[out.seq_id] = out
        finally:
            for seq_id in seq_ids:
                if self.engine.is_live(seq_id):
                    self.engine.abort(seq_id)
        ordered = [results[s] for s in seq_ids]
        failed = [i for i, out in enumerate(ordered) if out.error is not None]
        if failed:
            raise RequestFailed(f"score: pairs {failed}", [(ordered[i].seq_id, ordered[i].error) for i in failed], ordered)
        return ordered[0] if single else ordered

    def get_metrics(self) -> dict:
        """The target engine's counters; with a separate draft also its own under "draft", and the
        speculative decoding counters under "speculative" when num_speculative_tokens > 0."""
        metrics = self.engine.metrics.as_dict()
        if not self.pair.self_mode:
            metrics["draft"] = self.pair.draft.metrics.as_dict()
        if self.num_speculative_tokens:
            metrics["speculative"] = self._speculative.metrics.as_dict()
        return metrics


def _raise_failed(results: list[RequestOutput]) -> list[RequestOutput]:
    """results, or RequestFailed naming the prompts whose requests failed (its .outputs: all of them)."""
    failed = [i for i, out in enumerate(results) if out.error is not None]
    if failed:
        raise RequestFailed(
            f"generate: prompts {failed}", [(results[i].request_id, results[i].error) for i in failed], results
        )
    return results


def _name(spec, loaded) -> str:
    if isinstance(spec, (str, os.PathLike)) and str(spec) != "self":
        return str(spec)
    return str(getattr(loaded, "source", type(loaded.model).__name__))
