// Launchers of the scoring kernels (csrc/score/*.cu). Torch-free: raw pointers, strides, dtype
// tags and a stream from the glue in score_cuda.cpp. Outputs are float32 like the CPU kernels.
#pragma once
#include <cstdint>

#include "common/cuda_dtype.h"

namespace a1::cuda {

// Segment offsets cu_seqlens[B+1] (int64, on the device) and the per-token/per-segment outputs.
struct ScoreOutputs {
  const int64_t* token_ids;   // [T], contiguous
  const int64_t* cu_seqlens;  // [B+1]; bounds are clamped to [0, T] (no host sync to validate)
  int64_t num_segments;       // B
  float* token_logprob;       // [T]
  float* step_nll;            // [B]: -mean(token_logprob) over the segment, NaN when empty
};

// token_logprob[t] = log_softmax(logits[t] / temperature)[token_ids[t]] (NaN for an id outside
// [0, V)), one CTA per row with an online max/sum-exp; then the segment means.
LaunchStatus launch_step_score(const void* logits, FloatType kind, int64_t row_stride, int64_t num_tokens,
                               int64_t vocab, float temperature, const ScoreOutputs& out, cudaStream_t stream);

// step_nll from token_logprob (shared by both scoring ops).
LaunchStatus launch_segment_nll(const ScoreOutputs& out, int64_t num_tokens, cudaStream_t stream);

// linear_step_score: logits = hidden[T, H] @ lm_head[V, H].T in vocab tiles of 64 with an online
// log-sum-exp; at most `vocab_per_launch` vocab rows are in flight, so the workspace holds
// O(T * vocab_per_launch / 64) floats and the [T, V] logits never exist.
struct LinearScoreInputs {
  const void* hidden;
  const void* lm_head;
  FloatType kind;  // hidden and lm_head share it
  int64_t hidden_stride, lm_head_stride;  // row strides (elements); the H dim is contiguous
  int64_t num_tokens, hidden_size, vocab;
  float temperature;
};

// Vocab rows per launch for a requested `chunk`: at least `chunk` (rounded to the tile) and
// enough to give the GPU a few waves of CTAs.
int64_t linear_score_vocab_per_launch(int64_t num_tokens, int64_t vocab, int64_t chunk);

// Floats of workspace launch_linear_step_score needs for that plan.
int64_t linear_score_workspace_floats(int64_t num_tokens, int64_t vocab_per_launch);

LaunchStatus launch_linear_step_score(const LinearScoreInputs& in, int64_t vocab_per_launch, float* workspace,
                                      const ScoreOutputs& out, cudaStream_t stream);

}  // namespace a1::cuda
