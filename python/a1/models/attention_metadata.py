"""AttentionMetadata: where one forward's tokens go in the paged KV cache. Its own module so that the
model (base.py), its layers and the engine's model runner import it without importing each other."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class AttentionMetadata:
    """Where one forward's tokens go in the paged cache (layouts of a1_ext.ops, docs/architecture.md).

    slot_mapping    int64 [T]       slot = block * block_size + offset; negative = do not store
    block_table     int32 [B, max_blocks]
    seq_lens        int32 [B]       KV length of each row after this step
    query_start_loc int32 [B + 1]   row b owns tokens query_start_loc[b]:query_start_loc[b+1], the
                                    last positions of its seq_lens[b] tokens
    """

    slot_mapping: torch.Tensor
    block_table: torch.Tensor
    seq_lens: torch.Tensor
    query_start_loc: torch.Tensor
