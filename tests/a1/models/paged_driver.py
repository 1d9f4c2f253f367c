"""Drive a DecoderLM without the engine: a paged cache with shuffled block ids, AttentionMetadata
for ragged batches of prefill chunks and decode steps, and a greedy loop."""
from __future__ import annotations

import random
from typing import Optional, Sequence

import torch

from a1.models.attention_metadata import AttentionMetadata
from a1.models.base import DecoderLM


class PagedDriver:
    def __init__(self, model: DecoderLM, block_size: int = 4, num_blocks: int = 64, seed: int = 0) -> None:
        self.model, self.block_size = model, block_size
        shape = model.kv_cache_shape(num_blocks, block_size)
        zeros = lambda: torch.zeros(shape, dtype=model.dtype, device=model.device)  # noqa: E731
        self.kv_caches = [(zeros(), zeros()) for _ in model.layers]  # (k_cache, v_cache) per layer
        self.free_blocks = list(range(num_blocks))
        random.Random(seed).shuffle(self.free_blocks)
        self.blocks: dict[int, list[int]] = {}
        self.lengths: dict[int, int] = {}

    def metadata(
        self, batch: Sequence[tuple[int, Sequence[int]]]
    ) -> tuple[torch.Tensor, torch.Tensor, AttentionMetadata]:
        """input_ids, positions and metadata for rows (sequence id, new tokens); allocates blocks."""
        ids, positions, slots, starts, seq_lens = [], [], [], [0], []
        for seq, tokens in batch:
            begin = self.lengths.get(seq, 0)
            end = begin + len(tokens)
            blocks = self.blocks.setdefault(seq, [])
            while len(blocks) * self.block_size < end:
                blocks.append(self.free_blocks.pop())
            for pos in range(begin, end):
                slots.append(blocks[pos // self.block_size] * self.block_size + pos % self.block_size)
            ids.extend(tokens)
            positions.extend(range(begin, end))
            starts.append(starts[-1] + len(tokens))
            seq_lens.append(end)
            self.lengths[seq] = end
        width = max(len(self.blocks[seq]) for seq, _ in batch)
        table = torch.zeros(len(batch), width, dtype=torch.int32)
        device = self.model.device
        for row, (seq, _) in enumerate(batch):
            table[row, : len(self.blocks[seq])] = torch.tensor(self.blocks[seq], dtype=torch.int32)
        meta = AttentionMetadata(  # on the model's device (a GPU model reads them there)
            slot_mapping=torch.tensor(slots, dtype=torch.int64, device=device),
            block_table=table.to(device),
            seq_lens=torch.tensor(seq_lens, dtype=torch.int32, device=device),
            query_start_loc=torch.tensor(starts, dtype=torch.int32, device=device),
        )
        ids_tensor = torch.tensor(ids, dtype=torch.int64, device=device)
        return ids_tensor, torch.tensor(positions, dtype=torch.int64, device=device), meta

    @torch.inference_mode()
    def step(self, batch: Sequence[tuple[int, Sequence[int]]]) -> torch.Tensor:
        """float32 logits [T, V] of every new token of every row, rows concatenated."""
        input_ids, positions, meta = self.metadata(batch)
        hidden = self.model(input_ids, positions, self.kv_caches, meta)
        assert hidden.dtype == self.model.dtype and hidden.shape == (len(input_ids), self.model.config.hidden_size)
        return self.model.compute_logits(hidden)

    def chunked(self, seq: int, tokens: Sequence[int], cuts: Sequence[int]) -> torch.Tensor:
        """Prefill `tokens` in pieces split at `cuts`; logits of all tokens."""
        bounds = [0, *cuts, len(tokens)]
        return torch.cat([self.step([(seq, tokens[a:b])]) for a, b in zip(bounds, bounds[1:])])

    def greedy(
        self, seq: int, prompt: Sequence[int], max_new_tokens: int, stop: Optional[set[int]] = None
    ) -> list[int]:
        out: list[int] = []
        logits = self.step([(seq, prompt)])[-1]
        for _ in range(max_new_tokens):
            token = int(torch.argmax(logits))
            out.append(token)
            if stop and token in stop:
                break
            logits = self.step([(seq, [token])])[-1]
        return out
