"""One contract on every device: the CPU and CUDA glue of the score, sampling, attention and cache
ops share their argument checks (csrc/*/*_checks.h), so each misuse below is refused with the same
message naming the argument on the CPU and on CUDA (skipped without a device).

Index values (slot_mapping, block_table, seq_lens, query_start_loc) of the per-layer ops are
validated wherever the CPU kernel would see them; the CUDA glue validates them when they are given
on the CPU (reading them from the device would cost a host sync per layer per step), so the CUDA
variants of those cases keep them on the CPU.
"""
from __future__ import annotations

import math

import pytest
import torch

from cuda_cases import cuda_skip_reason

import a1_ext  # noqa: F401
from a1_ext import ops

DEVICES = ["cpu", "cuda"]


def on(device: str, args: dict, keep: tuple = ()) -> dict:
    """args with every tensor (and tensors in lists) moved to `device`, except the names in `keep`."""
    if device == "cuda" and cuda_skip_reason():
        pytest.skip(cuda_skip_reason())

    def move(v):
        if isinstance(v, torch.Tensor):
            return v.to(device)
        return [move(x) for x in v] if isinstance(v, list) else v

    return {k: v if k in keep else move(v) for k, v in args.items()}


def misuse(device, op, args, change, match, keep=()):
    args = dict(args, **change)
    with pytest.raises(RuntimeError, match=match):
        op(**on(device, args, keep))


# ----------------------------------------------------------------------------- scoring
SCORE = dict(logits=torch.randn(3, 50), token_ids=torch.tensor([0, 1, 2]), cu_seqlens=torch.tensor([0, 3]),
             temperature=1.0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("change,match", [
    (dict(token_ids=torch.tensor([0, 1, 2], dtype=torch.int32)), "token_ids must be Long"),
    (dict(token_ids=torch.tensor([0, 1, 50])), r"token_ids must be in \[0, 50\), got values in \[0, 50\]"),
    (dict(token_ids=torch.tensor([-1, 1, 2])), r"token_ids must be in \[0, 50\)"),
    (dict(cu_seqlens=torch.tensor([0, 2, 1, 3])), "cu_seqlens must be non-decreasing"),
    (dict(cu_seqlens=torch.tensor([0, 2])), r"cu_seqlens\[-1\] must equal"),
    (dict(temperature=math.nan), "temperature must be finite and > 0 in float32"),
    (dict(temperature=-1.0), "temperature must be finite and > 0 in float32"),
    (dict(temperature=1e-50), "temperature must be finite and > 0 in float32"),  # 0 as the kernels' float
    (dict(temperature=1e39), "temperature must be finite and > 0 in float32"),  # inf as the kernels' float
    (dict(logits=torch.randn(3, 0)), r"logits must have a non-empty vocabulary"),
    (dict(logits=torch.randn(3, 50).double()), "logits must be float32, bfloat16 or float16"),
])
def test_step_score(device, change, match):
    misuse(device, ops.step_score, SCORE, change, match)


LINEAR_SCORE = dict(hidden=torch.randn(3, 8), lm_head=torch.randn(50, 8), token_ids=torch.tensor([0, 1, 2]),
                    cu_seqlens=torch.tensor([0, 3]), temperature=1.0, chunk=16)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("change,match", [
    (dict(token_ids=torch.tensor([0, 1, 2], dtype=torch.int32)), "token_ids must be Long"),
    (dict(token_ids=torch.tensor([0, 1, 50])), r"token_ids must be in \[0, 50\)"),
    (dict(temperature=math.inf), "temperature must be finite and > 0 in float32"),
    (dict(temperature=1e-50), "temperature must be finite and > 0 in float32"),
    (dict(chunk=0), "chunk must be > 0"),
    (dict(lm_head=torch.randn(50, 8).half()), "lm_head must have hidden's dtype"),
    (dict(lm_head=torch.randn(50, 9)), r"lm_head.size\(1\) must equal hidden.size\(1\)"),
    (dict(lm_head=torch.randn(0, 8)), "lm_head must have a non-empty vocabulary"),
])
def test_linear_step_score(device, change, match):
    misuse(device, ops.linear_step_score, LINEAR_SCORE, change, match)


# ----------------------------------------------------------------------------- sampling
def sampling_params(batch: int) -> dict:
    return dict(temperature=torch.full((batch,), 0.8), top_k=torch.zeros(batch, dtype=torch.int64),
                top_p=torch.ones(batch), seed=torch.arange(batch), offset=torch.zeros(batch, dtype=torch.int64))


SAMPLE = dict(logits=torch.randn(2, 20), **sampling_params(2))
PARAM_MISUSE = [
    (dict(temperature=torch.tensor([0.8, 0.8], dtype=torch.float64)), "temperature must be Float"),
    (dict(temperature=torch.tensor([0.8, math.nan])), r"temperature\[1\] must be finite and >= 0"),
    (dict(temperature=torch.tensor([-0.1, 0.8])), r"temperature\[0\] must be finite and >= 0"),
    (dict(top_k=torch.tensor([0, 1], dtype=torch.int32)), "top_k must be Long"),
    (dict(top_k=torch.tensor([0, -1])), r"top_k\[1\] must be >= 0"),
    (dict(top_p=torch.tensor([0.0, 1.0])), r"top_p\[0\] must be in \(0, 1\]"),
    (dict(top_p=torch.tensor([1.0, math.nan])), r"top_p\[1\] must be in \(0, 1\]"),
    (dict(seed=torch.tensor([1, 2], dtype=torch.int32)), "seed must be Long"),
    (dict(offset=torch.tensor([0, 0, 0])), r"offset.size\(0\) must equal the batch size B"),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("change,match", PARAM_MISUSE + [
    (dict(logits=torch.randn(2, 0)), "logits must have a non-empty vocabulary"),
    (dict(logits=torch.randn(2, 4, 5)), "logits must be 2-D"),
])
def test_sample(device, change, match):
    misuse(device, ops.sample, SAMPLE, change, match)


VERIFY = dict(target_logits=torch.randn(7, 20), draft_token_ids=torch.tensor([1, 2, 3, 4, 5]),
              cu_num_draft=torch.tensor([0, 3, 5]), draft_probs=torch.full((5, 20), 0.05), **sampling_params(2))


def _probs_with(index, value):
    probs = torch.full((5, 20), 0.05)
    probs[index] = value
    return probs


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("change,match", PARAM_MISUSE + [
    (dict(draft_token_ids=torch.tensor([1, 2, 3, 4, 5], dtype=torch.int32)), "draft_token_ids must be Long"),
    (dict(draft_token_ids=torch.tensor([1, 2, 20, 4, 5])), r"draft_token_ids must be in \[0, 20\)"),
    (dict(cu_num_draft=torch.tensor([0, 4, 3])), "cu_num_draft must be non-decreasing"),
    (dict(target_logits=torch.randn(6, 20)), r"target_logits.size\(0\) must equal sum\(k_b \+ 1\)"),
    (dict(draft_probs=_probs_with((1, 3), -0.01)), r"draft_probs\[1, 3\] must be finite and >= 0, got -0.01"),
    (dict(draft_probs=_probs_with((4, 0), math.nan)), r"draft_probs\[4, 0\] must be finite and >= 0, got nan"),
    (dict(draft_probs=_probs_with((0, 19), math.inf)), r"draft_probs\[0, 19\] must be finite and >= 0, got inf"),
    (dict(draft_probs=torch.full((5, 20), 0.05).double()), "draft_probs must be float32"),
])
def test_speculative_verify(device, change, match):
    misuse(device, ops.speculative_verify, VERIFY, change, match)


# ----------------------------------------------------------------------------- attention
def attention_args() -> dict:
    g = torch.Generator().manual_seed(0)
    k_cache, v_cache = torch.randn(6, 8, 2, 32, generator=g), torch.randn(6, 8, 2, 32, generator=g)
    return dict(query=torch.randn(6, 4, 32, generator=g), k_cache=k_cache, v_cache=v_cache,
                block_table=torch.tensor([[0, 1, 2], [3, 4, 5]], dtype=torch.int32),
                seq_lens=torch.tensor([20, 18], dtype=torch.int32),
                query_start_loc=torch.tensor([0, 1, 6], dtype=torch.int32), scale=0.2)


INDEX_NAMES = ("block_table", "seq_lens", "query_start_loc")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("change,match", [
    (dict(scale=math.nan), "scale must be finite, got nan"),
    (dict(scale=math.inf), "scale must be finite, got inf"),
    (dict(v_cache=torch.randn(6, 8, 2, 32).half()), "v_cache must be Float"),
    (dict(k_cache=torch.randn(6, 2, 8, 32).transpose(1, 2)), "k_cache must have contiguous"),
    (dict(block_table=torch.zeros(2, 3)), "block_table must be int32 or int64"),
    (dict(query=torch.randn(6, 3, 32)), r"num_q_heads=3\) must be a multiple of"),
    (dict(query_start_loc=torch.tensor([0, 1], dtype=torch.int32)), r"query_start_loc.size\(0\) must equal"),
    (dict(seq_lens=torch.tensor([20, 25], dtype=torch.int32)), r"seq_lens\[1\]=25 exceeds block_table capacity"),
    (dict(seq_lens=torch.tensor([20, 4], dtype=torch.int32)), r"q_len=5 queries, more than seq_lens\[1\]=4"),
    (dict(block_table=torch.tensor([[0, 1, 2], [3, 9, 5]], dtype=torch.int32)), r"block_table\[1, 1\]=9 is out"),
])
def test_paged_attention(device, change, match):
    misuse(device, ops.paged_attention, attention_args(), change, match, keep=INDEX_NAMES)


# ----------------------------------------------------------------------------- cache
def reshape_args() -> dict:
    return dict(key=torch.randn(2, 2, 8), value=torch.randn(2, 2, 8), k_cache=torch.zeros(3, 4, 2, 8),
                v_cache=torch.zeros(3, 4, 2, 8), slot_mapping=torch.tensor([1, 5]))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("change,match", [
    (dict(slot_mapping=torch.tensor([1, 12])), r"slot_mapping\[1\]=12 is out of range"),
    (dict(slot_mapping=torch.tensor([1, 5], dtype=torch.int32)), "slot_mapping must be Long"),
    (dict(key=torch.randn(2, 2, 8).half()), "key dtype Half must equal k_cache dtype Float"),
    (dict(v_cache=torch.zeros(3, 4, 2, 8).half()), "v_cache must be Float"),
    (dict(v_cache=torch.zeros(3, 4, 8, 2).transpose(2, 3)), "v_cache must have contiguous"),
    (dict(value=torch.randn(2, 1, 8)), "value shape"),
])
def test_reshape_and_cache(device, change, match):
    misuse(device, ops.reshape_and_cache, reshape_args(), change, match, keep=("slot_mapping",))


def copy_args(mapping) -> dict:
    caches = [torch.randn(6, 4, 2, 8, generator=torch.Generator().manual_seed(i)) for i in range(4)]
    return dict(k_caches=caches[:2], v_caches=caches[2:], block_mapping=torch.tensor(mapping))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mapping,match", [
    ([[0, 2], [2, 3]], r"block_mapping\[0, 1\]=2 is also a source block"),  # CUDA CTAs would tear this copy
    ([[3, 1], [0, 4], [5, 1]], r"block_mapping\[2, 1\]=1 is a destination twice"),
    ([[0, 6]], r"block_mapping\[0, 1\]=6 is out of range for caches of 6 blocks"),
    ([[-1, 2]], r"block_mapping\[0, 0\]=-1 is out of range"),
    ([[0, 2, 1]], r"block_mapping must be \[num_pairs, 2\]"),
])
def test_copy_blocks_refuses_a_mapping_that_would_tear(device, mapping, match):
    misuse(device, ops.copy_blocks, copy_args([[0, 1]]), dict(block_mapping=torch.tensor(mapping)), match)


@pytest.mark.parametrize("device", DEVICES)
def test_copy_blocks_accepts_a_pair_onto_itself_as_a_no_op(device):
    args = on(device, copy_args([[2, 2], [2, 5], [0, 1]]))
    before = [c.cpu().clone() for c in args["k_caches"] + args["v_caches"]]
    ops.copy_blocks(**args)
    for got, old in zip(args["k_caches"] + args["v_caches"], before):
        want = old.clone()
        want[5], want[1] = old[2], old[0]
        assert torch.equal(got.cpu(), want)
