"""What one sample holds between its steps: its sequences in each model's engine, its record
(steps, tokens, counts) and text; keeping a step in, or rolling it back out of, both caches; the
budgets left; the sampling parameters and seeds of its requests. sample_loop.SampleRun is the
method on top of it."""
from __future__ import annotations

import time
from typing import Optional

from a1.engine.sampling_params import SamplingParams
from a1.answers.extract import extract_boxed, has_final_answer

from .context import RunContext, Step
from .results import SampleResult, StepRecord

WAIT_TEXT = "\n\nWait,"


class SampleState:
    def __init__(self, ctx: RunContext, question: int, index: int, prompt_ids: list[int], start_time: float) -> None:
        self.ctx, self.cfg, self.question, self.index = ctx, ctx.cfg, question, index
        self.prompt_len, self.start_time = len(prompt_ids), start_time
        # role -> sequence id, one per model this mode uses (self mode: one sequence for both roles)
        self.seqs: dict[str, int] = {}
        try:
            for role in ctx.roles:
                self.seqs[role] = ctx.engine(role).add_sequence(prompt_ids)
        except BaseException:
            self.abort()
            raise
        self.result = SampleResult(index, "", [], None, "")
        self.turn, self.text = 0, ""
        self.answer_due = False

    # ------------------------------------------------------------------ keeping and rolling back
    def keep(self, step: Step) -> None:
        for role in self.seqs:
            if self.ctx.engine(role).num_tokens(self.seq(role)) > self.history_len():
                self.ctx.engine(role).commit(self.seq(role))
            else:  # a model that has not seen the step yet computes it with its next task
                self.ctx.engine(role).append(self.seq(role), step.token_ids)
        self.add(step, "draft")

    def keep_best(self, attempts: list[Step]) -> None:
        """The best-scored attempt stays. Identical redrafts (greedy ones are) are one step: the first
        of them stands for all, so that float noise between two scorings of the same tokens (batched
        differently) never picks between them."""
        distinct: dict[tuple[int, ...], Step] = {}
        for step in attempts:
            distinct.setdefault(tuple(step.token_ids), step)
        best = min(distinct.values(), key=lambda s: s.score)  # ties: the earliest
        if best is not attempts[-1]:
            self.roll_back(attempts[-1])
        self.keep(best)

    def roll_back(self, step: Step, by: str = "draft") -> None:
        """The step leaves both caches (the history is as before it); it stays in the record."""
        step.kept = False
        self.result.discarded_tokens += len(step.token_ids)
        self.record(step, by)
        self.trim_to_history()

    def trim_to_history(self) -> None:
        """Every sequence back to the sample's kept history (a model that never saw the step is
        already there)."""
        for role, seq_id in self.seqs.items():
            if self.ctx.engine(role).num_tokens(seq_id) > self.history_len():
                self.ctx.engine(role).truncate(seq_id, self.history_len())

    def sync_others(self, writer: str, token_ids: list[int]) -> None:
        """The other model's sequence gets the written tokens (computed by its next task)."""
        for role, seq_id in self.seqs.items():
            if self.ctx.engine(role) is not self.ctx.engine(writer):
                self.ctx.engine(role).append(seq_id, token_ids)

    def seq(self, role: str) -> int:
        return self.seqs[role] if role in self.seqs else next(iter(self.seqs.values()))

    def force(self, text: str) -> None:
        token_ids = self.ctx.tokenizer.encode(text, add_special_tokens=False)
        for role, seq_id in self.seqs.items():
            self.ctx.engine(role).append(seq_id, token_ids)
        self.add(Step(self.turn, 0, token_ids, None, None, decision="forced"), "policy")

    # ------------------------------------------------------------------ bookkeeping
    def add(self, step: Step, by: str) -> None:
        """A step's tokens join the sample (by "draft", "target" or "policy" for inserted text); an
        answer or EOS ends the sample, or, before min_tokens, is dropped and "Wait" appended (s1's
        budget forcing)."""
        result = self.result
        step_text = self.ctx.tokenizer.decode(step.token_ids, skip_special_tokens=True)
        ends = by != "policy" and (step.eos(self.ctx.eos_ids) or has_final_answer(self.text + step_text))
        if ends and step.decision != "forced" and len(result.token_ids) + len(step.token_ids) < self.cfg.min_tokens:
            self.roll_back(step, by)
            self.force(WAIT_TEXT)
            return
        if step.record is None:
            self.record(step, by)
        else:  # a rolled-back attempt reinstated as the best one
            step.record.kept = step.kept = True
            result.discarded_tokens -= len(step.token_ids)
        result.token_ids.extend(step.token_ids)
        self.text += step_text
        if by == "policy":
            result.forced_tokens += len(step.token_ids)
        elif by == "target":
            result.target_tokens += len(step.token_ids)
        else:
            result.draft_tokens += len(step.token_ids)
        if ends and step.eos(self.ctx.eos_ids) and not has_final_answer(self.text) and step.decision != "forced":
            self.drop_eos(step, by)  # it stopped without a boxed answer: the answer is forced next
            self.answer_due = True
        elif ends:
            result.finish_reason = "eos" if step.eos(self.ctx.eos_ids) else "answer"
        self.ctx.on_step(self, step)

    def drop_eos(self, step: Step, by: str) -> None:
        """Remove the step's final EOS token from the sample and from both caches."""
        result = self.result
        result.token_ids.pop()
        step.record.num_tokens -= 1
        if by == "target":
            result.target_tokens -= 1
        else:
            result.draft_tokens -= 1
        self.trim_to_history()

    def record(self, step: Step, by: str) -> None:
        levels = step.levels
        step.record = StepRecord(
            step.turn, step.attempt, step.stratum, step.score, step.p_value, step.decision, len(step.token_ids), by,
            step.kept, step.in_warmup, None if levels is None else levels.takeover,
            None if levels is None else levels.resample,
        )
        self.result.steps.append(step.record)

    def history_len(self) -> int:
        return self.prompt_len + len(self.result.token_ids)

    def room(self, reserve: Optional[int] = None) -> int:
        """Reasoning tokens the sample may still write. max_tokens bounds the reasoning; the forced
        answer comes after it (its text plus at most answer_tokens), so only max_model_len keeps a
        reserve for it."""
        if reserve is None:
            reserve = self.cfg.answer_tokens + 16
        cap = self.ctx.max_model_len - self.prompt_len - 1 - reserve
        return min(self.cfg.max_tokens, cap) - len(self.result.token_ids)

    def answer_room(self) -> int:
        return self.ctx.max_model_len - self.prompt_len - 1 - len(self.result.token_ids)

    def step_limit(self, wanted: int) -> int:
        return max(1, min(wanted, self.room()))

    def params(self, role: str, max_tokens: int, attempt: int, logprobs: bool = False, part: int = 0,
               stop: Optional[list[str]] = None) -> SamplingParams:
        """A step's sampling parameters (stop: the step boundary unless given); its seed is the
        sample's for (turn, attempt, role, part), so no two requests of a run share draws."""
        cfg = self.cfg
        return SamplingParams(
            temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k, max_tokens=max_tokens,
            stop=list(cfg.step_stop) if stop is None else stop, include_stop_str_in_output=True, logprobs=logprobs,
            seed=self.ctx.seed_for(self.question, self.index, self.turn, attempt, role, part),
        )

    def abort(self) -> None:
        """Drop the sample's sequences whatever they are doing (a run that stops early): their tasks
        produce nothing and their blocks go back."""
        for role, seq_id in self.seqs.items():
            if self.ctx.engine(role).is_live(seq_id):
                self.ctx.engine(role).abort(seq_id)

    def finish(self) -> None:
        result = self.result
        result.text = self.ctx.tokenizer.decode(result.token_ids, skip_special_tokens=True)
        result.answer = extract_boxed(result.text)
        result.latency = time.perf_counter() - self.start_time
        for role, seq_id in self.seqs.items():
            if self.ctx.engine(role).is_live(seq_id):
                self.ctx.engine(role).free(seq_id)
