"""Speculative decoding (a1/engine/speculative.py) on tiny random decoders: greedy parity with the
target alone, the sampled distribution against the target's exact one (and a failing wrong q),
per-request params, cache rollback and the counters."""
import copy

import pytest
import torch
from scipy import stats

from a1 import LLM, SamplingParams
from a1.engine.block_manager import hash_block_tokens
from a1.engine.config import EngineConfig
from a1.engine.pair import PairEngine
from a1.engine.speculative import SpeculativeDecoder
from a1_ext import ops, reference
from fake_lm import Loaded, TinyLM

PROMPTS = [[0, 5, 6, 7], [0, 3, 37], [0, 12, 13, 14, 15, 16, 17, 18, 19], [0, 9, 3, 22, 4], [0, 5, 17, 2]]


@pytest.fixture(scope="module")
def far_draft() -> TinyLM:
    return TinyLM(seed=1)  # an unrelated random model: nearly every draft is rejected


@pytest.fixture(scope="module")
def near_draft(tiny_model) -> TinyLM:
    """The target with a noisy LM head: most drafts are accepted, some rejected."""
    model = copy.deepcopy(tiny_model)
    noise = torch.randn(model.lm_head.shape, generator=torch.Generator().manual_seed(5))
    model.lm_head += noise * 0.5 * model.lm_head.std()
    return model


def decoder(target, tokenizer, draft, k, cls=SpeculativeDecoder, **config) -> SpeculativeDecoder:
    config = EngineConfig(**{"block_size": 4, "num_blocks": 512, **config})
    return cls(PairEngine.build(target, tokenizer, None if draft == "self" else draft, tokenizer, config), k)


def plain(target, tokenizer, prompts, params, **config):
    return LLM(Loaded(target, tokenizer, target.config), block_size=4, **config).generate(prompts, params)


def greedy_params(tiny_model, tokenizer) -> list[SamplingParams]:
    """Cut-offs of every kind, taken from the target's own greedy continuations."""
    ref = [tiny_model.greedy_reference(p, 16) for p in PROMPTS]
    assert tiny_model.greedy_reference(PROMPTS[4], 16, stop_ids=(1,))[-1] == 1  # hits EOS at token 12
    return [
        SamplingParams(temperature=0, max_tokens=7, ignore_eos=True, logprobs=True),
        SamplingParams(temperature=0, max_tokens=16, stop_token_ids=[ref[1][5]], logprobs=True),
        SamplingParams(temperature=0, max_tokens=16, stop=[tokenizer.decode(ref[2][4:6])], ignore_eos=True),
        SamplingParams(temperature=0, max_tokens=16, stop_token_ids=[ref[3][1]], min_tokens=3, ignore_eos=True),
        SamplingParams(temperature=0, max_tokens=16, logprobs=True),
    ]


def same_outputs(got, want, logprob_tol=1e-4) -> None:
    for g, w in zip(got, want, strict=True):
        assert (g.token_ids, g.text, g.finish_reason, g.outputs[0].stop_reason) == (
            w.token_ids, w.text, w.finish_reason, w.outputs[0].stop_reason
        )
        assert g.prompt_token_ids == w.prompt_token_ids
        if w.logprobs is None:
            assert g.logprobs is None
        else:
            assert g.logprobs == pytest.approx(w.logprobs, abs=logprob_tol)


# ---------------------------------------------------------------------- 1. greedy
@pytest.mark.parametrize("k", [1, 2, 4, 8])
@pytest.mark.parametrize("which", ["far", "near", "self"])
def test_greedy_matches_target_alone(k, which, tiny_model, tokenizer, far_draft, near_draft):
    params = greedy_params(tiny_model, tokenizer)
    want = plain(tiny_model, tokenizer, PROMPTS, params, kv_cache_gb=0.001)
    draft = {"far": far_draft, "near": near_draft, "self": "self"}[which]
    dec = decoder(tiny_model, tokenizer, draft, k)
    same_outputs(dec.generate(PROMPTS, params), want)
    assert [o.finish_reason for o in want] == ["length", "stop", "stop", "stop", "stop"]
    m = dec.metrics
    assert 0 <= m.num_accepted <= m.num_proposed and m.num_emitted == sum(len(o.token_ids) for o in want)
    if which == "self":
        assert m.num_accepted == m.num_proposed > 0 and m.acceptance_rate == 1.0
        assert m.tokens_per_target_forward > 1.0 if k > 1 else True


def test_greedy_under_tight_budget_and_max_model_len(tiny_model, tokenizer, near_draft):
    """Chunked verify rows (5 tokens a step), preemptions and idle evictions in a 10-block pool,
    and a max_model_len that cuts a request."""
    params = greedy_params(tiny_model, tokenizer)
    config = dict(max_num_batched_tokens=5, max_model_len=12)
    want = plain(tiny_model, tokenizer, PROMPTS, params, kv_cache_gb=0.001, **config)
    assert [len(p) + len(o.token_ids) for p, o in zip(PROMPTS, want)][1:3] == [9, 12]  # cut by max_model_len
    for draft in (near_draft, "self"):
        dec = decoder(tiny_model, tokenizer, draft, 4, num_blocks=10, **config)
        same_outputs(dec.generate(PROMPTS, params), want)
        assert any(e.metrics.num_preemptions + e.metrics.num_idle_evictions for e in dec.pair.engines)
        assert all(e.block_manager.num_used_blocks == 0 for e in dec.pair.engines)


def test_max_tokens_bounds_the_proposals(tiny_model, tokenizer):
    for k, max_tokens, proposed, verifies in [(4, 10, 8, 2), (8, 10, 8, 2), (3, 1, 0, 1), (2, 2, 1, 1)]:
        dec = decoder(tiny_model, tokenizer, "self", k)
        out = dec.generate([PROMPTS[0]], [SamplingParams(temperature=0, max_tokens=max_tokens, ignore_eos=True)])
        assert len(out[0].token_ids) == max_tokens
        assert (dec.metrics.num_proposed, dec.metrics.num_verifies) == (proposed, verifies)


# ---------------------------------------------------------------------- 2. sampled distribution
def exact_joint(model, prompt, depth, params, cutoff) -> dict[tuple, float]:
    """P(first `depth` tokens) under the target's filtered distribution, for every continuation whose
    prefixes all have probability >= cutoff (the rest cannot make a bin of its own)."""
    leaves: dict[tuple, float] = {}

    def expand(prefix: list[int], prob: float) -> None:
        if len(prefix) == depth:
            leaves[tuple(prefix)] = prob
            return
        logits = model.compute_logits(model.forward_dense(prompt + prefix)[-1:])[0]
        probs = torch.softmax(reference.filtered_logits(logits, params.temperature, params.top_k, params.top_p), -1)
        for token in torch.nonzero(probs.double() * prob >= cutoff).flatten().tolist():
            expand(prefix + [token], prob * float(probs[token]))

    expand([], 1.0)
    return leaves


def distribution_p_value(dec, model, params, n=2000, depth=3) -> float:
    """Chi-square p-value of the joint of the first `depth` tokens of n seeded requests (bins of
    expected count >= 5, the rest merged into one)."""
    prompt = PROMPTS[0]
    outs = dec.generate([prompt] * n, [SamplingParams(**params, seed=i) for i in range(n)])
    joint = exact_joint(model, prompt, depth, SamplingParams(**params), 5.0 / n)
    bins = [c for c, p in joint.items() if p * n >= 5]
    counts = {c: 0 for c in bins}
    for out in outs:
        key = tuple(out.token_ids[:depth])
        if key in counts:
            counts[key] += 1
    observed = [counts[c] for c in bins] + [n - sum(counts.values())]
    expected = [joint[c] * n for c in bins] + [n * (1.0 - sum(joint[c] for c in bins))]
    assert len(bins) >= 10 and expected[-1] >= 5
    return stats.chisquare(observed, expected).pvalue


SAMPLED = dict(max_tokens=3, ignore_eos=True)


@pytest.mark.parametrize(
    "which,filters",
    [
        ("near", dict(temperature=1.0)),
        ("far", dict(temperature=1.0)),
        ("near", dict(temperature=0.7, top_k=8, top_p=0.9)),
    ],
)
def test_sampled_distribution_is_the_targets(which, filters, tiny_model, tokenizer, far_draft, near_draft):
    dec = decoder(tiny_model, tokenizer, {"far": far_draft, "near": near_draft}[which], 2, max_num_seqs=400)
    p_value = distribution_p_value(dec, tiny_model, {**SAMPLED, **filters})
    assert p_value > 1e-6
    assert 0 < dec.metrics.num_accepted < dec.metrics.num_proposed  # both branches of verify ran
    if which == "near":
        assert dec.metrics.accepted_at[1] > 0.1 * dec.metrics.proposed_at[1]  # second drafts accepted too


class UniformQ(SpeculativeDecoder):
    def verify_probs(self, probs):
        return torch.full_like(probs, 1.0 / probs.shape[1])


class SharpenedQ(SpeculativeDecoder):
    def verify_probs(self, probs):
        return torch.nn.functional.normalize(probs**3, p=1, dim=1)


@pytest.mark.parametrize("wrong", [UniformQ, SharpenedQ])
def test_distribution_test_fails_on_a_wrong_q(wrong, tiny_model, tokenizer, near_draft):
    """The draft samples from its true q but verify is told another q: the output is biased."""
    dec = decoder(tiny_model, tokenizer, near_draft, 2, cls=wrong, max_num_seqs=400)
    assert distribution_p_value(dec, tiny_model, {**SAMPLED, "temperature": 1.0}) < 1e-6


def test_q_rows_are_what_sample_draws_from():
    torch.manual_seed(0)
    logits = torch.randn(6, 40) * 3
    logits[2, :4] = 5.0  # ties at the top-k boundary
    temperature = torch.tensor([1.0, 0.5, 1.0, 0.0, 1.3, 0.8])
    top_k, top_p = torch.tensor([0, 5, 3, 0, 0, 7]), torch.tensor([1.0, 1.0, 1.0, 1.0, 0.8, 0.6])
    got = ops.sampling_probs(logits, temperature, top_k, top_p)  # the op the engine takes q rows from
    for b in range(6):
        if temperature[b] == 0:
            want = torch.nn.functional.one_hot(logits[b].argmax(), 40).float()
        else:
            filtered = reference.filtered_logits(logits[b], float(temperature[b]), int(top_k[b]), float(top_p[b]))
            want = torch.softmax(filtered, -1)
        torch.testing.assert_close(got[b], want)
    draws = ops.sample(logits.repeat(200, 1), temperature.repeat(200), top_k.repeat(200), top_p.repeat(200),
                       torch.arange(1200), torch.zeros(1200, dtype=torch.int64))[0].view(200, 6)
    assert bool((got.gather(1, draws.T) > 0).all())  # every draw is in q's support


# ---------------------------------------------------------------------- 3. per-request params
def test_per_request_params_and_seeds(tiny_model, tokenizer, near_draft):
    params = [
        SamplingParams(temperature=0.8, max_tokens=12, seed=11, ignore_eos=True),
        SamplingParams(temperature=0, max_tokens=12, ignore_eos=True),
        SamplingParams(temperature=1.2, top_k=5, max_tokens=12, seed=11, ignore_eos=True),
        SamplingParams(temperature=1.0, top_p=0.7, max_tokens=12, seed=12, ignore_eos=True),
    ]
    dec = decoder(tiny_model, tokenizer, near_draft, 3)
    first = dec.generate(PROMPTS[:4], params)
    again = dec.generate(PROMPTS[:4][::-1], params[::-1])[::-1]  # another batch order, same seeds
    assert [o.token_ids for o in first] == [o.token_ids for o in again]
    greedy = plain(tiny_model, tokenizer, [PROMPTS[1]], [params[1]], kv_cache_gb=0.001)
    assert first[1].token_ids == greedy[0].token_ids  # greedy beside sampled requests (one-hot q rows)
    seeds = [SamplingParams(temperature=0.8, max_tokens=12, seed=s, ignore_eos=True) for s in (11, 13, 14, 15)]
    other = dec.generate([PROMPTS[0]] * 4, seeds)
    assert other[0].token_ids == first[0].token_ids
    assert len({tuple(o.token_ids) for o in other}) == 4  # different seeds, different outputs
    unseeded = dec.generate([PROMPTS[0]] * 2, SamplingParams(max_tokens=12, ignore_eos=True))
    assert unseeded[0].token_ids != unseeded[1].token_ids


# ---------------------------------------------------------------------- 4. caches roll back
class Checked(SpeculativeDecoder):
    """After every round both sequences hold the verified history, with the KV of all but the
    pending token kept, and nothing past it committed."""

    def _round(self, active):
        super()._round(active)
        for r in active:
            for engine, seq_id in ((self.pair.target, r.target_id), (self.pair.draft, r.draft_id)):
                seq = engine.seqs[seq_id]
                assert seq.token_ids == r.record.token_ids and seq.num_committed == len(seq)
                if r.task.finish_reason is None:  # (a last round of k_r = 0 leaves the draft 2 behind)
                    assert seq.num_computed_tokens >= len(seq) - 2  # rejected drafts cost no recompute
            assert self.pair.target.seqs[r.target_id].num_computed_tokens == len(r.record) - 1


@pytest.mark.parametrize("which", ["near", "self"])
def test_caches_roll_back(which, tiny_model, tokenizer, near_draft):
    dec = decoder(tiny_model, tokenizer, near_draft if which == "near" else "self", 4, cls=Checked)
    temperatures = [0, 1, 0.5, 1, 0]
    params = [SamplingParams(temperature=t, max_tokens=14, seed=i, ignore_eos=True) for i, t in enumerate(temperatures)]
    outs = dec.generate(PROMPTS, params)
    verified = set()
    for out in outs:
        tokens, parent = out.prompt_token_ids + out.token_ids, None
        for i in range(len(tokens) // 4):
            parent = hash_block_tokens(parent, tuple(tokens[4 * i : 4 * i + 4]))
            verified.add(parent)
    for engine in dec.pair.engines:
        bm = engine.block_manager
        assert bm.num_used_blocks == 0 and not engine.seqs
        registered = {b.hash for b in bm.blocks if b.hash is not None}
        assert registered and registered <= verified  # no unverified token ever entered the prefix cache
    assert dec.metrics.num_accepted < dec.metrics.num_proposed or which == "self"


# ---------------------------------------------------------------------- 5. metrics and the LLM front
def test_llm_front_and_metrics(tiny_model, tokenizer, near_draft):
    target = Loaded(tiny_model, tokenizer, tiny_model.config)
    draft = Loaded(near_draft, tokenizer, near_draft.config)
    llm = LLM(target, draft=draft, num_speculative_tokens=3, block_size=4, kv_cache_gb=0.001)
    params = SamplingParams(temperature=0, max_tokens=10, ignore_eos=True)
    outs = llm.generate(["abc", [0, 5, 6, 7]], params)
    want = LLM(target, block_size=4, kv_cache_gb=0.001).generate(["abc", [0, 5, 6, 7]], params)
    same_outputs(outs, want)
    assert outs[0].prompt == "abc"
    spec = llm.get_metrics()["speculative"]
    assert 0 <= spec["accepted"] <= spec["proposed"] and spec["emitted"] == 20
    assert spec["mean_accepted_length"] == pytest.approx((spec["accepted"] + spec["verifies"]) / spec["verifies"])
    assert spec["target_forwards"] == spec["rounds"] and spec["draft_forwards"] >= 1
    assert len(spec["acceptance_by_position"]) == 3 and all(0 <= a <= 1 for a in spec["acceptance_by_position"])
    self_llm = LLM(target, draft="self", num_speculative_tokens=4, block_size=4, kv_cache_gb=0.001)
    same_outputs(self_llm.generate(["abc", [0, 5, 6, 7]], params), want)
    spec = self_llm.get_metrics()["speculative"]
    assert spec["accepted"] == spec["proposed"] and spec["acceptance_rate"] == 1.0
    assert spec["tokens_per_target_forward"] > 2
