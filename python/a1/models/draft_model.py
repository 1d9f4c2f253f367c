"""Drafts made from the target itself: a decoder over a few layers that shares the target's embedding,
LM head and RoPE tables (the same tensors, no copy).

- skip_draft(target, kept): the target's own layers `kept` (Draft & Verify, Zhang et al. 2024;
  LayerSkip, Elhoushi et al. 2024): no new weights at all.
- new_layers_draft(target, num_layers): fresh layers of the target's shape (a distilled draft,
  a1.distill / a1.models.draft_dir, fills them).

A DraftLM is a DecoderLM to the engine: its config says num_layers = its own layer count, so its KV
cache, bytes_per_token and forward cover only the layers it runs, and the pair engine gives it its
own pool beside the target's.
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import torch

from .base import DecoderLM
from .layers import DecoderLayer, RMSNorm


class DraftLM(DecoderLM):
    """DecoderLM over `layers` and `norm`, with the target's embed_weight, lm_head and rotary tables.

    source_layers: for each layer, the target layer it is (a skip draft) or None (a new layer).
    Moving or casting a DraftLM alone would split it from the tensors it shares with the target, so
    .to() / .float() / ... are refused: move the target, then build the draft again."""

    def __init__(self, target: DecoderLM, layers: Sequence[DecoderLayer], norm: RMSNorm,
                 source_layers: Sequence[Optional[int]]) -> None:
        torch.nn.Module.__init__(self)  # not DecoderLM.__init__: it would allocate a whole model
        if not layers:
            raise ValueError("a draft needs at least one layer")
        if len(source_layers) != len(layers):
            raise ValueError(f"source_layers has {len(source_layers)} entries for {len(layers)} layers")
        self.config = dataclasses.replace(target.config, num_layers=len(layers))
        self.embed_weight = target.embed_weight  # the same Parameter: registered here, stored once
        self.layers = torch.nn.ModuleList(layers)
        self.norm = norm
        self.lm_head = target.lm_head
        self.rotary = target.rotary
        self.source_layers = tuple(source_layers)
        self._built = True

    def _apply(self, fn, recurse=True):
        if getattr(self, "_built", False):
            raise RuntimeError("a draft built from a target shares its tensors: move or cast the target, then "
                               "build the draft again (a1.models.draft_spec.load_draft)")
        return super()._apply(fn, recurse)

    def use_weight_panels(self, enable: bool = True) -> int:
        """Relayout the draft's own (new) layers only: shared layers and the LM head follow the target."""
        return sum(layer.use_weight_panels(enable) for layer, source in zip(self.layers, self.source_layers)
                   if source is None)

    def own_parameters(self) -> list[torch.nn.Parameter]:
        """The parameters not shared with the target (a skip draft's: none)."""
        shared = {id(p) for p in (self.embed_weight, self.lm_head) if p is not None}
        if all(s is not None for s in self.source_layers):
            return []
        return [p for p in self.parameters() if id(p) not in shared]


def skip_draft(target: DecoderLM, kept: Sequence[int]) -> DraftLM:
    """A draft running the target's layers `kept` (in the given order) and its final norm: the same
    modules and parameter tensors as the target's."""
    kept = list(kept)
    num = len(target.layers)
    bad = [i for i in kept if not 0 <= i < num]
    if bad:
        raise ValueError(f"kept layers {bad} are outside the target's 0-{num - 1}")
    if len(set(kept)) != len(kept):
        raise ValueError(f"kept layers {kept} repeat a layer (its KV cache would be written twice)")
    return DraftLM(target, [target.layers[i] for i in kept], target.norm, kept)


def new_layers_draft(target: DecoderLM, num_layers: int) -> DraftLM:
    """A draft of `num_layers` new layers of the target's shape and dtype (uninitialised weights) and a
    new final norm; the target's embedding, LM head and RoPE tables."""
    if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
        raise ValueError(f"num_layers must be an int >= 1, got {num_layers!r}")
    config = dataclasses.replace(target.config, num_layers=num_layers)
    layers = [DecoderLayer(config, target.dtype) for _ in range(num_layers)]
    norm = RMSNorm(config.hidden_size, config.rms_norm_eps, target.dtype)
    return DraftLM(target, layers, norm, [None] * num_layers)
