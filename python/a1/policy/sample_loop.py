"""The A1 loop of one sample, as a generator driven by the engine loop (policy/driver.py).

The sample calls the engines directly (it runs between two engine steps, in the engine's thread)
and yields `Wait` when it needs an output (a drafted step, a score, the target's rewrite) or
`Barrier` in sync mode. The driver sends the output back as soon as the step that produced it
ends, so a sample's bookkeeping costs no engine step and no sample ever waits for another
(except at sync mode's barrier, which is the point of that baseline).

Histories live only as token ids in the engines' sequences: never re-tokenized. In self mode the
draft and target sequence are one sequence and a step is scored from its generation's own raw
log-probs (no second prefill).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Generator, Optional

from a1.engine.sampling_params import SamplingParams
from a1.eval.answers import extract_boxed, has_final_answer

from .context import RunContext, Step
from .decide import decide
from .results import SampleResult, StepRecord

WAIT_TEXT = "\n\nWait,"
ANSWER_TEXT = "\n\nFinal Answer: \\boxed{"


@dataclass
class Wait:
    """The sample waits for the output of its task on `engine` (kind "gen" or "score")."""

    engine: object
    kind: str
    seq_id: int


@dataclass
class Barrier:
    """Sync mode: wait for the question's other live samples; the driver sends back the decision."""

    question: int
    score: float


class SampleRun:
    def __init__(self, ctx: RunContext, question: int, index: int, prompt_ids: list[int], start_time: float) -> None:
        self.ctx, self.cfg, self.question, self.index = ctx, ctx.cfg, question, index
        self.prompt_len, self.start_time = len(prompt_ids), start_time
        # role -> sequence id, one per model this mode uses (self mode: one sequence for both roles)
        self.seqs = {role: ctx.engine(role).add_sequence(prompt_ids) for role in ctx.roles}
        self.result = SampleResult(index, "", [], None, "")
        self.turn, self.text = 0, ""
        self.answer_due = False

    # ------------------------------------------------------------------ the method
    def run(self) -> Generator:
        """Draft a step, score it on the target, decide; until an answer, EOS or the budget."""
        cfg = self.cfg
        while not self.result.finish_reason:
            if self.answer_due:  # the model ended (EOS) without a boxed answer
                yield from self.force_answer("eos")
            elif self.turn >= cfg.max_turns or self.room() <= 0:
                yield from self.force_answer("max_turns" if self.turn >= cfg.max_turns else "max_tokens")
            elif not cfg.tested:
                yield from self.write("draft" if cfg.mode == "draft_only" else "target", decision="accept")
            else:
                attempts: list[Step] = []
                while True:
                    step = yield from self.draft(attempt=len(attempts))
                    step.decision = yield from self.test(step)
                    attempts.append(step)
                    if step.decision != "resample" or len(attempts) > cfg.max_resamples:
                        break
                    self.roll_back(step)
                if step.decision == "accept":
                    self.keep(step)
                elif step.decision == "resample":  # every redraft failed: keep the best-scored one
                    self.keep_best(attempts)
                elif cfg.keeps_rejected_draft:  # the paper's pipeline: the target continues after it
                    self.keep(step)
                    if not self.result.finish_reason and not self.answer_due:
                        yield from self.write("target", decision="takeover", max_tokens=cfg.target_step_tokens)
                else:  # rewrite: the target writes this step instead
                    self.roll_back(step)
                    yield from self.write("target", decision="takeover", attempt=len(attempts))
            self.turn += 1
        self.finish()

    # ------------------------------------------------------------------ stages
    def draft(self, attempt: int) -> Generator:
        engine = self.ctx.engine("draft")
        params = self.params("draft", self.step_limit(self.cfg.step_tokens), attempt, logprobs=self.ctx.self_mode)
        engine.add_request(seq_id=self.seq("draft"), params=params, commit=False, release=False)
        out = yield Wait(engine, "gen", self.seq("draft"))
        return Step(self.turn, attempt, list(out.token_ids), out.outputs[0].stop_reason, out.logprobs)

    def score(self, step: Step) -> Generator:
        """The step's score from the target's log-probs of its tokens on the cached prefix (self
        mode: the generation's own raw log-probs)."""
        if self.ctx.self_mode:
            return self.ctx.step_score(step.logprobs)
        target = self.ctx.engine("target")
        target.submit_score(self.seq("target"), step.token_ids, keep=True, commit=False)
        token_logprobs = (yield Wait(target, "score", self.seq("target"))).token_logprobs
        self.result.score_tokens += len(step.token_ids)
        return self.ctx.step_score(token_logprobs)

    def test(self, step: Step) -> Generator:
        """Score the step, then decide: a p-value against the stratum's calibration scores, or
        sync mode's ranking at the barrier."""
        step.score = yield from self.score(step)
        step.stratum = self.ctx.stratum(self.turn, self.question)
        if self.cfg.mode == "sync":
            return (yield Barrier(self.question, step.score))
        step.p_value, step.in_warmup = self.ctx.test(step.score, self.turn, self.question)
        return decide(step.p_value, self.cfg.alpha, self.cfg.alpha_resample)

    def warm(self) -> Generator:
        """Memory-bank seeding (the paper's warm start): draft and score a first step of the
        question, add its score to the calibrator, roll it back. No decision is made."""
        step = yield from self.draft(attempt=0)
        step.score = yield from self.score(step)
        self.ctx.seed_calibration(step.score, self.question)
        self.finish()

    def write(self, role: str, decision: str, max_tokens: Optional[int] = None, attempt: int = 0) -> Generator:
        """The role's model writes one step after the history (committed at once)."""
        engine = self.ctx.engine(role)
        params = self.params(role, self.step_limit(max_tokens or self.cfg.step_tokens), attempt)
        if role == "target" and self.ctx.speculative is not None and "draft" in self.seqs:
            token_ids, stop_reason = yield from self.write_speculative(params)
        else:
            engine.add_request(seq_id=self.seq(role), params=params, commit=True, release=False)
            out = yield Wait(engine, "gen", self.seq(role))
            token_ids, stop_reason = list(out.token_ids), out.outputs[0].stop_reason
            self.sync_others(role, token_ids)
        self.add(Step(self.turn, attempt, token_ids, stop_reason, None, decision=decision), role)

    def write_speculative(self, params: SamplingParams) -> Generator:
        """The target's step by lossless speculative decoding: rounds of k draft proposals and one
        target verify forward, until the step's stop; both sequences end on the verified step."""
        decoder, target, draft = self.ctx.speculative, self.ctx.engine("target"), self.ctx.engine("draft")
        request = decoder.open(self.seq("target"), self.seq("draft"), target.token_ids(self.seq("target")), params)
        while request.task.finish_reason is None:
            if decoder.propose(request):
                decoder.take_proposal(request, (yield Wait(draft, "task", self.seq("draft"))))
            decoder.verify(request)
            decoder.accept(request, (yield Wait(target, "task", self.seq("target"))))
        return request.record.token_ids[request.task.start :], request.task.stop_reason

    def force_answer(self, reason: str) -> Generator:
        """Budget forcing: append "Final Answer: \\boxed{" and let the writing model close it."""
        role = "draft" if self.cfg.mode == "draft_only" else "target"
        self.force(ANSWER_TEXT)
        engine, budget = self.ctx.engine(role), self.cfg.answer_tokens
        while budget > 0 and not has_final_answer(self.text) and self.answer_room() > 0:
            params = SamplingParams(temperature=0.0, max_tokens=min(budget, self.answer_room()), stop=["}"],
                                    include_stop_str_in_output=True)
            engine.add_request(seq_id=self.seq(role), params=params, commit=True, release=False)
            out = yield Wait(engine, "gen", self.seq(role))
            self.sync_others(role, list(out.token_ids))
            self.add(Step(self.turn, 0, list(out.token_ids), out.outputs[0].stop_reason, None, decision="forced"), role)
            budget -= len(out.token_ids)
            if isinstance(out.outputs[0].stop_reason, int):  # EOS before the brace closed
                break
        self.result.finish_reason = reason

    # ------------------------------------------------------------------ keeping and rolling back
    def keep(self, step: Step) -> None:
        for role in self.seqs:
            if self.ctx.engine(role).num_tokens(self.seq(role)) > self.history_len():
                self.ctx.engine(role).commit(self.seq(role))
            else:  # a model that has not seen the step yet computes it with its next task
                self.ctx.engine(role).append(self.seq(role), step.token_ids)
        self.add(step, "draft")

    def keep_best(self, attempts: list[Step]) -> None:
        best = min(attempts, key=lambda s: s.score)
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
        step.record = StepRecord(
            step.turn, step.attempt, step.stratum, step.score, step.p_value, step.decision, len(step.token_ids), by,
            step.kept, step.in_warmup,
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

    def params(self, role: str, max_tokens: int, attempt: int, logprobs: bool = False) -> SamplingParams:
        cfg = self.cfg
        return SamplingParams(
            temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k, max_tokens=max_tokens,
            stop=list(cfg.step_stop), include_stop_str_in_output=True, logprobs=logprobs,
            seed=self.ctx.seed_for(self.question, self.index, self.turn, attempt, role),
        )

    def finish(self) -> None:
        result = self.result
        result.text = self.ctx.tokenizer.decode(result.token_ids, skip_special_tokens=True)
        result.answer = extract_boxed(result.text)
        result.latency = time.perf_counter() - self.start_time
        for role, seq_id in self.seqs.items():
            if self.ctx.engine(role).is_live(seq_id):
                self.ctx.engine(role).free(seq_id)
