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

from dataclasses import dataclass
from typing import Generator

from a1.engine.sampling_params import SamplingParams
from a1.answers.extract import has_final_answer

from .context import Step
from .sample_state import SampleState

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

class SampleRun(SampleState):
    """The A1 loop of one sample (the method: run) and its stages, each a generator."""

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
                        yield from self.continue_after_rejected(attempt=len(attempts))
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
        step.stratum = self.ctx.stratum(self.turn, self.question, step.attempt)
        if self.cfg.mode == "sync":
            return (yield Barrier(self.question, step.score))
        verdict = self.ctx.test(step.score, self.turn, self.question, step.attempt)
        step.p_value, step.in_warmup, step.levels = verdict.p_value, verdict.in_warmup, verdict.levels
        return verdict.decision

    def warm(self) -> Generator:
        """Memory-bank seeding (the paper's warm start): draft and score a first step of the
        question, add its score to the calibrator, roll it back. No decision is made."""
        step = yield from self.draft(attempt=0)
        step.score = yield from self.score(step)
        self.ctx.seed_calibration(step.score, self.question)
        self.finish()

    def write(self, role: str, decision: str, attempt: int = 0) -> Generator:
        """The role's model writes one step after the history (committed at once)."""
        params = self.params(role, self.step_limit(self.cfg.step_tokens), attempt)
        token_ids, stop_reason = yield from self.generate(role, params)
        self.add(Step(self.turn, attempt, token_ids, stop_reason, None, decision=decision), role)

    def continue_after_rejected(self, attempt: int) -> Generator:
        """The paper's pipeline: after the kept rejected step the target writes target_step_tokens
        tokens, ending early only at EOS or a final answer (append_until="step": also at the step
        boundary). A balanced \boxed{} has no stop string, so the target writes up to each "}" and
        goes on while no answer is complete (each part has its own seed)."""
        cfg, token_ids, stop_reason, part = self.cfg, [], None, 0
        budget = self.step_limit(cfg.target_step_tokens)
        step_stop = list(cfg.step_stop) if cfg.append_until == "step" else []
        while budget > 0:
            params = self.params("target", budget, attempt, part=part, stop=step_stop + ["}"])
            ids, stop_reason = yield from self.generate("target", params)
            token_ids += ids
            budget -= len(ids)
            part += 1
            text = self.ctx.tokenizer.decode(token_ids, skip_special_tokens=True)
            if stop_reason != "}" or has_final_answer(self.text + text):
                break  # EOS, the step boundary (append_until="step"), the budget, or an answer
        self.add(Step(self.turn, attempt, token_ids, stop_reason, None, decision="takeover"), "target")

    def generate(self, role: str, params: SamplingParams) -> Generator:
        """The role's model continues the history under params (committed at once; the other
        model's sequence gets the tokens too): (token ids, stop reason)."""
        if role == "target" and self.ctx.speculative is not None and "draft" in self.seqs:
            return (yield from self.write_speculative(params))
        engine = self.ctx.engine(role)
        engine.add_request(seq_id=self.seq(role), params=params, commit=True, release=False)
        out = yield Wait(engine, "gen", self.seq(role))
        token_ids = list(out.token_ids)
        self.sync_others(role, token_ids)
        return token_ids, out.outputs[0].stop_reason

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
