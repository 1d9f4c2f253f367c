"""`speculative_verify`: exact greedy cases, token-for-token agreement with the twin (drafts drawn
from the target, so accepted chains and bonus tokens are compared), chi-square tests of the emitted
tokens against the filtered target (CPU and CUDA kernels and the twin), convergence to the target
(vLLM's test), seeding, opcheck, misuse."""
import math

import pytest
import torch

import a1_ext  # noqa: F401
from a1_ext import ops, reference
from sampling_checks import check_verify_distribution
from sampling_checks import implementation as pick


def _request_params(batch, temperature=1.0, top_k=0, top_p=1.0, offset=0):
    return dict(
        temperature=torch.full((batch,), temperature, dtype=torch.float32),
        top_k=torch.full((batch,), top_k, dtype=torch.int64),
        top_p=torch.full((batch,), top_p, dtype=torch.float32),
        seed=torch.arange(batch, dtype=torch.int64) * 104729 + 3,
        offset=torch.full((batch,), offset, dtype=torch.int64),
    )


def _cu(num_draft):
    return torch.tensor([0] + list(num_draft)).cumsum(0)


def _one_hot_logits(token_ids, vocab):
    logits = torch.full((len(token_ids), vocab), -10.0)
    logits[torch.arange(len(token_ids)), torch.tensor(token_ids)] = 10.0
    return logits


def test_greedy_all_accepted_gives_bonus_token():
    logits = _one_hot_logits([4, 2, 7, 9], vocab=12)  # k = 3 drafts + bonus row
    out, accepted, _ = ops.speculative_verify(logits, torch.tensor([4, 2, 7]), _cu([3]), None, **_request_params(1, 0.0))
    assert out.tolist() == [[4, 2, 7, 9]] and accepted.tolist() == [3]


def test_greedy_first_mismatch_takes_target_argmax_and_pads():
    logits = _one_hot_logits([4, 5, 7, 9, 1, 3], vocab=12)  # request 0: k=3; request 1: k=1
    drafts = torch.tensor([4, 2, 7, 6])
    out, accepted, _ = ops.speculative_verify(logits, drafts, _cu([3, 1]), None, **_request_params(2, 0.0))
    assert out.tolist() == [[4, 5, -1, -1], [1, -1, -1, -1]]
    assert accepted.tolist() == [1, 0]


def test_empty_drafts_emit_one_token():
    logits = _one_hot_logits([5, 8], vocab=10)
    out, accepted, logprob = ops.speculative_verify(logits, torch.zeros(0, dtype=torch.int64), _cu([0, 0]), None,
                                                    **_request_params(2, 0.0))
    assert out.tolist() == [[5], [8]] and accepted.tolist() == [0, 0] and logprob.numel() == 0


def _drafts_from_target(target, num_draft, params, draft_probs):
    """Drafts a real draft model would propose: drawn from its q rows when given, else from the
    request's filtered target row (argmax for greedy requests), so most are accepted and accepted
    chains, rejections after them and bonus tokens all occur."""
    g = torch.Generator().manual_seed(11)
    drafts = []
    for b, k in enumerate(num_draft):
        d0 = sum(num_draft[:b])
        for i in range(k):
            row = target[d0 + b + i].float()
            t, top_k, top_p = float(params["temperature"][b]), int(params["top_k"][b]), float(params["top_p"][b])
            if t == 0.0:
                drafts.append(int(row.argmax()))
                continue
            q = draft_probs[d0 + i] if draft_probs is not None else torch.softmax(
                reference.filtered_logits(row, t, top_k, top_p), -1)
            drafts.append(int(torch.multinomial(q, 1, generator=g)))
    return torch.tensor(drafts, dtype=torch.int64)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("with_draft_probs", [False, True])
@pytest.mark.parametrize("vocab", [111, 2000])
def test_matches_twin_token_for_token(dtype, with_draft_probs, vocab):
    torch.manual_seed(vocab + with_draft_probs)
    num_draft = [3, 0, 5, 1, 8, 2, 4, 4, 6, 3, 5, 2]
    batch, total = len(num_draft), sum(num_draft)
    # spread logits plus one likely token per row (p ~ 0.95), as a model has: drafts from such rows
    # are mostly accepted, so chains of several accepted drafts and bonus tokens are compared too
    target = torch.randn(total + batch, vocab) * 1.5
    target[torch.arange(total + batch), torch.randint(0, vocab, (total + batch,))] += math.log(vocab) + 4
    target = target.to(dtype)
    starts = _cu(num_draft)[:-1].tolist()
    draft_rows = torch.cat([target[d0 + b : d0 + b + k] for b, (d0, k) in enumerate(zip(starts, num_draft))])
    draft_probs = torch.softmax(draft_rows.float() + 0.5 * torch.randn(total, vocab), -1) if with_draft_probs else None
    params = _request_params(batch, offset=77)
    params["temperature"] = torch.tensor([0.0, 1.0, 0.7, 1.2, 1.0, 0.9, 1.0, 1.0, 0.8, 0.0, 1.1, 0.6])
    params["top_k"] = torch.tensor([0, 0, 20, 0, 0, 5, 0, 0, 3, 0, 50, 0])
    params["top_p"] = torch.tensor([1.0, 1.0, 1.0, 0.8, 1.0, 0.9, 1.0, 0.95, 1.0, 1.0, 0.9, 0.7])
    drafts = _drafts_from_target(target, num_draft, params, draft_probs)
    args = (target, drafts, _cu(num_draft), draft_probs)
    out, accepted, logprob = ops.speculative_verify(*args, **params)
    ref_out, ref_accepted, ref_logprob = reference.speculative_verify(*args, **params)
    assert torch.equal(out, ref_out) and torch.equal(accepted, ref_accepted)
    torch.testing.assert_close(logprob, ref_logprob, atol=1e-5, rtol=1e-5)
    # structure: accepted drafts, one emitted token, then -1 padding
    for b in range(batch):
        n = int(accepted[b])
        assert (out[b, : n + 1] >= 0).all() and (out[b, n + 1 :] == -1).all()
        assert torch.equal(out[b, :n], drafts[starts[b] : starts[b] + n])
    # the comparison covered long accepted chains, bonus tokens after every draft, and rejections
    sampled = params["temperature"] > 0
    k = torch.tensor(num_draft)
    assert bool(((accepted == k) & (k >= 3) & sampled).any()), accepted.tolist()
    assert bool(((accepted < k) & (accepted >= 1) & sampled).any()), accepted.tolist()
    assert bool(((accepted < k) & sampled).sum() >= 2), accepted.tolist()


@pytest.mark.slow
@pytest.mark.parametrize("with_draft_probs", [True, False])
def test_emitted_tokens_converge_to_target_distribution(with_draft_probs):
    """Every emitted token (accepted draft, replacement or bonus) is a draw from the target: its
    distance to the target shrinks like 1/sqrt(n), much faster than to random distributions."""
    torch.manual_seed(7)
    vocab, k = 10, 2
    target_probs = torch.softmax(torch.randn(vocab) * 1.5, -1)
    draft_dist = torch.softmax(torch.randn(vocab) * 1.5, -1)
    references = torch.distributions.Dirichlet(torch.ones(vocab)).sample((100,))
    distances_to_target, distances_to_references = [], []
    for num_requests in (10, 100, 1000, 10000, 40000):
        drafts = torch.multinomial(draft_dist, num_requests * k, replacement=True)
        logits = target_probs.log().expand(num_requests * (k + 1), -1).contiguous()
        draft_probs = draft_dist.expand(num_requests * k, -1).contiguous() if with_draft_probs else None
        out, _, _ = ops.speculative_verify(logits, drafts, _cu([k] * num_requests), draft_probs,
                                           **_request_params(num_requests, offset=num_requests))
        emitted = out[out >= 0]
        freq = torch.bincount(emitted, minlength=vocab).float() / emitted.numel()
        distances_to_target.append(torch.dist(freq, target_probs).item())
        distances_to_references.append(torch.cdist(freq[None], references)[0].mean().item())
    target_shrink = distances_to_target[0] / distances_to_target[-1]
    reference_shrink = distances_to_references[0] / distances_to_references[-1]
    assert target_shrink > 20 * reference_shrink, (distances_to_target, distances_to_references)
    assert distances_to_target[-1] < 0.01


# Requests per implementation: the twin loops in Python (~8 ms a request), so it runs fewer, on one case.
VERIFY_REQUESTS = {"cpu": 30000, "cuda": 30000, "twin": 1200}
FILTERS = [(0.7, 0, 1.0), (1.3, 0, 0.8), (0.8, 10, 0.9)]
VERIFY_CASES = [(impl, draft, *f) for impl in VERIFY_REQUESTS for draft in ("q", "fixed") for f in FILTERS
                if impl != "twin" or (draft, f) == ("q", FILTERS[-1])]


def implementation(name: str):
    return pick(name, ops.speculative_verify, reference.speculative_verify)


@pytest.mark.parametrize("impl,draft,temperature,top_k,top_p", VERIFY_CASES)
def test_emitted_tokens_follow_filtered_target(impl, draft, temperature, top_k, top_p):
    """Two drafts per request, drawn from a q that over-proposes the target's runner-up token (and
    puts mass on tokens the filters drop) or fixed (a deterministic draft: the likeliest token,
    then a runner-up). Every emitted token, at each position the request reached, follows
    transformers' warped target row: a rejected position resampled from p instead of
    max(p - q, 0) over-weights the drafted tokens."""
    g = torch.Generator().manual_seed(8)
    vocab, k = 30, 2
    target_rows = 2.5 * torch.randn(k + 1, vocab, generator=g)
    q = 0.7 * torch.softmax(target_rows[:k] + 2 * torch.randn(k, vocab, generator=g), -1)
    q[torch.arange(k), target_rows[:k].argsort(-1)[:, -2]] += 0.3
    fixed = [int(target_rows[0].argmax()), int(target_rows[1].argsort()[-2])]
    check_verify_distribution(implementation(impl), target_rows, q if draft == "q" else None,
                              fixed if draft == "fixed" else None, temperature, top_k, top_p, VERIFY_REQUESTS[impl])


def test_target_logprob_is_raw_log_softmax_of_every_draft():
    torch.manual_seed(8)
    target, drafts = torch.randn(7, 50), torch.randint(0, 50, (5,))
    _, _, logprob = ops.speculative_verify(target, drafts, _cu([3, 2]), None, **_request_params(2, 0.0))
    rows = torch.cat([target[0:3], target[4:6]])
    torch.testing.assert_close(logprob, torch.log_softmax(rows, -1).gather(1, drafts[:, None])[:, 0])


def test_seeded_calls_are_reproducible():
    torch.manual_seed(9)
    target, drafts = torch.randn(40 * 4, 64), torch.randint(0, 64, (40 * 3,))
    args = (target, drafts, _cu([3] * 40), None)
    first = ops.speculative_verify(*args, **_request_params(40, offset=5))
    again = ops.speculative_verify(*args, **_request_params(40, offset=5))
    moved = ops.speculative_verify(*args, **_request_params(40, offset=6))
    assert torch.equal(first[0], again[0]) and not torch.equal(first[0], moved[0])


def test_opcheck_speculative_verify():
    torch.manual_seed(10)
    target, drafts = torch.randn(7, 30), torch.randint(0, 30, (5,))
    draft_probs = torch.softmax(torch.randn(5, 30), -1)
    args = (target, drafts, _cu([3, 2]), draft_probs, *_request_params(2).values())
    torch.library.opcheck(torch.ops.a1.speculative_verify.default, args)


@pytest.mark.parametrize(
    "change,match",
    [
        (dict(target_logits=torch.randn(6, 20)), r"target_logits.size\(0\) must equal sum\(k_b \+ 1\)"),
        (dict(draft_token_ids=torch.tensor([1, 2, 30, 4, 5])), "draft_token_ids must be in"),
        (dict(draft_token_ids=torch.tensor([1, 2, 3, 4, 5], dtype=torch.int32)), "draft_token_ids must be Long"),
        (dict(cu_num_draft=torch.tensor([0, 3, 4])), r"cu_num_draft\[-1\]"),
        (dict(draft_probs=torch.rand(5, 19)), r"draft_probs.size\(1\)"),
        (dict(draft_probs=torch.rand(4, 20)), r"draft_probs.size\(0\)"),
        (dict(top_p=torch.tensor([1.0, 0.0])), r"top_p\[1\]"),
    ],
)
def test_misuse_names_the_argument(change, match):
    args = dict(target_logits=torch.randn(7, 20), draft_token_ids=torch.tensor([1, 2, 3, 4, 5]),
                cu_num_draft=torch.tensor([0, 3, 5]), draft_probs=None, **_request_params(2))
    args.update(change)
    with pytest.raises(RuntimeError, match=match):
        ops.speculative_verify(**args)
