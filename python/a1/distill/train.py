"""Knowledge distillation of a shallow draft from its target (DistillSpec, Zhou et al. 2024; the
early-exit training of LayerSkip, Elhoushi et al. 2024), on the CPU in a fixed time budget.

The draft is `num_layers` decoder layers of the target's shape, started from copies of some of the
target's layers (`init`), on the target's embedding and LM head, which stay frozen and shared. It
learns to match the target's next-token distribution (its top-k, renormalized: a sparse teacher) on
the target's own continuations (a1.distill.data). The learning rate follows the time budget
(warm-up, then cosine to a tenth), so a run of any length ends annealed; an interrupted run resumes
from its last checkpoint (parameters, optimizer, position in the data, time spent).
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

import torch

from a1.models.draft_model import DraftLM
from a1.models.layers import dense_weight

from .data import TrainSequence
from .forward import layers_forward


@dataclass
class TrainState:
    step: int = 0
    seconds: float = 0.0  # training time spent so far (over every resumed run)
    tokens: int = 0
    epoch: int = 0
    position: int = 0  # batches of this epoch already done
    loss: float = float("nan")  # moving average
    agreement: float = float("nan")  # moving average of top-1 agreement with the teacher's argmax


def init_layers(draft: DraftLM, target, init: list[Optional[int]]) -> None:
    """Copy target layer init[i] into draft layer i (dense [N, K]); None leaves a fresh layer with
    small random projections (std 0.02) and unit norms. The final norm starts as the target's."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for layer, source in zip(draft.layers, init):
            for (module, name), (src_module, _) in zip(layer.projections(), _projections(target, source)):
                dest = getattr(module, name)
                if src_module is None:
                    dest.copy_(torch.randn(dest.shape, generator=g) * 0.02)
                else:
                    dest.copy_(dense_weight(getattr(src_module, name)))
            if source is not None:
                src = target.layers[source]
                for a, b in ((layer.input_norm, src.input_norm), (layer.post_attention_norm, src.post_attention_norm)):
                    a.weight.copy_(b.weight)
                for part, names in ((layer.attention, ("qkv_bias", "o_bias")), (layer.mlp, ("gate_up_bias", "down_bias"))):
                    src_part = src.attention if part is layer.attention else src.mlp
                    for bias in names:
                        if getattr(part, bias) is not None:
                            getattr(part, bias).copy_(getattr(src_part, bias))
            else:
                layer.input_norm.weight.fill_(1.0)
                layer.post_attention_norm.weight.fill_(1.0)
        draft.norm.weight.copy_(target.norm.weight)


def _projections(target, source: Optional[int]):
    if source is None:
        return [(None, None)] * 4
    return target.layers[source].projections()


def trainable(draft: DraftLM) -> list[torch.nn.Parameter]:
    params = draft.own_parameters()
    for p in params:
        p.requires_grad_(True)
    return params


def batches(sequences: list[TrainSequence], batch_tokens: int, seed: int, epoch: int) -> list[list[int]]:
    """Indices of the sequences, shuffled per epoch, grouped so that a batch's padded size stays near
    batch_tokens (sequences of like length together: less padding)."""
    order = list(range(len(sequences)))
    random.Random(seed * 7919 + epoch).shuffle(order)
    out: list[list[int]] = []
    window = 64  # sort by length within windows: batches differ from epoch to epoch
    for begin in range(0, len(order), window):
        chunk = sorted(order[begin : begin + window], key=lambda i: sequences[i].ids.numel())
        current: list[int] = []
        for i in chunk:
            longest = max([sequences[j].ids.numel() for j in current] + [sequences[i].ids.numel()])
            if current and longest * (len(current) + 1) > batch_tokens:
                out.append(current)
                current = []
            current.append(i)
        if current:
            out.append(current)
    random.Random(seed * 104729 + epoch).shuffle(out)
    return out


def distill_loss(draft: DraftLM, target, head: torch.Tensor, batch: list[TrainSequence]) -> tuple[torch.Tensor, float, int]:
    """(loss, top-1 agreement, positions): cross-entropy of the draft's next-token distribution
    against the target's renormalized top-k at every continuation position (= the KL to it up to a
    constant)."""
    length = max(s.ids.numel() for s in batch)
    ids = torch.zeros(len(batch), length, dtype=torch.int64)
    for row, s in enumerate(batch):
        ids[row, : s.ids.numel()] = s.ids.long()
    hidden = layers_forward(target, list(draft.layers), draft.norm.weight, ids)
    rows = torch.cat([hidden[b, s.start - 1 : s.ids.numel() - 1] for b, s in enumerate(batch)])
    logprobs = torch.log_softmax(torch.nn.functional.linear(rows, head).float(), dim=-1)
    top_ids = torch.cat([s.top_ids for s in batch]).long()
    teacher = torch.softmax(torch.cat([s.top_logprobs for s in batch]).float(), dim=-1)
    loss = -(teacher * logprobs.gather(1, top_ids)).sum(-1).mean()
    agreement = float((logprobs.argmax(-1) == top_ids[:, 0]).float().mean())
    return loss, agreement, rows.shape[0]


def lr_at(fraction: float, peak: float, warmup: float = 0.03) -> float:
    """Warm-up over the first `warmup` of the budget, then cosine from peak to peak / 10."""
    import math

    if fraction < warmup:
        return peak * max(fraction / warmup, 0.05)
    progress = min(1.0, (fraction - warmup) / (1 - warmup))
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def train(draft: DraftLM, target, sequences: list[TrainSequence], seconds: float, lr: float, batch_tokens: int,
          seed: int, checkpoint: Path, checkpoint_seconds: float = 60.0,
          on_step: Callable[[TrainState], None] = lambda state: None, max_steps: Optional[int] = None) -> TrainState:
    """Train until `seconds` of training time have been spent (counting earlier runs resumed from
    `checkpoint`), or for max_steps steps when given (the schedule then follows steps, not time: a
    resumed run repeats an uninterrupted one exactly); checkpoints every checkpoint_seconds and at
    the end."""
    params = trainable(draft)
    optimizer = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.98), weight_decay=0.0)
    state = resume(checkpoint, params, optimizer)
    head = dense_weight(target.lm_head_weight).detach().contiguous()  # once: panels would be re-read per call
    last_save = time.perf_counter()
    plan = batches(sequences, batch_tokens, seed, state.epoch)
    def progress() -> float:
        return state.step / max_steps if max_steps is not None else state.seconds / seconds

    while progress() < 1.0:
        if state.position >= len(plan):
            state.epoch, state.position = state.epoch + 1, 0
            plan = batches(sequences, batch_tokens, seed, state.epoch)
        start = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = lr_at(progress(), lr)
        loss, agreement, positions = distill_loss(draft, target, head, [sequences[i] for i in plan[state.position]])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        state.step, state.position, state.tokens = state.step + 1, state.position + 1, state.tokens + positions
        state.seconds += time.perf_counter() - start
        value = loss.item()
        state.loss = value if state.loss != state.loss else 0.95 * state.loss + 0.05 * value
        state.agreement = agreement if state.agreement != state.agreement else 0.95 * state.agreement + 0.05 * agreement
        on_step(state)
        if time.perf_counter() - last_save >= checkpoint_seconds:
            save_checkpoint(checkpoint, params, optimizer, state)
            last_save = time.perf_counter()
    save_checkpoint(checkpoint, params, optimizer, state)
    for p in params:
        p.requires_grad_(False)
    return state


def save_checkpoint(path: Path, params: list[torch.nn.Parameter], optimizer, state: TrainState) -> None:
    tmp = Path(path).with_suffix(".tmp")
    torch.save({"params": [p.detach() for p in params], "optimizer": optimizer.state_dict(),
                "state": vars(state)}, tmp)
    tmp.replace(path)  # atomic: a crash mid-save keeps the previous checkpoint


def resume(path: Path, params: list[torch.nn.Parameter], optimizer) -> TrainState:
    """The state saved at `path` loaded into params and optimizer, or a fresh state."""
    if not Path(path).exists():
        return TrainState()
    saved = torch.load(path, weights_only=False)
    if [tuple(t.shape) for t in saved["params"]] != [tuple(p.shape) for p in params]:
        raise ValueError(f"{path}: the checkpoint holds another draft's parameters; remove it or use another --out")
    with torch.no_grad():
        for p, value in zip(params, saved["params"]):
            p.copy_(value)
    optimizer.load_state_dict(saved["optimizer"])
    return TrainState(**saved["state"])


def iterate_sequences(shards: list[Path]) -> Iterator[TrainSequence]:
    from .data import load_shard

    for path in shards:
        yield from load_shard(path)
