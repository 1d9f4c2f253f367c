// The decode path of a1::quant_linear on CUDA: out[T, N] = x[T, K] @ W^T (+ bias) for a few token
// rows (T <= kQuantGemvMaxTokens), W in GGUF blocks never widened in memory.
//
// L lanes of a warp (a power of two, at most 32, about the number of 32-weight groups of a row)
// own one weight row; a warp holds 32 / L rows. Each lane walks the row's groups L apart, decodes
// a group into 32 registers (quant_group_decode.cuh) and multiplies it into every token row, so
// the weights are read once per call whatever T is; the L partial sums of a row then meet by
// xor-shuffles within the L-lane group. Neighbouring lanes read neighbouring groups: a warp's loads
// cover a contiguous run of the row. The token rows (T x K floats) are re-read by every warp and
// stay in L1/L2. Sums accumulate in fp32 with explicit FMAs (the file compiles with -fmad=false).
#include "common/cuda_common.cuh"
#include "quant/quant_cuda.h"
#include "quant/quant_group_decode.cuh"

namespace a1::cuda {
namespace {

constexpr int kGemvThreads = 128;

// TT: token rows held in registers, a power of two >= tokens (the extra ones are skipped).
template <quant::Format F, int TT>
__global__ void __launch_bounds__(kGemvThreads)
    quant_gemv_kernel(const uint8_t* __restrict__ weight, int64_t row_bytes, int64_t num_rows, int64_t groups,
                      const float* __restrict__ x, int64_t x_stride, int tokens, const float* __restrict__ bias,
                      float* __restrict__ out, int lanes_per_row) {
  constexpr int groups_per_block = quant::format_info(F).block_size / quant::kGroup;
  constexpr int block_bytes = quant::format_info(F).block_bytes;
  const int lane = threadIdx.x & 31, sub_lane = lane & (lanes_per_row - 1);
  const int64_t warp = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int64_t n = warp * (32 / lanes_per_row) + lane / lanes_per_row;
  float acc[TT];
#pragma unroll
  for (int t = 0; t < TT; ++t) acc[t] = 0.0f;
  // No early return: every lane of the warp must reach the shuffles below.
  if (n < num_rows) {
    const uint8_t* row = weight + n * row_bytes;
    for (int64_t g = sub_lane; g < groups; g += lanes_per_row) {
      float w[quant::kGroup];
      decode_group<F>(row + (g / groups_per_block) * block_bytes, static_cast<int>(g % groups_per_block), w);
#pragma unroll
      for (int t = 0; t < TT; ++t) {
        if (t >= tokens) break;
        const float* xs = x + t * x_stride + g * quant::kGroup;
#pragma unroll
        for (int v = 0; v < quant::kGroup / 4; ++v) {
          const float4 x4 = __ldg(reinterpret_cast<const float4*>(xs) + v);
          acc[t] = fmaf(w[4 * v], x4.x, acc[t]);
          acc[t] = fmaf(w[4 * v + 1], x4.y, acc[t]);
          acc[t] = fmaf(w[4 * v + 2], x4.z, acc[t]);
          acc[t] = fmaf(w[4 * v + 3], x4.w, acc[t]);
        }
      }
    }
  }
#pragma unroll
  for (int t = 0; t < TT; ++t)
    for (int s = lanes_per_row / 2; s > 0; s >>= 1) acc[t] += __shfl_xor_sync(kFullMask, acc[t], s);
  if (n < num_rows && sub_lane == 0) {
    const float b = bias != nullptr ? bias[n] : 0.0f;
#pragma unroll
    for (int t = 0; t < TT; ++t)
      if (t < tokens) out[t * num_rows + n] = acc[t] + b;
  }
}

template <quant::Format F, int TT>
void launch(const QuantWeight& w, const float* x, int64_t x_stride, int64_t tokens, const float* bias, float* out,
            cudaStream_t stream) {
  const int64_t groups = w.in_features / quant::kGroup;
  int lanes_per_row = 1;  // the largest power of two <= groups, at most a warp
  while (lanes_per_row < 32 && 2 * lanes_per_row <= groups) lanes_per_row *= 2;
  const int64_t rows_per_cta = (kGemvThreads / 32) * (32 / lanes_per_row);
  const int64_t ctas = (w.rows + rows_per_cta - 1) / rows_per_cta;
  quant_gemv_kernel<F, TT><<<static_cast<unsigned>(ctas), kGemvThreads, 0, stream>>>(
      w.data, w.row_bytes, w.rows, groups, x, x_stride, static_cast<int>(tokens), bias, out, lanes_per_row);
}

template <quant::Format F>
void launch_tokens(const QuantWeight& w, const float* x, int64_t x_stride, int64_t tokens, const float* bias,
                   float* out, cudaStream_t stream) {
  static_assert(kQuantGemvMaxTokens == 16, "one instantiation per power of two up to the limit");
  if (tokens == 1) {
    launch<F, 1>(w, x, x_stride, tokens, bias, out, stream);
  } else if (tokens == 2) {
    launch<F, 2>(w, x, x_stride, tokens, bias, out, stream);
  } else if (tokens <= 4) {
    launch<F, 4>(w, x, x_stride, tokens, bias, out, stream);
  } else if (tokens <= 8) {
    launch<F, 8>(w, x, x_stride, tokens, bias, out, stream);
  } else {
    launch<F, 16>(w, x, x_stride, tokens, bias, out, stream);
  }
}

}  // namespace

LaunchStatus launch_quant_gemv(const QuantWeight& w, const float* x, int64_t x_stride, int64_t tokens,
                               const float* bias, float* out, cudaStream_t stream) {
  if (tokens == 0 || w.rows == 0) return 0;
  // The loads' preconditions (quant_cuda.h): 16-byte aligned blocks and token rows.
  if (tokens > kQuantGemvMaxTokens || !aligned16(w.data) || !aligned16(x) || x_stride % 4 != 0 ||
      w.in_features % quant::kGroup != 0)
    return static_cast<LaunchStatus>(cudaErrorInvalidValue);
  quant::visit_format(w.format, [&](auto format) { launch_tokens<decltype(format)::value>(w, x, x_stride, tokens, bias, out, stream); });
  return static_cast<LaunchStatus>(cudaGetLastError());
}

}  // namespace a1::cuda
