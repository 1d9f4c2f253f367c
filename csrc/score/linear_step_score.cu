// linear_step_score: step_score of hidden @ lm_head.T without the [T, V] logits. The vocab is
// walked in launches of `vocab_per_launch` rows; each launch writes per-(tile, row) partial
// (max, sum-exp) pairs (linear_score_tiles.cuh), and a merge kernel folds them into a running
// per-row pair, so global memory holds O(T * vocab_per_launch / 64) floats at any time.
#include "score/linear_score_tiles.cuh"
#include "score/score_cuda.h"

namespace a1::cuda {
namespace {

// Folds this launch's tiles into the running pair of every row; the last launch also writes
// token_logprob = (token_logit - max) - log(sum) (NaN stays NaN for an id outside the vocabulary).
__global__ void merge_partials_kernel(const MaxSum* __restrict__ partial, int64_t num_tiles, int64_t num_tokens,
                                      MaxSum* __restrict__ running, const float* __restrict__ token_logit,
                                      bool first, bool last, float* __restrict__ token_logprob) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= num_tokens) return;
  MaxSum acc = first ? MaxSum{-INFINITY, 0.0f} : running[t];
  for (int64_t tile = 0; tile < num_tiles; ++tile) acc = merge(acc, partial[tile * num_tokens + t]);
  if (last) {
    token_logprob[t] = (token_logit[t] - acc.max) - logf(acc.sum);  // exact at large scaled logits
  } else {
    running[t] = acc;
  }
}

template <typename T>
void launch_tiles(const LinearTileArgs& args, dim3 grid, cudaStream_t stream) {
  if constexpr (sizeof(T) == 2) {
    linear_score_wmma_kernel<T><<<grid, kWmmaThreads, 0, stream>>>(args);
  } else {
    linear_score_fma_kernel<T><<<grid, kFmaThreads, 0, stream>>>(args);
  }
}

int64_t round_up(int64_t x, int64_t multiple) { return (x + multiple - 1) / multiple * multiple; }

}  // namespace

int64_t linear_score_vocab_per_launch(int64_t num_tokens, int64_t vocab, int64_t chunk) {
  const int64_t token_tiles = (num_tokens + kTileM - 1) / kTileM;
  // At least four waves of CTAs per launch: a small `chunk` (the CPU kernel's memory knob) would
  // otherwise leave most SMs idle; the workspace stays far below the [T, V] logits either way.
  const int64_t min_tiles = (4 * static_cast<int64_t>(multiprocessor_count()) + token_tiles - 1) / max(token_tiles, int64_t{1});
  const int64_t per_launch = max(round_up(max(chunk, int64_t{1}), kTileN), min_tiles * kTileN);
  return min(per_launch, round_up(max(vocab, int64_t{1}), kTileN));
}

int64_t linear_score_workspace_floats(int64_t num_tokens, int64_t vocab_per_launch) {
  // partials (2 floats each) | running pairs (2 floats) | token logits (1 float)
  return num_tokens * (2 * (vocab_per_launch / kTileN) + 3);
}

LaunchStatus launch_linear_step_score(const LinearScoreInputs& in, int64_t vocab_per_launch, float* workspace,
                                      const ScoreOutputs& out, cudaStream_t stream) {
  const int64_t T = in.num_tokens;
  if (T > 0) {
    MaxSum* partial = reinterpret_cast<MaxSum*>(workspace);
    MaxSum* running = partial + T * (vocab_per_launch / kTileN);
    float* token_logit = reinterpret_cast<float*>(running + T);
    // All-ones bytes are a NaN: the token logit of an out-of-vocabulary id stays NaN.
    cudaError_t err = cudaMemsetAsync(token_logit, 0xFF, sizeof(float) * T, stream);
    if (err != cudaSuccess) return static_cast<LaunchStatus>(err);
    const size_t elem = in.kind == FloatType::kFloat32 ? 4 : 2;
    const bool vec_ok = elem == 2 && in.hidden_size % 8 == 0 && aligned16(in.hidden) && aligned16(in.lm_head) &&
                        (in.hidden_stride * elem) % 16 == 0 && (in.lm_head_stride * elem) % 16 == 0;
    for (int64_t begin = 0; begin < in.vocab; begin += vocab_per_launch) {
      const int64_t end = min(in.vocab, begin + vocab_per_launch);
      const int64_t tiles = (end - begin + kTileN - 1) / kTileN;
      LinearTileArgs args{in.hidden, in.lm_head, in.hidden_stride, in.lm_head_stride, T, in.hidden_size,
                          in.vocab, in.temperature, begin, end, out.token_ids, partial, token_logit, vec_ok};
      const dim3 grid(static_cast<unsigned>((T + kTileM - 1) / kTileM), static_cast<unsigned>(tiles));
      A1_DISPATCH_FLOAT(in.kind, launch_tiles<scalar_t>(args, grid, stream));
      const bool last = end == in.vocab;
      merge_partials_kernel<<<static_cast<unsigned>((T + 255) / 256), 256, 0, stream>>>(
          partial, tiles, T, running, token_logit, begin == 0, last, out.token_logprob);
      err = cudaGetLastError();
      if (err != cudaSuccess) return static_cast<LaunchStatus>(err);
    }
  }
  return launch_segment_nll(out, T, stream);
}

}  // namespace a1::cuda
