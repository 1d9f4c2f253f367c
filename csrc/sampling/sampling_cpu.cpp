// CPU glue of `sample` and `speculative_verify`: argument checks, dtype conversion of the rows
// to float, and at::parallel_for over rows / requests. The math is in sampling_kernels.h.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <optional>

#include "common/checks.h"
#include "sampling/sampling_kernels.h"

namespace a1 {
namespace {

// Per-row sampling parameters: temperature/top_p float32, top_k/seed/offset int64, all [B].
struct SamplingParamTensors {
  at::Tensor temperature, top_k, top_p, seed, offset;

  RowSampling row(int64_t b) const {
    return {temperature.data_ptr<float>()[b], top_k.data_ptr<int64_t>()[b], top_p.data_ptr<float>()[b],
            seed.data_ptr<int64_t>()[b], offset.data_ptr<int64_t>()[b]};
  }
};

at::Tensor checked_param(const at::Tensor& t, const char* name, at::ScalarType dtype, int64_t batch,
                         const at::Tensor& ref) {
  check_dim(t, name, 1, "[B]");
  check_dtype(t, name, dtype);
  check_size(t, name, 0, batch, "the batch size B");
  check_same_device(t, name, ref, "the logits");
  return t.contiguous();
}

SamplingParamTensors check_sampling_params(const at::Tensor& temperature, const at::Tensor& top_k,
                                           const at::Tensor& top_p, const at::Tensor& seed, const at::Tensor& offset,
                                           int64_t batch, const at::Tensor& ref) {
  SamplingParamTensors params{checked_param(temperature, "temperature", at::kFloat, batch, ref),
                              checked_param(top_k, "top_k", at::kLong, batch, ref),
                              checked_param(top_p, "top_p", at::kFloat, batch, ref),
                              checked_param(seed, "seed", at::kLong, batch, ref),
                              checked_param(offset, "offset", at::kLong, batch, ref)};
  for (int64_t b = 0; b < batch; ++b) {
    const RowSampling row = params.row(b);
    TORCH_CHECK(std::isfinite(row.temperature) && row.temperature >= 0, "temperature[", b,
                "] must be finite and >= 0, got ", row.temperature);
    TORCH_CHECK(row.top_k >= 0, "top_k[", b, "] must be >= 0 (0 = off), got ", row.top_k);
    TORCH_CHECK(row.top_p > 0 && row.top_p <= 1, "top_p[", b, "] must be in (0, 1], got ", row.top_p);
  }
  return params;
}

void check_token_range(const at::Tensor& ids, const char* name, int64_t vocab) {
  if (ids.numel() == 0) return;
  const auto [min_id, max_id] = at::aminmax(ids);
  TORCH_CHECK(min_id.item<int64_t>() >= 0 && max_id.item<int64_t>() < vocab, name, " must be in [0, ", vocab,
              "), got values in [", min_id.item<int64_t>(), ", ", max_id.item<int64_t>(), "]");
}

std::tuple<at::Tensor, at::Tensor> sample_cpu(const at::Tensor& logits, const at::Tensor& temperature,
                                              const at::Tensor& top_k, const at::Tensor& top_p, const at::Tensor& seed,
                                              const at::Tensor& offset) {
  check_dim(logits, "logits", 2, "[B, V]");
  check_float_dtype(logits, "logits");
  const int64_t batch = logits.size(0), vocab = logits.size(1);
  TORCH_CHECK(vocab > 0, "logits must have V > 0 columns");
  const SamplingParamTensors params = check_sampling_params(temperature, top_k, top_p, seed, offset, batch, logits);
  const at::Tensor rows = logits.to(at::kFloat).contiguous();
  at::Tensor token_ids = at::empty({batch}, logits.options().dtype(at::kLong));
  at::Tensor logprob = at::empty({batch}, logits.options().dtype(at::kFloat));
  const float* base = rows.data_ptr<float>();
  int64_t* ids = token_ids.data_ptr<int64_t>();
  float* out_logprob = logprob.data_ptr<float>();
  at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
    std::optional<SamplingScratch> scratch;  // greedy rows need none: skip zeroing 2 x V floats
    for (int64_t b = begin; b < end; ++b) {
      const float* row = base + b * vocab;
      const RowSampling row_params = params.row(b);
      if (row_params.temperature == 0.0f) {
        const GreedyRow greedy = greedy_row(row, vocab);
        ids[b] = greedy.token;
        out_logprob[b] = row[ids[b]] - greedy.stats.logsumexp();
        continue;
      }
      if (!scratch) scratch.emplace(vocab);
      filter_row(row, vocab, row_params, *scratch);
      ids[b] = race_argmax(scratch->filtered.data(), vocab, row_params.seed, row_params.offset,
                           RngPurpose::kSampleRace, 0);
      out_logprob[b] = row[ids[b]] - row_softmax_stats(row, vocab, 1.0f).logsumexp();
    }
  });
  return {token_ids, logprob};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> speculative_verify_cpu(
    const at::Tensor& target_logits, const at::Tensor& draft_token_ids, const at::Tensor& cu_num_draft,
    const std::optional<at::Tensor>& draft_probs, const at::Tensor& temperature, const at::Tensor& top_k,
    const at::Tensor& top_p, const at::Tensor& seed, const at::Tensor& offset) {
  check_dim(target_logits, "target_logits", 2, "[sum(k_b + 1), V]");
  check_float_dtype(target_logits, "target_logits");
  check_dim(draft_token_ids, "draft_token_ids", 1, "[sum(k_b)]");
  check_dtype(draft_token_ids, "draft_token_ids", at::kLong);
  const int64_t total_draft = draft_token_ids.size(0), vocab = target_logits.size(1);
  const at::Tensor bounds = checked_offsets(cu_num_draft, "cu_num_draft", total_draft, "draft_token_ids.size(0)");
  const int64_t batch = bounds.numel() - 1;
  check_size(target_logits, "target_logits", 0, total_draft + batch, "sum(k_b + 1)");
  const SamplingParamTensors params =
      check_sampling_params(temperature, top_k, top_p, seed, offset, batch, target_logits);
  const at::Tensor drafts = draft_token_ids.contiguous();
  check_token_range(drafts, "draft_token_ids", vocab);
  at::Tensor q_rows;
  if (draft_probs.has_value()) {
    check_dim(*draft_probs, "draft_probs", 2, "[sum(k_b), V]");
    check_float_dtype(*draft_probs, "draft_probs");
    check_size(*draft_probs, "draft_probs", 0, total_draft, "draft_token_ids.size(0)");
    check_size(*draft_probs, "draft_probs", 1, vocab, "target_logits.size(1)");
    q_rows = draft_probs->to(at::kFloat).contiguous();
  }
  const int64_t* offsets = bounds.data_ptr<int64_t>();
  int64_t max_draft = 0;
  for (int64_t b = 0; b < batch; ++b) max_draft = std::max(max_draft, offsets[b + 1] - offsets[b]);

  const at::Tensor rows = target_logits.to(at::kFloat).contiguous();
  at::Tensor out_ids = at::full({batch, max_draft + 1}, -1, drafts.options());
  at::Tensor num_accepted = at::zeros({batch}, drafts.options());
  at::Tensor target_logprob = at::empty({total_draft}, rows.options());
  const float* row_base = rows.data_ptr<float>();
  const float* q_base = q_rows.defined() ? q_rows.data_ptr<float>() : nullptr;
  const int64_t* draft_base = drafts.data_ptr<int64_t>();
  int64_t* out_base = out_ids.data_ptr<int64_t>();
  int64_t* accepted = num_accepted.data_ptr<int64_t>();
  float* logprob = target_logprob.data_ptr<float>();
  at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
    SamplingScratch scratch(vocab);
    for (int64_t b = begin; b < end; ++b) {
      const int64_t first = offsets[b], num_draft = offsets[b + 1] - offsets[b];
      const float* target_rows = row_base + (first + b) * vocab;
      for (int64_t i = 0; i < num_draft; ++i) {
        const float* row = target_rows + i * vocab;
        logprob[first + i] = row[draft_base[first + i]] - row_softmax_stats(row, vocab, 1.0f).logsumexp();
      }
      accepted[b] = verify_request(target_rows, vocab, draft_base + first, num_draft,
                                   q_base != nullptr ? q_base + first * vocab : nullptr, params.row(b), scratch,
                                   out_base + b * (max_draft + 1));
    }
  });
  return {out_ids, num_accepted, target_logprob};
}

}  // namespace

TORCH_LIBRARY_IMPL(a1, CPU, m) {
  m.impl("sample", &sample_cpu);
  m.impl("speculative_verify", &speculative_verify_cpu);
}

}  // namespace a1
