"""Running a Job on one model of the AsyncEngine: prompt log-probs through a score task on the
prompt's prefix (whose KV may come from the prefix cache), then the generation on the same
sequence. Every sequence a job creates is freed when it ends, whatever happens, a cancellation
(the client disconnected) at any await included."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Optional

from a1.engine.async_engine import AsyncModel
from a1.engine.outputs import RequestOutput

from .params import Job


@dataclass
class JobResult:
    """prompt_logprobs[i]: log-prob of prompt token i (None at position 0 and before score_from;
    the list is None when none were asked for). output: the generation (None for max_tokens 0)."""

    prompt_logprobs: Optional[list[Optional[float]]]
    output: Optional[RequestOutput]


async def run_job(model: AsyncModel, job: Job) -> JobResult:
    prompt = job.prompt_ids
    logprobs: Optional[list[Optional[float]]] = None
    seq_id: Optional[int] = None
    try:
        if job.score_from is not None:
            logprobs = [None] * len(prompt)
            start = max(job.score_from, 1)
            if start < len(prompt):
                seq_id = await _add_sequence(model, prompt[:start])
                scored = await model.score(seq_id, prompt[start:], keep=True, commit=True)
                logprobs[start:] = scored.token_logprobs
        output = None
        if job.params is not None:
            if seq_id is None:
                output = await model.generate(prompt, job.params, release=True)
            else:
                output = await model.generate(seq_id=seq_id, params=job.params, release=True)
                seq_id = None  # released by the engine with the request
        return JobResult(logprobs, output)
    finally:
        # a failed task's sequence was aborted by AsyncEngine; a cancelled one was rolled back: free what is left
        if seq_id is not None and await model.is_live(seq_id):
            await model.free(seq_id)


async def _add_sequence(model: AsyncModel, token_ids: list[int]) -> int:
    """model.add_sequence, safe to cancel: a caller cancelled after the engine made the sequence but
    before it saw the id would leak the sequence's blocks; here the sequence is freed instead."""
    made = asyncio.ensure_future(model.add_sequence(token_ids))
    try:
        return await asyncio.shield(made)
    except asyncio.CancelledError:
        try:
            seq_id: Optional[int] = await made  # the command is applied before the next step: a short wait
        except (Exception, asyncio.CancelledError):
            seq_id = None  # never made (or the engine closed): nothing to free
        if seq_id is not None:
            await model.free(seq_id)
        raise
