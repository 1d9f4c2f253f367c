// Argument checks shared by the CPU and CUDA glue of `sample` and `speculative_verify`, so both
// devices accept and reject the same inputs with the same message naming the argument (and the
// row). Device-kind checks (where each tensor may live) stay in the glue.
#pragma once
#include <ATen/ATen.h>

#include <cmath>

#include "common/checks.h"

namespace a1 {

// logits [rows, V] (`shape` describes the rows) of one float dtype, with a non-empty vocabulary.
inline void check_sampling_logits(const at::Tensor& logits, const char* name, const char* shape) {
  check_dim(logits, name, 2, shape);
  check_float_dtype(logits, name);
  TORCH_CHECK(logits.size(1) > 0, name, " must have a non-empty vocabulary (V > 0)");
}

// Per-row sampling parameters, validated and contiguous, on the device they were given on.
struct SamplingParamTensors {
  at::Tensor temperature, top_k, top_p, seed, offset;
};

namespace detail {

inline at::Tensor checked_param(const at::Tensor& t, const char* name, at::ScalarType dtype, int64_t batch) {
  check_dim(t, name, 1, "[B]");
  check_dtype(t, name, dtype);
  check_size(t, name, 0, batch, "the batch size B");
  return t.contiguous();
}

// The value rules, row by row on host copies: the first offending row is named.
inline void check_param_values(const SamplingParamTensors& p, int64_t batch) {
  const at::Tensor temperature = p.temperature.cpu(), top_k = p.top_k.cpu(), top_p = p.top_p.cpu();
  const float* t = temperature.data_ptr<float>();
  const int64_t* k = top_k.data_ptr<int64_t>();
  const float* tp = top_p.data_ptr<float>();
  for (int64_t b = 0; b < batch; ++b) {
    TORCH_CHECK(std::isfinite(t[b]) && t[b] >= 0, "temperature[", b, "] must be finite and >= 0, got ", t[b]);
    TORCH_CHECK(k[b] >= 0, "top_k[", b, "] must be >= 0 (0 = off), got ", k[b]);
    TORCH_CHECK(tp[b] > 0 && tp[b] <= 1, "top_p[", b, "] must be in (0, 1], got ", tp[b]);
  }
}

}  // namespace detail

// temperature float32 [B] finite and >= 0 (below kGreedyTemperature, sampling/greedy_temperature.h,
// a row is greedy), top_k int64 [B] >= 0 (0 = off), top_p float32 [B] in (0, 1], seed and offset
// int64 [B]. Parameters on a GPU are checked there and cost one host read of a flag.
inline SamplingParamTensors check_sampling_params(const at::Tensor& temperature, const at::Tensor& top_k,
                                                  const at::Tensor& top_p, const at::Tensor& seed,
                                                  const at::Tensor& offset, int64_t batch) {
  SamplingParamTensors p{detail::checked_param(temperature, "temperature", at::kFloat, batch),
                         detail::checked_param(top_k, "top_k", at::kLong, batch),
                         detail::checked_param(top_p, "top_p", at::kFloat, batch),
                         detail::checked_param(seed, "seed", at::kLong, batch),
                         detail::checked_param(offset, "offset", at::kLong, batch)};
  const bool on_host = p.temperature.device().is_cpu() && p.top_k.device().is_cpu() && p.top_p.device().is_cpu();
  if (!on_host && batch > 0) {
    const at::Tensor ok = at::isfinite(p.temperature).logical_and_(p.temperature.ge(0)).all().logical_and_(
        p.top_k.ge(0).all()).logical_and_(p.top_p.gt(0).logical_and_(p.top_p.le(1)).all());
    if (ok.item<bool>()) return p;  // else the host loop names the offending row
  }
  detail::check_param_values(p, batch);
  return p;
}

// Fails naming the first row of `logits` that is not a distribution to sample from: a NaN or a
// +inf in it, or no value above -inf. Such a row has no defined draw, greedy or not, and no
// log-prob; refusing it keeps a bad token id (the kernels have none to give) out of the caller.
// Called once a kernel has reported such a row, so the cost of finding it is paid only then.
[[noreturn]] inline void fail_on_unusable_row(const at::Tensor& logits, const char* name) {
  const at::Tensor bad = at::logical_not(at::isfinite(at::amax(logits, 1)));  // amax propagates NaN
  const at::Tensor rows = at::nonzero(bad);
  const int64_t row = rows.size(0) > 0 ? rows[0][0].item<int64_t>() : -1;
  TORCH_CHECK(false, name, "[", row, "] is not a distribution to sample from: it holds a NaN or +inf, or no ",
              "value above -inf");
}

// draft_probs [sum(k_b), V]: a float dtype, every entry finite and >= 0 (a probability).
inline void check_draft_probs(const at::Tensor& draft_probs, int64_t num_draft, int64_t vocab) {
  check_dim(draft_probs, "draft_probs", 2, "[sum(k_b), V]");
  check_float_dtype(draft_probs, "draft_probs");
  check_size(draft_probs, "draft_probs", 0, num_draft, "draft_token_ids.size(0)");
  check_size(draft_probs, "draft_probs", 1, vocab, "target_logits.size(1) (V)");
  check_finite_nonnegative(draft_probs, "draft_probs");
}

// draft_token_ids int64 [sum(k_b)] in [0, V); cu_num_draft int32/int64 [B+1] offsets into them;
// target_logits has sum(k_b + 1) rows. Returns cu_num_draft validated, int64 on the CPU.
inline at::Tensor check_verify_drafts(const at::Tensor& target_logits, const at::Tensor& draft_token_ids,
                                      const at::Tensor& cu_num_draft) {
  check_dim(draft_token_ids, "draft_token_ids", 1, "[sum(k_b)]");
  check_dtype(draft_token_ids, "draft_token_ids", at::kLong);
  const int64_t num_draft = draft_token_ids.size(0);
  at::Tensor bounds = checked_offsets(cu_num_draft, "cu_num_draft", num_draft, "draft_token_ids.size(0)");
  check_size(target_logits, "target_logits", 0, num_draft + bounds.numel() - 1,
             "sum(k_b + 1) = draft_token_ids.size(0) + B");
  check_index_range(draft_token_ids, "draft_token_ids", target_logits.size(1));
  return bounds;
}

}  // namespace a1
