// CPU step scoring: per-token log-probs and per-segment mean NLL, either from logits (one pass
// per row, no [T, V] temporaries) or straight from hidden states and the LM head, a vocab chunk
// at a time so [T, V] logits never exist.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <limits>
#include <vector>

#include "common/softmax.h"
#include "linear/linear_cpu.h"
#include "quant/quant_cpu.h"
#include "score/score_checks.h"

namespace a1 {
namespace {

void check_cpu_targets(const at::Tensor& token_ids, const at::Tensor& like, const char* like_name) {
  TORCH_CHECK(like.device().is_cpu(), like_name, " must be a CPU tensor for the CPU kernel, got ", like.device());
  check_same_device(token_ids, "token_ids", like, like_name);
}

// step_nll[b] = -mean(token_logprob[segment b]); NaN for an empty segment so that a step with no
// tokens can never pass as a perfect score.
at::Tensor segment_mean_nll(const at::Tensor& token_logprob, const at::Tensor& offsets) {
  const int64_t batch = offsets.numel() - 1;
  at::Tensor step_nll = at::empty({batch}, token_logprob.options());
  const float* logprob = token_logprob.data_ptr<float>();
  const int64_t* bounds = offsets.data_ptr<int64_t>();
  float* out = step_nll.data_ptr<float>();
  for (int64_t b = 0; b < batch; ++b) {
    double total = 0.0;
    for (int64_t t = bounds[b]; t < bounds[b + 1]; ++t) total += logprob[t];
    const int64_t len = bounds[b + 1] - bounds[b];
    out[b] = len > 0 ? static_cast<float>(-total / len) : std::numeric_limits<float>::quiet_NaN();
  }
  return step_nll;
}

std::tuple<at::Tensor, at::Tensor> step_score_cpu(const at::Tensor& logits, const at::Tensor& token_ids,
                                                  const at::Tensor& cu_seqlens, double temperature) {
  check_score_logits(logits);
  check_cpu_targets(token_ids, logits, "logits");
  const int64_t num_tokens = logits.size(0), vocab = logits.size(1);
  const at::Tensor offsets = check_score_targets(token_ids, cu_seqlens, num_tokens, vocab, temperature);
  const at::Tensor ids_tensor = token_ids.contiguous();
  const at::Tensor rows = logits.stride(1) == 1 ? logits : logits.contiguous();
  at::Tensor token_logprob = at::empty({num_tokens}, logits.options().dtype(at::kFloat));
  const float temp = static_cast<float>(temperature);
  const int64_t* ids = ids_tensor.data_ptr<int64_t>();
  float* out = token_logprob.data_ptr<float>();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, rows.scalar_type(), "step_score_cpu", [&] {
    const scalar_t* base = rows.data_ptr<scalar_t>();
    const int64_t row_stride = rows.stride(0);
    at::parallel_for(0, num_tokens, 1, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) {
        const scalar_t* row = base + t * row_stride;
        const SoftmaxStats stats = row_softmax_stats(row, vocab, temp);
        out[t] = stats.logprob(static_cast<float>(row[ids[t]]) / temp);
      }
    });
  });
  return {token_logprob, segment_mean_nll(token_logprob, offsets)};
}

std::tuple<at::Tensor, at::Tensor> linear_step_score_cpu(const at::Tensor& hidden, const at::Tensor& lm_head,
                                                         const at::Tensor& token_ids, const at::Tensor& cu_seqlens,
                                                         double temperature, int64_t chunk) {
  check_linear_score_inputs(hidden, lm_head, chunk);
  check_cpu_targets(token_ids, hidden, "hidden");
  const int64_t num_tokens = hidden.size(0), vocab = linear_out_features(lm_head);
  // Panels are cut into tiles of whole panels.
  const bool quantized = is_quantized_weight(lm_head);
  const int64_t tile_rows =
      is_weight_panels(lm_head) ? (chunk + kLinearPanelWidth - 1) / kLinearPanelWidth * kLinearPanelWidth : chunk;
  const at::Tensor offsets = check_score_targets(token_ids, cu_seqlens, num_tokens, vocab, temperature);
  const at::Tensor ids_tensor = token_ids.contiguous();
  const float temp = static_cast<float>(temperature);
  const at::Tensor hidden_f32 = hidden.to(at::kFloat).contiguous();
  std::vector<SoftmaxStats> stats(num_tokens);
  std::vector<float> token_logit(num_tokens, 0.0f);
  const int64_t* ids = ids_tensor.data_ptr<int64_t>();
  // Memory: one [T, chunk] logits tile and one [chunk, H] fp32 weight tile, whatever V is.
  for (int64_t start = 0; start < vocab; start += tile_rows) {
    const int64_t len = std::min(tile_rows, vocab - start);
    // a1's linear: a scored step of a few tokens streams the LM head once instead of through BLAS;
    // GGUF blocks are multiplied as blocks (quant_linear), bf16/fp16 rows as they are, never widened.
    const at::Tensor tile = quantized ? quant_linear_cpu(hidden_f32, lm_head.narrow(0, start, len), std::nullopt)
                                      : linear_cpu_float_out(hidden_f32, linear_weight_rows(lm_head, start, len));
    const float* tile_data = tile.data_ptr<float>();
    at::parallel_for(0, num_tokens, 16, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) {
        const float* row = tile_data + t * len;
        stats[t].add(row, len, temp);
        if (ids[t] >= start && ids[t] < start + len) token_logit[t] = row[ids[t] - start];
      }
    });
  }
  at::Tensor token_logprob = at::empty({num_tokens}, hidden.options().dtype(at::kFloat));
  float* out = token_logprob.data_ptr<float>();
  for (int64_t t = 0; t < num_tokens; ++t) out[t] = stats[t].logprob(token_logit[t] / temp);
  return {token_logprob, segment_mean_nll(token_logprob, offsets)};
}

}  // namespace

TORCH_LIBRARY_IMPL(a1, CPU, m) {
  m.impl("step_score", &step_score_cpu);
  m.impl("linear_step_score", &linear_step_score_cpu);
}

}  // namespace a1
