"""RemoteLLM: a draft/target pair of remote engines with a1.LLM's surface for the policy
(`a1.policy.generate(prompts, target=RemoteLLM(...))`): .pair, .tokenizer, .encode(), .get_metrics()."""
from __future__ import annotations

from typing import Optional, Sequence, Union

from a1.engine.pair import PairEngine
from a1.models.prompts import encode_prompts

from .config import RemoteConfig
from .engine import RemoteBackend
from .routing import check_urls
from .tokenizer import load_tokenizer
from .transport import Transport


class RemoteLLM:
    """target_url / draft_url: base URL of each model's server, or a list of URLs of its replicas
    (each sequence sticks to one replica, new ones go to the least loaded, a replica that fails is
    taken out and its sequences continue on the others: routing.py). draft_url None, or the
    target's URLs and model: self mode, one engine in both roles. tokenizer: a local HF
    directory, GGUF file or built-in name of the served model (or a loaded tokenizer): token ids
    travel between client and servers, so the draft and the target must share this vocabulary.
    protocol: "auto", "openai" or "sglang" (for both models; draft_protocol overrides it for the
    draft). target_model / draft_model: the served model each engine's requests name (default:
    each server's first; one a1 serve can serve both). max_model_len: default the servers' (the
    pair uses the smallest). config: timeouts, retries, concurrency (RemoteConfig).
    check_alignment: run the start-up log-prob probe on every server."""

    def __init__(self, target_url: Union[str, Sequence[str]], draft_url: Union[str, Sequence[str], None] = None,
                 tokenizer=None, protocol: str = "auto", *, draft_protocol: Optional[str] = None,
                 target_model: Optional[str] = None, draft_model: Optional[str] = None,
                 max_model_len: Optional[int] = None, config: Optional[RemoteConfig] = None,
                 check_alignment: bool = True) -> None:
        target_urls = check_urls(target_url, "target_url")
        draft_urls = None if draft_url is None else check_urls(draft_url, "draft_url")
        if config is not None and not isinstance(config, RemoteConfig):
            raise TypeError(f"config must be a RemoteConfig, got {type(config).__name__}")
        loaded = load_tokenizer(tokenizer)
        self.tokenizer = loaded.tokenizer
        self.transport = Transport(config)
        try:
            target = RemoteBackend(target_urls, loaded, protocol, model=target_model, max_model_len=max_model_len,
                                   transport=self.transport, check_alignment=check_alignment)
            draft = None
            same = draft_urls is None or (sorted(draft_urls) == sorted(target_urls)
                                          and draft_model in (None, target.model))
            if not same:
                draft = RemoteBackend(draft_urls, loaded, draft_protocol or protocol, model=draft_model,
                                      max_model_len=max_model_len, transport=self.transport,
                                      check_alignment=check_alignment)
        except BaseException:
            self.transport.close()
            raise
        # named by the served model (a1 serve: its --model, as a1.LLM names it), so that calibration
        # files match across servers of the same model
        names = (target.model or target.url, (draft.model or draft.url) if draft is not None else target.model or target.url)
        self.pair = PairEngine(target, draft, names=names)
        self.engine = target

    @property
    def self_mode(self) -> bool:
        return self.pair.self_mode

    def encode(self, prompts, chat: bool = False) -> list[tuple[Optional[str], list[int]]]:
        """(text or None, token ids) per prompt, as a1.LLM.encode (one rule: a1.models.prompts)."""
        return encode_prompts(self.tokenizer, prompts, chat)

    def get_metrics(self) -> dict:
        """The target engine's counters; with a separate draft also its own under "draft";
        "replicas": each server's URL -> "up" or why it was taken out."""
        metrics = _engine_metrics(self.pair.target)
        if not self.pair.self_mode:
            metrics["draft"] = _engine_metrics(self.pair.draft)
        return metrics

    def close(self) -> None:
        """Cancel what is in flight and close the connections."""
        self.transport.close()

    def __enter__(self) -> "RemoteLLM":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _engine_metrics(engine: RemoteBackend) -> dict:
    metrics = engine.metrics.as_dict()
    metrics["replicas"] = {r.url: "up" if r.alive else f"down: {engine.transport.down[r.url]}" for r in engine.replicas}
    return metrics
