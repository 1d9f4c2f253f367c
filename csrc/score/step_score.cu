// step_score: per-token log-probabilities of the given ids under softmax(logits / T) and each
// segment's mean NLL. One CTA per row, one pass: online max / sum-exp with 16-byte loads and the
// token's logit gathered on the side, so no [T, V] temporary exists.
#include "common/cuda_row.cuh"
#include "score/score_cuda.h"

namespace a1::cuda {
namespace {

constexpr int kRowThreads = 512;

template <typename T>
__global__ void __launch_bounds__(kRowThreads)
    step_score_row_kernel(const T* __restrict__ logits, int64_t row_stride, int64_t vocab, float temperature,
                          const int64_t* __restrict__ token_ids, float* __restrict__ token_logprob) {
  __shared__ MaxSum scratch[32];
  const int64_t t = blockIdx.x;
  const T* row = logits + t * row_stride;
  MaxSum acc{-INFINITY, 0.0f};
  // Divide (not multiply by 1/T) so the scaled logits round exactly like the twin's.
  for_each_element(row, vocab, [&](int64_t, float x) { online_add(acc, x / temperature); });
  acc = block_merge(acc, scratch);
  if (threadIdx.x == 0) {
    const int64_t token = token_ids[t];
    float result = NAN;  // an id outside the vocabulary has no probability
    // (x - max) - log(sum), never x - (max + log(sum)): that sum rounds to the spacing of max.
    if (token >= 0 && token < vocab) result = (to_float(row[token]) / temperature - acc.max) - logf(acc.sum);
    token_logprob[t] = result;
  }
}

// One warp per segment: -mean of its token log-probs, accumulated in double like the twin.
__global__ void segment_nll_kernel(const float* __restrict__ token_logprob, const int64_t* __restrict__ cu_seqlens,
                                   int64_t num_segments, int64_t num_tokens, float* __restrict__ step_nll) {
  const int lane = threadIdx.x & 31;
  const int64_t b = static_cast<int64_t>(blockIdx.x) * (blockDim.x / 32) + (threadIdx.x >> 5);
  if (b >= num_segments) return;
  const int64_t lo = min(max(cu_seqlens[b], int64_t{0}), num_tokens);
  const int64_t hi = min(max(cu_seqlens[b + 1], lo), num_tokens);
  double sum = 0.0;
  for (int64_t i = lo + lane; i < hi; i += 32) sum += token_logprob[i];
  sum = warp_sum(sum);
  if (lane == 0) step_nll[b] = hi > lo ? static_cast<float>(-sum / static_cast<double>(hi - lo)) : NAN;
}

}  // namespace

LaunchStatus launch_segment_nll(const ScoreOutputs& out, int64_t num_tokens, cudaStream_t stream) {
  if (out.num_segments == 0) return 0;
  constexpr int kWarpsPerBlock = 8;
  const unsigned blocks = static_cast<unsigned>((out.num_segments + kWarpsPerBlock - 1) / kWarpsPerBlock);
  segment_nll_kernel<<<blocks, kWarpsPerBlock * 32, 0, stream>>>(out.token_logprob, out.cu_seqlens,
                                                                 out.num_segments, num_tokens, out.step_nll);
  return static_cast<LaunchStatus>(cudaGetLastError());
}

LaunchStatus launch_step_score(const void* logits, FloatType kind, int64_t row_stride, int64_t num_tokens,
                               int64_t vocab, float temperature, const ScoreOutputs& out, cudaStream_t stream) {
  if (num_tokens > 0) {
    A1_DISPATCH_FLOAT(kind, {
      step_score_row_kernel<scalar_t><<<static_cast<unsigned>(num_tokens), kRowThreads, 0, stream>>>(
          static_cast<const scalar_t*>(logits), row_stride, vocab, temperature, out.token_ids, out.token_logprob);
    });
    const cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) return static_cast<LaunchStatus>(err);
  }
  return launch_segment_nll(out, num_tokens, stream);
}

}  // namespace a1::cuda
