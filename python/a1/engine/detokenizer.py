"""Incremental detokenization and stop-string matching for a generating sequence."""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from .sequence import Sequence
    from .tasks import GenerateTask

# Tokens of context decoded before the new ones, so that tokenizers that merge spaces or bytes
# across tokens produce the same text as a full decode.
_CONTEXT = 5


def start_detokenizer(task: GenerateTask) -> None:
    task.prefix_offset = max(task.start - _CONTEXT, 0)
    task.read_offset = task.start


def decode_new_text(tokenizer, seq: Sequence) -> str:
    """Text added by the tokens after task.read_offset; '' while a multi-byte character is incomplete."""
    task: GenerateTask = seq.task
    skip = task.params.skip_special_tokens
    ids = seq.token_ids
    prefix = tokenizer.decode(ids[task.prefix_offset : task.read_offset], skip_special_tokens=skip)
    full = tokenizer.decode(ids[task.prefix_offset :], skip_special_tokens=skip)
    if len(full) <= len(prefix) or full.endswith("\ufffd"):
        return ""
    task.prefix_offset, task.read_offset = task.read_offset, len(ids)
    return full[len(prefix) :]


def check_stop_strings(task: GenerateTask, new_text: str) -> Optional[str]:
    """Append new_text to task.text; on a stop string, cut the text there and return the string."""
    start = max(len(task.text) - task.params.max_stop_len + 1, 0)
    task.text += new_text
    best: Optional[tuple[int, str]] = None
    for stop in task.params.stop:
        idx = task.text.find(stop, start)
        if idx >= 0 and (best is None or idx < best[0]):
            best = (idx, stop)
    if best is None:
        return None
    idx, stop = best
    task.text = task.text[: idx + len(stop)] if task.params.include_stop_str_in_output else task.text[:idx]
    return stop
