"""The a1 ops backed by the CUDA kernels running in the CPU emulator (build.py, runtime.h).

Same signatures and semantics as a1_ext.ops; each function does what the CUDA torch glue
(csrc/*/*_cuda.cpp) does before a launch (dtype conversions, output and workspace allocation)
on CPU tensors, then calls the launcher through entry.cpp.
"""
from __future__ import annotations

import ctypes
from typing import Optional

import torch

from . import build

KIND = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}
_lib: Optional[ctypes.CDLL] = None


def lib() -> ctypes.CDLL:
    global _lib
    if _lib is None:
        _lib = build.load()
    return _lib


def _ptr(t: Optional[torch.Tensor]) -> Optional[int]:
    return None if t is None else t.data_ptr()


def _i64(values) -> ctypes.Array:
    return (ctypes.c_int64 * len(values))(*values)


def _check(rc: int, op: str) -> None:
    if rc != 0:
        raise RuntimeError(f"emulated {op} failed with status {rc}")


def reshape_and_cache(key, value, k_cache, v_cache, slot_mapping) -> None:
    slots = slot_mapping.to(torch.int64).contiguous()
    T, H, D = key.shape
    _check(lib().emu_reshape_and_cache(
        _ptr(key), _ptr(value), KIND[key.dtype], _i64(key.stride()), _i64(value.stride()), _ptr(k_cache),
        _ptr(v_cache), KIND[k_cache.dtype], k_cache.shape[0], k_cache.stride(0), v_cache.stride(0), _ptr(slots), T,
        k_cache.shape[1], H, D), "reshape_and_cache")


def copy_blocks(k_caches, v_caches, block_mapping) -> None:
    caches = list(k_caches) + list(v_caches)
    pointers = (ctypes.c_void_p * len(caches))(*[c.data_ptr() for c in caches])
    first, elem = caches[0], caches[0].element_size()
    mapping = block_mapping.to(torch.int64).contiguous()
    block_bytes = first.shape[1] * first.shape[2] * first.shape[3] * elem
    _check(lib().emu_copy_blocks(pointers, len(caches), first.shape[0], first.stride(0) * elem, block_bytes,
                                 _ptr(mapping), mapping.shape[0]), "copy_blocks")


def paged_attention(query, k_cache, v_cache, block_table, seq_lens, query_start_loc, scale) -> torch.Tensor:
    query = query if query.stride(2) == 1 else query.contiguous()
    table = block_table.to(torch.int32).contiguous()
    lens, qsl = seq_lens.to(torch.int32).contiguous(), query_start_loc.to(torch.int32).contiguous()
    out = torch.empty(query.shape, dtype=query.dtype)
    ints = _i64([query.stride(0), query.stride(1), k_cache.stride(0), v_cache.stride(0), table.stride(0),
                 table.shape[1], table.shape[0], query.shape[0], query.shape[1], k_cache.shape[2], query.shape[2],
                 k_cache.shape[1]])
    _check(lib().emu_paged_attention(_ptr(query), _ptr(out), KIND[query.dtype], _ptr(k_cache), _ptr(v_cache),
                                     _ptr(table), _ptr(lens), _ptr(qsl), ints, scale), "paged_attention")
    return out


def attention_splits(num_tokens: int, num_q_heads: int, max_kv_len: int) -> int:
    return lib().emu_paged_attention_splits(num_tokens, num_q_heads, max_kv_len)


def _norm_rows(x, residual, weight, out, eps) -> None:
    weight = weight.contiguous()  # held: the kernel reads it through a raw pointer
    _check(lib().emu_rms_norm(_ptr(x), x.stride(0), _ptr(residual), residual.stride(0) if residual is not None else 0,
                              _ptr(weight), _ptr(out), out.stride(0), KIND[x.dtype], x.shape[0],
                              x.shape[1], eps), "rms_norm")


def rms_norm(x, weight, eps) -> torch.Tensor:
    x = x if x.stride(1) == 1 else x.contiguous()
    out = torch.empty(x.shape, dtype=x.dtype)
    _norm_rows(x, None, weight, out, eps)
    return out


def fused_add_rms_norm(x, residual, weight, eps) -> None:
    _norm_rows(x, residual, weight, x, eps)


def silu_and_mul(x) -> torch.Tensor:
    x = x if x.stride(1) == 1 else x.contiguous()
    out = torch.empty(x.shape[0], x.shape[1] // 2, dtype=x.dtype)
    _check(lib().emu_silu_and_mul(_ptr(x), x.stride(0), _ptr(out), out.stride(0), KIND[x.dtype], out.shape[0],
                                  out.shape[1]), "silu_and_mul")
    return out


def rotary_embedding(x, cos, sin) -> None:
    cos, sin = cos.contiguous(), sin.contiguous()  # held: read through raw pointers
    T, H, D = x.shape
    _check(lib().emu_rotary_embedding(_ptr(x), KIND[x.dtype], _i64([x.stride(0), x.stride(1), cos.stride(0)]),
                                      _ptr(cos), _ptr(sin), T, H, D), "rotary_embedding")


def _score_outputs(token_ids, cu_seqlens):
    tokens = token_ids.to(torch.int64).contiguous()
    cu = cu_seqlens.to(torch.int64).contiguous()
    return tokens, cu, torch.empty(tokens.numel()), torch.empty(cu.numel() - 1)


def step_score(logits, token_ids, cu_seqlens, temperature):
    tokens, cu, token_logprob, step_nll = _score_outputs(token_ids, cu_seqlens)
    _check(lib().emu_step_score(_ptr(logits), KIND[logits.dtype], logits.stride(0), logits.shape[0], logits.shape[1],
                                temperature, _ptr(tokens), _ptr(cu), cu.numel() - 1, _ptr(token_logprob),
                                _ptr(step_nll)), "step_score")
    return token_logprob, step_nll


def linear_step_score(hidden, lm_head, token_ids, cu_seqlens, temperature, chunk):
    tokens, cu, token_logprob, step_nll = _score_outputs(token_ids, cu_seqlens)
    _check(lib().emu_linear_step_score(
        _ptr(hidden), _ptr(lm_head), KIND[hidden.dtype], hidden.stride(0), lm_head.stride(0), hidden.shape[0],
        hidden.shape[1], lm_head.shape[0], temperature, chunk, _ptr(tokens), _ptr(cu), cu.numel() - 1,
        _ptr(token_logprob), _ptr(step_nll)), "linear_step_score")
    return token_logprob, step_nll


def _params(temperature, top_k, top_p, seed, offset):
    return (temperature.float().contiguous(), top_k.to(torch.int64).contiguous(), top_p.float().contiguous(),
            seed.to(torch.int64).contiguous(), offset.to(torch.int64).contiguous())


def sample(logits, temperature, top_k, top_p, seed, offset):
    params = _params(temperature, top_k, top_p, seed, offset)
    rows = logits.shape[0]
    ids, logprob = torch.empty(rows, dtype=torch.int64), torch.empty(rows)
    _check(lib().emu_sample(_ptr(logits), KIND[logits.dtype], logits.stride(0), rows, logits.shape[1],
                            *[_ptr(p) for p in params], _ptr(ids), _ptr(logprob)), "sample")
    return ids, logprob


def sampling_probs(logits, temperature, top_k, top_p):
    """Returns (probs, status): status[b] = -1 where the kernel found no distribution in row b."""
    rows, vocab = logits.shape
    temperature, top_k, top_p = temperature.float().contiguous(), top_k.to(torch.int64).contiguous(), \
        top_p.float().contiguous()
    probs, status = torch.empty(rows, vocab), torch.empty(rows, dtype=torch.int64)
    _check(lib().emu_sampling_probs(_ptr(logits), KIND[logits.dtype], logits.stride(0), rows, vocab, _ptr(temperature),
                                    _ptr(top_k), _ptr(top_p), _ptr(probs), _ptr(status)), "sampling_probs")
    return probs, status


def speculative_verify(target_logits, draft_token_ids, cu_num_draft, draft_probs, temperature, top_k, top_p, seed,
                       offset):
    params = _params(temperature, top_k, top_p, seed, offset)
    cu = cu_num_draft.to(torch.int64).contiguous()
    drafts = draft_token_ids.to(torch.int64).contiguous()
    batch = cu.numel() - 1
    width = int((cu[1:] - cu[:-1]).max()) + 1 if batch else 1
    out_ids = torch.empty(batch, width, dtype=torch.int64)
    num_accepted = torch.empty(batch, dtype=torch.int64)
    target_logprob = torch.empty(drafts.numel())
    q_kind = KIND[draft_probs.dtype] if draft_probs is not None else 0
    q_stride = draft_probs.stride(0) if draft_probs is not None else 0
    _check(lib().emu_speculative_verify(
        _ptr(target_logits), KIND[target_logits.dtype], target_logits.stride(0), _ptr(drafts), _ptr(cu),
        _ptr(draft_probs), q_kind, q_stride, batch, target_logits.shape[0], target_logits.shape[1],
        *[_ptr(p) for p in params], _ptr(out_ids), width, _ptr(num_accepted), _ptr(target_logprob)),
        "speculative_verify")
    return out_ids, num_accepted, target_logprob


def _quant_weight(weight):
    from a1_ext.quant_formats import quant_format

    fmt = quant_format(weight)
    return (_ptr(weight), weight.shape[0], weight.shape[1] * fmt.block_size, weight.shape[1] * weight.shape[2],
            fmt.type_id)


def dequantize(weight, rows=None, row_begin=0, count=None, out=None) -> torch.Tensor:
    """As the glue: rows (any int dtype) as int64, a float32 [R or N, K] output. row_begin / count /
    out (rows of the weight from row_begin, into a given buffer) are what quant_linear's GEMM path
    passes for one slice."""
    args = _quant_weight(weight)
    picked = None if rows is None else rows.to(torch.int64).contiguous()
    count = picked.shape[0] if picked is not None else (weight.shape[0] - row_begin if count is None else count)
    out = torch.empty(count, args[2]) if out is None else out
    _check(lib().emu_dequantize(*args, _ptr(picked), row_begin, count, _ptr(out)), "dequantize")
    return out


def quant_gemv_max_tokens() -> int:
    return lib().emu_quant_gemv_max_tokens()


def round_activations(x) -> torch.Tensor:
    """x [T, K] rounded to 8 bits per 32-value group (the values q * d), as quant_linear multiplies."""
    x = x if x.stride(1) == 1 else x.contiguous()
    out = torch.empty(x.shape[0], x.shape[1])
    _check(lib().emu_round_activations(_ptr(x), x.stride(0), x.shape[0], x.shape[1], _ptr(out)), "round_activations")
    return out


def quant_linear(x, weight, bias=None, scratch_floats: int = 1 << 25) -> torch.Tensor:
    """As the glue (csrc/quant/quant_cuda.cpp): x rounded to 8 bits per group, then the decode kernel
    up to quant_gemv_max_tokens() rows, else the weight dequantized `scratch_floats` at a time and
    multiplied by torch."""
    T, N, K = x.shape[0], weight.shape[0], x.shape[1]
    if T == 0 or N == 0:
        return torch.empty(T, N)
    x = round_activations(x)
    if T > quant_gemv_max_tokens():
        slice_rows = min(max(scratch_floats // max(K, 1), 1), N)
        scratch = torch.empty(slice_rows, K)
        out = torch.empty(T, N)
        for n0 in range(0, N, slice_rows):
            n = min(slice_rows, N - n0)
            part = dequantize(weight, row_begin=n0, count=n, out=scratch[:n])
            out[:, n0 : n0 + n] = x @ part.t() + (bias[n0 : n0 + n] if bias is not None else 0)
        return out
    bias = bias.contiguous() if bias is not None else None
    out = torch.empty(T, N)
    _check(lib().emu_quant_gemv(*_quant_weight(weight), _ptr(x), x.stride(0), T, _ptr(bias), _ptr(out)),
           "quant_linear")
    return out


def quant_gemv(x, weight) -> torch.Tensor:
    """The decode kernel alone on x as given (no rounding): for the launcher's precondition checks."""
    out = torch.empty(x.shape[0], weight.shape[0])
    _check(lib().emu_quant_gemv(*_quant_weight(weight), _ptr(x), x.stride(0), x.shape[0], None, _ptr(out)),
           "quant_linear")
    return out
