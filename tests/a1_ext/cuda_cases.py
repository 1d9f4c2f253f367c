"""Input builders shared by the CUDA op tests (real device: test_cuda_ops.py; CPU emulation of the
same kernels: test_cuda_emulated.py). Every builder returns CPU tensors; tests move them.

The reference twins are loaded from a1_ext/reference.py by path so these tests need neither the
compiled extension nor a GPU to import.
"""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Optional

import torch

_REFERENCE_PATH = Path(__file__).resolve().parents[2] / "a1_ext" / "reference.py"
_spec = importlib.util.spec_from_file_location("a1_reference_twins", _REFERENCE_PATH)
reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reference)


def attention_case(dtype, head_dim, block_size, q_lens, seq_lens, num_q_heads=4, num_kv_heads=2, seed=0,
                   spare_blocks=3):
    """Ragged paged-attention inputs: row b has seq_lens[b] cached positions, its last q_lens[b] are
    the queries. Blocks are assigned in a shuffled order so the table really indirects."""
    g = torch.Generator().manual_seed(seed)
    blocks_per_row = [max(1, math.ceil(s / block_size)) for s in seq_lens]
    max_blocks = max(blocks_per_row) + 1
    num_blocks = sum(blocks_per_row) + spare_blocks
    order = torch.randperm(num_blocks, generator=g)
    table = torch.zeros(len(seq_lens), max_blocks, dtype=torch.int32)
    used = 0
    for b, n in enumerate(blocks_per_row):
        table[b, :n] = order[used : used + n].to(torch.int32)
        used += n
    shape = (num_blocks, block_size, num_kv_heads, head_dim)
    k_cache = torch.randn(shape, generator=g).to(dtype)
    v_cache = torch.randn(shape, generator=g).to(dtype)
    query = torch.randn(sum(q_lens), num_q_heads, head_dim, generator=g).to(dtype)
    qsl = torch.tensor([0] + list(torch.tensor(q_lens).cumsum(0)), dtype=torch.int32)
    return query, k_cache, v_cache, table, torch.tensor(seq_lens, dtype=torch.int32), qsl, head_dim**-0.5


def assert_close_up_to_rounding(got, want, dtype):
    """For the per-token ops that round like their torch formulation (norms, silu_and_mul, RoPE):
    fp32 to 1e-5; 16-bit to one rounding step AND bit-equal for all but a few elements. A kernel
    that skips one of the twin's roundings stays within the tolerance but differs on many elements;
    only a 1-ulp difference of an fp32 intermediate (summation order, exp) may flip a rounding."""
    tol = {torch.float32: 1e-5, torch.bfloat16: 1e-2, torch.float16: 2e-3}[dtype]
    assert got.dtype == want.dtype and got.shape == want.shape
    torch.testing.assert_close(got.float(), want.float(), atol=tol, rtol=tol)
    if dtype != torch.float32 and want.numel():
        assert (got != want).float().mean() < 0.01


def ulp_distance(got: torch.Tensor, want: torch.Tensor) -> torch.Tensor:
    """How many representable bf16/fp16 values lie between got and want, elementwise (int32).
    Sign-magnitude bits mapped onto a monotone integer line, so +0 and -0 are 0 apart."""
    def line(t):
        bits = t.contiguous().view(torch.int16).to(torch.int32)
        return torch.where(bits < 0, -(bits & 0x7FFF), bits)

    assert got.dtype == want.dtype and got.dtype in (torch.bfloat16, torch.float16), got.dtype
    return (line(got) - line(want)).abs()


def assert_one_rounding_from_twin(got, want, max_fraction=0.01, floor=1e-6):
    """For 16-bit outputs computed in fp32 and rounded once (attention): bit-equal to the twin for
    all but max_fraction of the elements, and those one ulp away, or less than `floor` away where
    the 16-bit grid is finer than the fp32 sum's own rounding (values near 0; another summation
    order). A kernel that rounds an intermediate (the softmax, P @ V) to 16 bits differs on ~40% of
    the elements by many ulps, yet stays inside an atol of 2e-2."""
    assert got.shape == want.shape
    distance = ulp_distance(got, want)
    differ = distance > 0
    fraction = float(differ.float().mean()) if want.numel() else 0.0
    assert fraction < max_fraction, f"{fraction:.2%} of the elements differ from the twin (limit {max_fraction:.0%})"
    far = (distance > 1) & ((got.float() - want.float()).abs() > floor)
    if far.any():
        i = tuple(torch.nonzero(far)[0].tolist())
        raise AssertionError(f"{int(far.sum())} elements differ by more than one ulp, e.g. {i}: "
                             f"{float(got[i])} vs {float(want[i])} ({int(distance[i])} ulps)")


def norm_case(num_rows, hidden, dtype=torch.float32, seed=0, row_stride=None):
    """x, residual [T, H] (rows row_stride apart inside a wider buffer when given) and weight [H]."""
    g = torch.Generator().manual_seed(seed)
    width = row_stride or hidden
    x = (3 * torch.randn(num_rows, width, generator=g) + 0.5).to(dtype)[:, :hidden]
    residual = torch.randn(num_rows, width, generator=g).to(dtype)[:, :hidden]
    weight = (1 + 0.5 * torch.randn(hidden, generator=g)).to(dtype)
    return x, residual, weight


def activation_case(num_rows, width, dtype=torch.float32, seed=0):
    """x [T, 2 * width]: gate and up halves, gates spread over silu's interesting range."""
    g = torch.Generator().manual_seed(seed)
    return (4 * torch.randn(num_rows, 2 * width, generator=g)).to(dtype)


def rotary_case(num_tokens, num_qk_heads, num_v_heads, head_dim, dtype=torch.float32, seed=0):
    """A fused projection qkv [T, Hqk + Hv, D] (rotate qkv[:, :Hqk]) and cos, sin [T, D] tables."""
    g = torch.Generator().manual_seed(seed)
    qkv = torch.randn(num_tokens, num_qk_heads + num_v_heads, head_dim, generator=g).to(dtype)
    angles = torch.rand(num_tokens, head_dim // 2, generator=g) * 100
    cos = torch.cat((angles, angles), -1).cos().to(dtype)
    sin = torch.cat((-angles.sin(), angles.sin()), -1).to(dtype)
    return qkv, cos, sin


def score_case(num_tokens, vocab, segments, dtype=torch.float32, seed=0):
    """logits [T, V], token ids and cu_seqlens for the given segment lengths (sum = T)."""
    g = torch.Generator().manual_seed(seed)
    logits = (3 * torch.randn(num_tokens, vocab, generator=g)).to(dtype)
    tokens = torch.randint(0, vocab, (num_tokens,), generator=g)
    cu = torch.tensor([0] + list(torch.tensor(segments).cumsum(0)), dtype=torch.int64)
    assert int(cu[-1]) == num_tokens
    return logits, tokens, cu


def sampling_params(rows, temperature, top_k, top_p, seed=1234):
    """Per-row parameter tensors; scalars are broadcast, lists taken as given."""
    def full(value, dtype):
        values = value if isinstance(value, (list, tuple)) else [value] * rows
        return torch.tensor(values, dtype=dtype)

    seeds = torch.arange(rows, dtype=torch.int64) * 7919 + seed
    offsets = torch.arange(rows, dtype=torch.int64) * 3
    return full(temperature, torch.float32), full(top_k, torch.int64), full(top_p, torch.float32), seeds, offsets


def verify_case(num_draft, vocab, dtype=torch.float32, with_draft_probs=True, greedy_hits=True, seed=0,
                temperature=0.8, top_k=0, top_p=1.0):
    """Speculative-verify inputs for draft lengths num_draft (list, zeros allowed). Drafts are drawn
    from the draft distribution q; with greedy_hits some drafts copy the target argmax so greedy
    rows accept a few tokens before the first mismatch."""
    g = torch.Generator().manual_seed(seed)
    batch = len(num_draft)
    cu = torch.tensor([0] + list(torch.tensor(num_draft).cumsum(0)), dtype=torch.int64)
    total = int(cu[-1])
    target = (2 * torch.randn(total + batch, vocab, generator=g)).to(dtype)
    draft_logits = target[[r for b in range(batch) for r in range(int(cu[b]) + b, int(cu[b + 1]) + b)]].float()
    draft_logits = draft_logits + 0.7 * torch.randn(draft_logits.shape, generator=g)
    q = torch.softmax(draft_logits, -1) if total else torch.empty(0, vocab)
    drafts = torch.multinomial(q, 1, generator=g).squeeze(1) if total else torch.empty(0, dtype=torch.int64)
    if greedy_hits and total:
        rows = torch.tensor([r for b in range(batch) for r in range(int(cu[b]) + b, int(cu[b + 1]) + b)])
        argmax = target[rows].float().argmax(-1)
        keep = torch.rand(total, generator=g) < 0.6
        drafts = torch.where(keep, argmax, drafts)
    draft_probs: Optional[torch.Tensor] = q if with_draft_probs else None
    temps, top_ks, top_ps, seeds, offsets = sampling_params(batch, temperature, top_k, top_p, seed=seed + 99)
    return target, drafts, cu, draft_probs, temps, top_ks, top_ps, seeds, offsets


def cuda_skip_reason() -> Optional[str]:
    """Why CUDA op tests cannot run here, or None. A broken build on a CUDA machine is not a skip:
    the import error propagates."""
    if not torch.cuda.is_available():
        return "no CUDA device (torch.cuda.is_available() is False); test_cuda_emulated.py covers the kernels"
    import a1_ext  # noqa: F401  (registers the ops)

    if not torch._C._dispatch_has_kernel_for_dispatch_key("a1::sample", "CUDA"):
        return "a1_ext was built without its CUDA kernels (A1_CUDA=0)"
    return None


def op_devices() -> list[str]:
    """Devices an op test should run on: the CPU, plus CUDA when a device and the kernels exist."""
    return ["cpu"] if cuda_skip_reason() else ["cpu", "cuda"]


# A small decoder layer: hidden 96, MLP 160, 4 query heads over 2 KV heads of 16, KV blocks of 4.
DECODER_HIDDEN, DECODER_INTER, DECODER_HEADS, DECODER_KV_HEADS, DECODER_HEAD_DIM, DECODER_BLOCK = 96, 160, 4, 2, 16, 4


def layer_case(q_lens, seq_lens, bias=False, seed=0):
    """Arguments of decoder_layer for ragged rows: row b holds seq_lens[b] positions, of which the last
    q_lens[b] are this step's tokens (their K/V slots are in slot_mapping, the rest already cached)."""
    g = torch.Generator().manual_seed(seed)
    _, k_cache, v_cache, table, lens, qsl, scale = attention_case(
        torch.float32, DECODER_HEAD_DIM, DECODER_BLOCK, q_lens, seq_lens, DECODER_HEADS, DECODER_KV_HEADS, seed=seed
    )
    slots = [int(table[b, p // DECODER_BLOCK]) * DECODER_BLOCK + p % DECODER_BLOCK
             for b, (q, s) in enumerate(zip(q_lens, seq_lens)) for p in range(s - q, s)]
    tokens = sum(q_lens)
    _, cos, sin = rotary_case(tokens, DECODER_HEADS + DECODER_KV_HEADS, DECODER_KV_HEADS, DECODER_HEAD_DIM, seed=seed)

    def weight(rows, cols):
        return torch.randn(rows, cols, generator=g) / cols**0.5

    def maybe_bias(size):
        return 0.1 * torch.randn(size, generator=g) if bias else None

    qkv_rows = (DECODER_HEADS + 2 * DECODER_KV_HEADS) * DECODER_HEAD_DIM
    return dict(
        residual=torch.randn(tokens, DECODER_HIDDEN, generator=g),
        hidden=torch.randn(tokens, DECODER_HIDDEN, generator=g),
        input_norm_weight=1 + 0.1 * torch.randn(DECODER_HIDDEN, generator=g),
        qkv_weight=weight(qkv_rows, DECODER_HIDDEN), qkv_bias=maybe_bias(qkv_rows),
        o_weight=weight(DECODER_HIDDEN, DECODER_HEADS * DECODER_HEAD_DIM), o_bias=maybe_bias(DECODER_HIDDEN),
        post_norm_weight=1 + 0.1 * torch.randn(DECODER_HIDDEN, generator=g),
        gate_up_weight=weight(2 * DECODER_INTER, DECODER_HIDDEN), gate_up_bias=maybe_bias(2 * DECODER_INTER),
        down_weight=weight(DECODER_HIDDEN, DECODER_INTER), down_bias=maybe_bias(DECODER_HIDDEN),
        cos=cos, sin=sin, k_cache=k_cache, v_cache=v_cache, slot_mapping=torch.tensor(slots, dtype=torch.int64),
        block_table=table, seq_lens=lens, query_start_loc=qsl, eps=1e-5, scale=scale,
    )


DECODER_WEIGHT_ARGS = ["input_norm_weight", "qkv_weight", "qkv_bias", "o_weight", "o_bias", "post_norm_weight",
                       "gate_up_weight", "gate_up_bias", "down_weight", "down_bias"]


def layers_case(q_lens, seq_lens, layers, bias=False, seed=10):
    """decoder_layers inputs for `layers` layers, each with its own weights and caches (layer_case
    with seeds seed, seed + 1, ...) and the rest shared."""
    cases = [layer_case(q_lens, seq_lens, bias, seed=seed + i) for i in range(layers)]
    stack = {k: v for k, v in cases[0].items() if k not in DECODER_WEIGHT_ARGS + ["k_cache", "v_cache"]}
    stack.update({name: [case[name] for case in cases] for name in DECODER_WEIGHT_ARGS})
    stack["k_caches"] = [case["k_cache"] for case in cases]
    stack["v_caches"] = [case["v_cache"] for case in cases]
    return stack
