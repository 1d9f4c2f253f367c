// sample: one token per row; sampling_probs: the distribution each row is drawn from. Greedy rows (temperature < kGreedyTemperature) take the first
// argmax; the others run an exponential race (Gumbel-max in log space) over the temperature/top-k/
// top-p filtered logits, drawing the uniform of vocab entry v from Philox block v / 4 of (seed,
// offset, kSampleRace, position 0) exactly like a1_ext.reference.sample. No sort: the filters are
// radix-selected thresholds (row_filter.cuh).
#include "sampling/greedy_temperature.h"
#include "sampling/row_filter.cuh"
#include "sampling/sampling_cuda.h"

namespace a1::cuda {
namespace {

constexpr int kSampleThreads = 512;

template <typename T>
__global__ void __launch_bounds__(kSampleThreads)
    sample_kernel(const T* __restrict__ logits, int64_t row_stride, int64_t vocab, SamplingParams params,
                  int64_t* __restrict__ ids, float* __restrict__ logprob) {
  __shared__ RowScratch sc;
  const int64_t b = blockIdx.x;
  const T* row = logits + b * row_stride;
  const RawStats raw = raw_row_stats(row, vocab, sc);
  if (!raw.usable) {  // NaN / +inf / all -inf: the glue refuses the row (the flag is block-uniform)
    if (threadIdx.x == 0) ids[b] = -1, logprob[b] = NAN;
    return;
  }
  const float temperature = params.temperature[b];
  int64_t token = raw.argmax.index;
  if (!(temperature < kGreedyTemperature)) {
    const RowFilter filter =
        row_filter(row, vocab, raw.softmax.max, temperature, params.top_k[b], params.top_p[b], false, sc);
    const int64_t seed = params.seed[b], offset = params.offset[b];
    ArgMax best{-INFINITY, vocab};
    for_each_group4(row, vocab, [&](int64_t g, const float (&x)[4], int count) {
      const Philox4 bits = philox_draw(seed, offset, RngPurpose::kSampleRace, 0, static_cast<uint32_t>(g));
      for (int e = 0; e < count; ++e) {
        const float s = x[e] / temperature;
        if (s >= filter.cut) best = better(best, ArgMax{race_key(s, bits.v[e]), 4 * g + e});
      }
    });
    best = block_argmax(best, sc.arg_max);
    token = best.index < vocab ? best.index : raw.argmax.index;  // nothing kept (overflow): greedy
  }
  if (threadIdx.x == 0) {
    ids[b] = token;
    logprob[b] = raw_logprob(raw, to_float(row[token]));
  }
}

// probs[b, :] = the distribution sample_kernel draws row b from (see launch_sampling_probs).
template <typename T>
__global__ void __launch_bounds__(kSampleThreads)
    sampling_probs_kernel(const T* __restrict__ logits, int64_t row_stride, int64_t vocab, SamplingParams params,
                          float* __restrict__ probs, int64_t* __restrict__ status) {
  __shared__ RowScratch sc;
  const int64_t b = blockIdx.x;
  const T* row = logits + b * row_stride;
  float* out = probs + b * vocab;
  const RawStats raw = raw_row_stats(row, vocab, sc);
  if (!raw.usable) {  // the glue refuses the row (the flag is block-uniform)
    if (threadIdx.x == 0) status[b] = -1;
    return;
  }
  if (threadIdx.x == 0) status[b] = 0;
  const float temperature = params.temperature[b];
  RowFilter filter{0.0f, INFINITY, 0.0f};  // greedy: nothing passes the cut, the one-hot below
  if (!(temperature < kGreedyTemperature))
    filter = row_filter(row, vocab, raw.softmax.max, temperature, params.top_k[b], params.top_p[b], true, sc);
  if (filter.sum > 0.0f) {
    for_each_element(row, vocab, [&](int64_t v, float x) {
      const float s = x / temperature;
      out[v] = s >= filter.cut ? expf(s - filter.scaled_max) / filter.sum : 0.0f;
    });
  } else {  // greedy, or nothing kept (scaled logits overflowed): sample takes the first argmax
    for (int64_t v = threadIdx.x; v < vocab; v += blockDim.x) out[v] = v == raw.argmax.index ? 1.0f : 0.0f;
  }
}

}  // namespace

LaunchStatus launch_sampling_probs(const void* logits, FloatType kind, int64_t row_stride, int64_t rows, int64_t vocab,
                                   const SamplingParams& params, float* probs, int64_t* status, cudaStream_t stream) {
  if (rows == 0) return 0;
  A1_DISPATCH_FLOAT(kind, {
    sampling_probs_kernel<scalar_t><<<static_cast<unsigned>(rows), kSampleThreads, 0, stream>>>(
        static_cast<const scalar_t*>(logits), row_stride, vocab, params, probs, status);
  });
  return static_cast<LaunchStatus>(cudaGetLastError());
}

LaunchStatus launch_sample(const void* logits, FloatType kind, int64_t row_stride, int64_t rows, int64_t vocab,
                           const SamplingParams& params, int64_t* ids, float* logprob, cudaStream_t stream) {
  if (rows == 0) return 0;
  A1_DISPATCH_FLOAT(kind, {
    sample_kernel<scalar_t><<<static_cast<unsigned>(rows), kSampleThreads, 0, stream>>>(
        static_cast<const scalar_t*>(logits), row_stride, vocab, params, ids, logprob);
  });
  return static_cast<LaunchStatus>(cudaGetLastError());
}

}  // namespace a1::cuda
