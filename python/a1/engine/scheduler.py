"""Continuous batching: every step is one ragged batch of prefill chunks, decodes and scoring rows
under a token budget. When blocks run out, idle sequences' KV is evicted first (least recently
used), then the newest running sequence is preempted: freed and requeued to be recomputed."""
from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field

from .block_manager import BlockManager
from .metrics import EngineMetrics
from .sequence import Sequence, SequenceStatus


@dataclass
class ScheduledBatch:
    seqs: list[Sequence] = field(default_factory=list)
    num_tokens: list[int] = field(default_factory=list)  # tokens fed per sequence this step
    copies: list[tuple[int, int]] = field(default_factory=list)  # COW (src, dst) block pairs

    def add(self, seq: Sequence, num_tokens: int) -> None:
        self.seqs.append(seq)
        self.num_tokens.append(num_tokens)

    @property
    def total_tokens(self) -> int:
        return sum(self.num_tokens)

    def __bool__(self) -> bool:
        return bool(self.seqs)


class Scheduler:
    def __init__(
        self, block_manager: BlockManager, max_num_batched_tokens: int, max_num_seqs: int, metrics: EngineMetrics
    ) -> None:
        if max_num_batched_tokens < 1:
            raise ValueError(f"max_num_batched_tokens must be >= 1, got {max_num_batched_tokens}")
        if max_num_seqs < 1:
            raise ValueError(f"max_num_seqs must be >= 1, got {max_num_seqs}")
        self.bm, self.metrics = block_manager, metrics
        self.max_num_batched_tokens, self.max_num_seqs = max_num_batched_tokens, max_num_seqs
        self.waiting: deque[Sequence] = deque()  # have a task, hold no blocks
        self.running: list[Sequence] = []  # have a task and blocks, oldest first
        self.idle: OrderedDict[int, Sequence] = OrderedDict()  # no task, hold blocks; LRU first

    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    # ------------------------------------------------------------------ state changes
    def add(self, seq: Sequence) -> None:
        """Queue a sequence whose task was just set."""
        assert seq.task is not None and seq.status is SequenceStatus.IDLE
        self.idle.pop(seq.seq_id, None)
        if seq.block_table and len(self.running) < self.max_num_seqs:
            seq.status = SequenceStatus.RUNNING
            self.running.append(seq)
        else:
            self.bm.free(seq)
            seq.status = SequenceStatus.WAITING
            self.waiting.append(seq)

    def finish(self, seq: Sequence) -> None:
        """The task of a running sequence is done: it becomes idle (keeping its blocks)."""
        self.running.remove(seq)
        seq.task, seq.status = None, SequenceStatus.IDLE
        self.update_idle(seq)

    def update_idle(self, seq: Sequence) -> None:
        """Track an idle sequence as evictable (most recently used last) while it holds blocks."""
        self.idle.pop(seq.seq_id, None)
        if seq.block_table:
            self.idle[seq.seq_id] = seq

    def remove(self, seq: Sequence) -> None:
        """Forget an idle sequence and free its blocks."""
        assert seq.status is SequenceStatus.IDLE, f"sequence {seq.seq_id} is busy"
        self.idle.pop(seq.seq_id, None)
        self.bm.free(seq)

    def drop_task(self, seq: Sequence) -> None:
        """Discard the task of a queued or running sequence: it becomes idle and keeps its blocks."""
        if seq.status is SequenceStatus.RUNNING:
            self.running.remove(seq)
        elif seq.status is SequenceStatus.WAITING:
            self.waiting.remove(seq)
        seq.task, seq.status = None, SequenceStatus.IDLE
        self.update_idle(seq)

    def abort(self, seq: Sequence) -> None:
        """Drop a sequence whatever its state: its task is discarded and its blocks freed."""
        self.drop_task(seq)
        self.remove(seq)

    def _preempt(self, seq: Sequence) -> None:
        self.running.remove(seq)
        self.bm.free(seq)
        seq.task.reset_progress()
        seq.status = SequenceStatus.WAITING
        self.waiting.appendleft(seq)
        self.metrics.num_preemptions += 1

    def _preempt_newest_after(self, index: int) -> bool:
        if len(self.running) - 1 <= index:
            return False
        self._preempt(self.running[-1])
        return True

    def _evict_idle(self) -> bool:
        if not self.idle:
            return False
        _, seq = self.idle.popitem(last=False)
        self.bm.free(seq)
        self.metrics.num_idle_evictions += 1
        return True

    # ------------------------------------------------------------------ one step
    def schedule(self) -> ScheduledBatch:
        batch, budget = ScheduledBatch(), self.max_num_batched_tokens
        i = 0
        while i < len(self.running) and budget > 0:  # running sequences first, oldest first
            seq = self.running[i]
            n = min(seq.num_to_feed, budget)
            while not self.bm.can_append(seq, n) and (self._evict_idle() or self._preempt_newest_after(i)):
                pass
            if not self.bm.can_append(seq, n):
                self._preempt(seq)  # it is the newest left
                break
            self.bm.append_slots(seq, n)
            batch.add(seq, n)
            budget -= n
            i += 1
        self._admit(batch, budget)
        batch.copies = self.bm.take_copies()
        return batch

    def _admit(self, batch: ScheduledBatch, budget: int) -> None:
        """Start waiting sequences (prefix-cache hits first) while tokens, seats and blocks last."""
        for seq in list(self.waiting):
            if budget <= 0 or len(self.running) >= self.max_num_seqs:
                return
            if self.running and self.bm.prefix_in_flight(seq):
                continue  # its prefix is being computed by another sequence: share it next step
            n = self.bm.allocate(seq, budget)
            while n == 0 and self._evict_idle():
                n = self.bm.allocate(seq, budget)
            if n == 0:
                return
            self.waiting.remove(seq)
            seq.status = SequenceStatus.RUNNING
            self.running.append(seq)
            batch.add(seq, n)
            budget -= n
