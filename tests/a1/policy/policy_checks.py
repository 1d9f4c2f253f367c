"""The policy's record checks shared by the embedded and remote tests: a result's records agree
with each other, with its token counts and with its stats."""
from __future__ import annotations

from a1.calibration import Levels, decide_at
from a1.policy import decide


def check_result(llm, result, mode, alpha=0.2, alpha_resample=None, adaptive=False, accept_warmup=False):
    tokenizer = llm.tokenizer
    tested = rejected = takeovers = 0
    for sample in result.samples:
        assert sample.text == tokenizer.decode(sample.token_ids, skip_special_tokens=True)
        assert sample.draft_tokens + sample.target_tokens + sample.forced_tokens == len(sample.token_ids)
        kept = sum(s.num_tokens for s in sample.steps if s.kept)
        assert kept == len(sample.token_ids), "the kept steps are exactly the sample's tokens"
        assert sum(s.num_tokens for s in sample.steps if s.kept and s.by == "target") == sample.target_tokens
        assert sum(s.num_tokens for s in sample.steps if not s.kept) == sample.discarded_tokens
        assert sample.finish_reason in ("answer", "eos", "max_tokens", "max_turns")
        for step in sample.steps:
            assert step.decision in ("accept", "resample", "takeover", "forced")
            if step.by == "draft" and step.score is not None:
                tested += 1
                rejected += step.decision != "accept"
                takeovers += step.decision == "takeover"
                assert (step.p_value is None) == (mode == "sync")
                if step.p_value is not None:
                    # decided at the working levels it records (alpha and alpha_resample unless adaptive)
                    assert 0 <= step.p_value <= 1
                    if not adaptive:
                        assert (step.level, step.resample_level) == (alpha, alpha_resample)
                        assert step.decision == decide(step.p_value, alpha, alpha_resample) or accept_warmup
                    expected = decide_at(step.p_value, Levels(step.level, step.resample_level))
                    assert step.decision == expected or (accept_warmup and step.in_warmup and step.decision == "accept")
                else:
                    assert step.level is None and step.resample_level is None
        if mode in ("target_only", "draft_only"):
            assert (sample.draft_tokens == 0) == (mode == "target_only")
            assert (sample.target_tokens == 0) == (mode == "draft_only")
    stats = result.stats
    assert stats["tested"] == tested and stats["rejected"] == rejected
    assert sum(s["tested"] for s in stats["strata"].values()) == tested
    assert stats["takeover_rate"] == (takeovers / tested if tested else None)
    assert stats["draft_tokens"] == sum(s.draft_tokens for s in result.samples)
    assert sum(t["takeovers"] for t in stats["turns"].values()) == takeovers
