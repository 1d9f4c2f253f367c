// Launchers of the random sampling kernels (csrc/sampling/*.cu). Torch-free: raw pointers, dtype
// tags and a stream from the glue in sampling_cuda.cpp. Every uniform comes from the Philox stream
// layout of common/philox.h, so CUDA, CPU and the twin draw the same tokens.
#pragma once
#include <cstdint>

#include "common/cuda_dtype.h"

namespace a1::cuda {

// Per-row (sample) or per-request (verify) parameters, device arrays of B entries.
struct SamplingParams {
  const float* temperature;  // < kGreedyTemperature (sampling/greedy_temperature.h) = greedy
  const int64_t* top_k;      // <= 0 or >= V = off
  const float* top_p;        // >= 1 = off
  const int64_t* seed;
  const int64_t* offset;
};

// sample: ids[b] = greedy argmax or the exponential race over the filtered row b
// (purpose kSampleRace, position 0); logprob[b] = log_softmax(logits[b])[ids[b]] (raw logits).
// A row with a NaN or +inf or nothing above -inf gets ids[b] = -1 (the glue refuses the call).
LaunchStatus launch_sample(const void* logits, FloatType kind, int64_t row_stride, int64_t rows, int64_t vocab,
                           const SamplingParams& params, int64_t* ids, float* logprob, cudaStream_t stream);

// sampling_probs: probs[b, :] (float, [rows, vocab] contiguous) = the distribution sample draws
// row b from: softmax of the filtered scaled row, one-hot on the first argmax for greedy rows (and
// rows the filter leaves empty). status[b] = -1 for a row that is not a distribution, else 0.
// params.seed / params.offset are not read.
LaunchStatus launch_sampling_probs(const void* logits, FloatType kind, int64_t row_stride, int64_t rows, int64_t vocab,
                                   const SamplingParams& params, float* probs, int64_t* status, cudaStream_t stream);

struct VerifyInputs {
  const void* target_logits;  // [R = sum(k_b + 1), V]
  FloatType target_kind;
  int64_t target_stride;
  const int64_t* draft_token_ids;  // [sum k_b]
  const int64_t* cu_num_draft;     // [B + 1], on the device, validated by the glue
  const void* draft_probs;         // [sum k_b, V] or nullptr (deterministic draft: q = one-hot)
  FloatType draft_kind;
  int64_t draft_stride;
  int64_t batch, rows, vocab;
};

struct VerifyOutputs {
  int64_t* out_ids;        // [B, width], width = max_k + 1; unused entries -1
  int64_t width;
  int64_t* num_accepted;   // [B]
  float* target_logprob;   // [sum k_b]
};

// Bytes of device workspace the verify launch needs for `rows` target rows.
int64_t verify_workspace_bytes(int64_t rows);

// Two kernels: one CTA per target row computes the row's raw log-softmax, argmax, filter and the
// draft token's target probability; then one CTA per request runs the accept chain (Philox
// kVerifyAccept, float64 uniforms) and the recovery / bonus race (kVerifyRace at the position).
// A request with a target row holding a NaN or +inf or nothing above -inf gets num_accepted -1.
LaunchStatus launch_speculative_verify(const VerifyInputs& in, const SamplingParams& params, void* workspace,
                                       const VerifyOutputs& out, cudaStream_t stream);

}  // namespace a1::cuda
