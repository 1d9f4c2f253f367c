// CPU glue of `sample`, `sampling_probs` and `speculative_verify`: argument checks, dtype conversion of the rows
// to float, and at::parallel_for over rows / requests. The math is in sampling_kernels.h.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <atomic>
#include <cmath>
#include <optional>
#include <utility>

#include "sampling/sampling_checks.h"
#include "sampling/sampling_kernels.h"

namespace a1 {
namespace {

// The shared checks (sampling/sampling_checks.h), and the CPU kernel's own: every parameter on the CPU.
SamplingParamTensors cpu_sampling_params(const at::Tensor& temperature, const at::Tensor& top_k,
                                         const at::Tensor& top_p, const at::Tensor& seed, const at::Tensor& offset,
                                         int64_t batch, const at::Tensor& ref, const char* ref_name) {
  TORCH_CHECK(ref.device().is_cpu(), ref_name, " must be a CPU tensor for the CPU kernel, got ", ref.device());
  for (const auto& [t, name] : {std::pair{&temperature, "temperature"}, {&top_k, "top_k"}, {&top_p, "top_p"},
                                {&seed, "seed"}, {&offset, "offset"}})
    check_same_device(*t, name, ref, ref_name);
  return check_sampling_params(temperature, top_k, top_p, seed, offset, batch);
}

RowSampling row_params(const SamplingParamTensors& p, int64_t b) {
  return {p.temperature.data_ptr<float>()[b], p.top_k.data_ptr<int64_t>()[b], p.top_p.data_ptr<float>()[b],
          p.seed.data_ptr<int64_t>()[b], p.offset.data_ptr<int64_t>()[b]};
}

std::tuple<at::Tensor, at::Tensor> sample_cpu(const at::Tensor& logits, const at::Tensor& temperature,
                                              const at::Tensor& top_k, const at::Tensor& top_p, const at::Tensor& seed,
                                              const at::Tensor& offset) {
  check_sampling_logits(logits, "logits", "[B, V]");
  const int64_t batch = logits.size(0), vocab = logits.size(1);
  const SamplingParamTensors params =
      cpu_sampling_params(temperature, top_k, top_p, seed, offset, batch, logits, "logits");
  const at::Tensor rows = logits.to(at::kFloat).contiguous();
  at::Tensor token_ids = at::empty({batch}, logits.options().dtype(at::kLong));
  at::Tensor logprob = at::empty({batch}, logits.options().dtype(at::kFloat));
  const float* base = rows.data_ptr<float>();
  int64_t* ids = token_ids.data_ptr<int64_t>();
  float* out_logprob = logprob.data_ptr<float>();
  std::atomic<bool> unusable_row{false};
  at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
    std::optional<SamplingScratch> scratch;  // greedy rows need none: skip zeroing 2 x V floats
    for (int64_t b = begin; b < end; ++b) {
      const float* row = base + b * vocab;
      if (!row_has_finite_max(row, vocab)) {  // refused below, after the workers are done
        unusable_row = true;
        continue;
      }
      const RowSampling row_p = row_params(params, b);
      if (row_p.temperature < kGreedyTemperature) {
        const GreedyRow greedy = greedy_row(row, vocab);
        ids[b] = greedy.token;
        out_logprob[b] = greedy.stats.logprob(row[ids[b]]);
        continue;
      }
      if (!scratch) scratch.emplace(vocab);
      filter_row(row, vocab, row_p, *scratch);
      ids[b] = race_argmax(scratch->filtered.data(), vocab, row_p.seed, row_p.offset, RngPurpose::kSampleRace, 0);
      if (ids[b] < 0) ids[b] = first_argmax(row, vocab);  // nothing kept (scaled logits overflowed): greedy
      out_logprob[b] = row_softmax_stats(row, vocab, 1.0f).logprob(row[ids[b]]);
    }
  });
  if (unusable_row) fail_on_unusable_row(rows, "logits");
  return {token_ids, logprob};
}

at::Tensor sampling_probs_cpu(const at::Tensor& logits, const at::Tensor& temperature, const at::Tensor& top_k,
                              const at::Tensor& top_p) {
  check_sampling_logits(logits, "logits", "[B, V]");
  const int64_t batch = logits.size(0), vocab = logits.size(1);
  const at::Tensor no_seed = at::zeros({batch}, temperature.options().dtype(at::kLong));  // the filter draws nothing
  const SamplingParamTensors params =
      cpu_sampling_params(temperature, top_k, top_p, no_seed, no_seed, batch, logits, "logits");
  const at::Tensor rows = logits.to(at::kFloat).contiguous();
  at::Tensor probs = at::zeros({batch, vocab}, logits.options().dtype(at::kFloat));
  const float* base = rows.data_ptr<float>();
  float* out = probs.data_ptr<float>();
  std::atomic<bool> unusable_row{false};
  at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
    std::optional<SamplingScratch> scratch;
    for (int64_t b = begin; b < end; ++b) {
      const float* row = base + b * vocab;
      if (!row_has_finite_max(row, vocab)) {  // refused below, as sample refuses it
        unusable_row = true;
        continue;
      }
      const RowSampling row_p = row_params(params, b);
      if (row_p.temperature < kGreedyTemperature) {
        out[b * vocab + first_argmax(row, vocab)] = 1.0f;
        continue;
      }
      if (!scratch) scratch.emplace(vocab);
      sampling_probs_row(row, vocab, row_p, *scratch, out + b * vocab);
    }
  });
  if (unusable_row) fail_on_unusable_row(rows, "logits");
  return probs;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> speculative_verify_cpu(
    const at::Tensor& target_logits, const at::Tensor& draft_token_ids, const at::Tensor& cu_num_draft,
    const std::optional<at::Tensor>& draft_probs, const at::Tensor& temperature, const at::Tensor& top_k,
    const at::Tensor& top_p, const at::Tensor& seed, const at::Tensor& offset) {
  check_sampling_logits(target_logits, "target_logits", "[sum(k_b + 1), V]");
  TORCH_CHECK(target_logits.device().is_cpu(), "target_logits must be a CPU tensor for the CPU kernel, got ",
              target_logits.device());
  check_same_device(draft_token_ids, "draft_token_ids", target_logits, "target_logits");
  const at::Tensor bounds = check_verify_drafts(target_logits, draft_token_ids, cu_num_draft);
  const int64_t total_draft = draft_token_ids.size(0), vocab = target_logits.size(1);
  const int64_t batch = bounds.numel() - 1;
  const SamplingParamTensors params =
      cpu_sampling_params(temperature, top_k, top_p, seed, offset, batch, target_logits, "target_logits");
  const at::Tensor drafts = draft_token_ids.contiguous();
  at::Tensor q_rows;
  if (draft_probs.has_value()) {
    check_same_device(*draft_probs, "draft_probs", target_logits, "target_logits");
    check_draft_probs(*draft_probs, total_draft, vocab);
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
  std::atomic<bool> unusable_row{false};
  at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
    SamplingScratch scratch(vocab);
    for (int64_t b = begin; b < end; ++b) {
      const int64_t first = offsets[b], num_draft = offsets[b + 1] - offsets[b];
      const float* target_rows = row_base + (first + b) * vocab;
      // A draft row's softmax statistics tell whether it is usable (a NaN, +inf or no value above
      // -inf leaves a non-finite max or sum): no extra pass over it; the bonus row gets its own.
      bool usable = row_has_finite_max(target_rows + num_draft * vocab, vocab);
      for (int64_t i = 0; i < num_draft && usable; ++i) {
        const float* row = target_rows + i * vocab;
        const SoftmaxStats stats = row_softmax_stats(row, vocab, 1.0f);
        usable = std::isfinite(stats.max) && std::isfinite(stats.sum);
        logprob[first + i] = stats.logprob(row[draft_base[first + i]]);
      }
      if (!usable) {  // refused below, after the workers are done
        unusable_row = true;
        continue;
      }
      accepted[b] = verify_request(target_rows, vocab, draft_base + first, num_draft,
                                   q_base != nullptr ? q_base + first * vocab : nullptr, row_params(params, b), scratch,
                                   out_base + b * (max_draft + 1));
    }
  });
  if (unusable_row) fail_on_unusable_row(rows, "target_logits");
  return {out_ids, num_accepted, target_logprob};
}

}  // namespace

TORCH_LIBRARY_IMPL(a1, CPU, m) {
  m.impl("sample", &sample_cpu);
  m.impl("sampling_probs", &sampling_probs_cpu);
  m.impl("speculative_verify", &speculative_verify_cpu);
}

}  // namespace a1
