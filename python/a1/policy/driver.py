"""Drives every sample's loop (sample_loop.SampleRun) on the pair's one stepping loop.

After each engine step the outputs go straight back to the samples waiting for them; each sample
then submits its next task before the next step starts. Questions are admitted up to
`concurrency` at once. Sync mode adds a per-question barrier: the samples' scored steps wait for
each other, and the worst-scored at the barrier are taken over, as many as a running budget of α
per tested step allows (decide.SyncQuota).
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Generator, Optional, Sequence

from a1.engine.outputs import RequestOutput, ScoreResult

from .context import RunContext
from .decide import SyncQuota
from .results import SampleResult
from .sample_loop import Barrier, SampleRun, Wait


def output_key(out) -> tuple[str, int]:
    """(kind, sequence id) of an engine output: a generation, a score, or a speculative decoding
    task (DraftTask / VerifyTask, returned as themselves)."""
    if isinstance(out, RequestOutput):
        return "gen", out.request_id
    if isinstance(out, ScoreResult):
        return "score", out.seq_id
    return "task", out.seq_id


@dataclass
class QuestionRun:
    index: int
    prompt_ids: list[int]
    sample_indices: list[int]
    start: float = 0.0
    live: int = 0
    results: dict[int, SampleResult] = field(default_factory=dict)
    arrivals: list[tuple[SampleRun, Generator, float, float]] = field(default_factory=list)  # sync barrier
    barrier_wait: float = 0.0  # summed over samples: seconds spent waiting at barriers
    wall_time: float = 0.0
    warming: int = 0  # warm-start drafts still running; the samples start after them


class Driver:
    def __init__(
        self,
        ctx: RunContext,
        on_sample: Optional[Callable[[int, SampleResult], None]] = None,
        progress: bool = False,
    ) -> None:
        self.ctx, self.cfg = ctx, ctx.cfg
        self.on_sample, self.progress = on_sample, progress
        self._waiting: dict[tuple[int, str, int], tuple[QuestionRun, SampleRun, Generator]] = {}
        self._live: dict[int, SampleRun] = {}  # id -> every sample started and not done (warm-ups too)
        self._sync_quota = SyncQuota(self.cfg.alpha)  # one budget for every barrier of the run
        self._bar = None
        self._tested = self._taken_over = 0

    def run(self, prompts: Sequence[list[int]], sample_indices: Sequence[Sequence[int]]) -> list[QuestionRun]:
        questions = [QuestionRun(i, list(p), list(s)) for i, (p, s) in enumerate(zip(prompts, sample_indices))]
        queue, active = deque(q for q in questions if q.sample_indices), {}
        if self.progress:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=sum(len(q.sample_indices) for q in questions), desc=f"a1 {self.cfg.mode}", unit="sample")
        try:
            while True:
                for question in [q for q in active.values() if q.live == 0]:
                    del active[question.index]
                while queue and len(active) < self.cfg.concurrency:
                    question = queue.popleft()
                    active[question.index] = question
                    self._start(question)
                if not active:
                    break
                if not self._waiting:
                    raise RuntimeError("a1 policy: samples are live but none waits for the engine (a driver bug)")
                for engine, out in self.ctx.pair.step():
                    kind, seq_id = output_key(out)
                    waiter = self._waiting.pop((id(engine), kind, seq_id), None)
                    if waiter is None:
                        raise RuntimeError(f"a1 policy: an output of sequence {seq_id} that no sample waits for")
                    if getattr(out, "error", None) is not None:  # the engine failed this request (and dropped it)
                        question, sample, _ = waiter
                        raise RuntimeError(
                            f"a1 policy: question {question.index} sample {sample.index}: its {kind} request failed "
                            f"in the engine: {out.error}"
                        ) from out.error
                    self._advance(*waiter, out)
        except BaseException:
            # an error, a callback's exception or Ctrl-C: the engines hold no sequence of this run
            # after it, so the LLM serves the next call with the blocks it had before this one
            for sample in self._live.values():
                sample.abort()
            self._live.clear()
            raise
        finally:
            if self._bar is not None:
                self._bar.close()
        return questions

    def waiting_samples(self) -> dict[tuple[int, str, int], tuple[int, int]]:
        """(engine id, kind, sequence id) -> (question, sample) of every sample waiting for an output."""
        return {key: (question.index, sample.index) for key, (question, sample, _) in self._waiting.items()}

    def _start(self, question: QuestionRun) -> None:
        question.start = time.perf_counter()
        question.live = len(question.sample_indices)
        if self.ctx.update_calibration and self.cfg.warm_start and question.warming == 0:
            question.warming = self.cfg.warm_start
            for i in range(self.cfg.warm_start):  # negative indices: seeds apart from the samples'
                warm = SampleRun(self.ctx, question.index, -1 - i, question.prompt_ids, question.start)
                self._live[id(warm)] = warm
                self._advance(question, warm, warm.warm(), None)
            return
        self._start_samples(question)

    def _start_samples(self, question: QuestionRun) -> None:
        for index in question.sample_indices:
            sample = SampleRun(self.ctx, question.index, index, question.prompt_ids, question.start)
            self._live[id(sample)] = sample
            self._advance(question, sample, sample.run(), None)

    def _advance(self, question: QuestionRun, sample: SampleRun, loop: Generator, value) -> None:
        """Resume a sample's loop with `value` until it waits again or ends."""
        try:
            request = loop.send(value)
        except StopIteration:
            self._done(question, sample)
            return
        if isinstance(request, Wait):
            self._waiting[(id(request.engine), request.kind, request.seq_id)] = (question, sample, loop)
        elif isinstance(request, Barrier):
            question.arrivals.append((sample, loop, request.score, time.perf_counter()))
            self._release_barrier(question)
        else:
            raise TypeError(f"a sample loop yielded {request!r}")

    def _release_barrier(self, question: QuestionRun) -> None:
        """Sync mode: once every live sample has a scored step, the worst-scored are taken over, as
        many as the run's takeover budget allows (decide.SyncQuota: a fraction alpha of the run's steps)."""
        if not question.arrivals or len(question.arrivals) < question.live:
            return
        arrivals, question.arrivals = sorted(question.arrivals, key=lambda a: a[0].index), []
        num_takeovers = self._sync_quota.take(len(arrivals))
        ranked = sorted(range(len(arrivals)), key=lambda i: (-arrivals[i][2], arrivals[i][0].index))
        worst = set(ranked[:num_takeovers])
        now = time.perf_counter()
        for i, (sample, loop, _, arrived) in enumerate(arrivals):
            question.barrier_wait += now - arrived
            self._advance(question, sample, loop, "takeover" if i in worst else "accept")

    def _done(self, question: QuestionRun, sample: SampleRun) -> None:
        del self._live[id(sample)]
        if sample.index < 0:  # a warm-start draft
            question.warming -= 1
            if question.warming == 0:
                self._start_samples(question)
            return
        result = sample.result
        question.results[result.index] = result
        question.live -= 1
        question.wall_time = time.perf_counter() - question.start
        for step in result.steps:
            if step.tested:
                self._tested += 1
                self._taken_over += step.decision == "takeover"
        if self._bar is not None:
            self._bar.update(1)
            if self._tested:
                self._bar.set_postfix(takeover=f"{self._taken_over / self._tested:.3f}", alpha=self.cfg.alpha)
        if self.on_sample is not None:
            self.on_sample(question.index, result)
        self._release_barrier(question)  # the barrier no longer waits for this sample
