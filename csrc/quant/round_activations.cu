// The activation side of a1::quant_linear on CUDA: token rows rounded to 8 bits per 32-value group
// exactly as the CPU kernels round them (quant/quant_activations.h, the twin round_activations):
// d = max|x| / 127, q = round(x / d) (ties to even) clamped to [-127, 127], the value q * d; a
// group holding inf or NaN becomes NaN. Both CUDA paths of quant_linear then multiply these floats,
// so the op means round8(x) @ dequantize(W)^T + bias on every device.
//
// A warp per group: lane i holds value i (coalesced), the group's max and its finiteness meet by
// shuffles. IEEE division (no fast-math) and rintf give the CPU's bits.
#include <cfloat>

#include "common/cuda_common.cuh"
#include "quant/quant_cuda.h"

namespace a1::cuda {
namespace {

constexpr int kRoundThreads = 256;
constexpr int kRoundCtasPerSm = 8;

__global__ void __launch_bounds__(kRoundThreads)
    round_activations_kernel(const float* __restrict__ x, int64_t x_stride, int64_t tokens, int64_t groups_per_row,
                             float* __restrict__ out) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x / 32);
  // Whole warps walk the groups together (the shuffles need every lane).
  for (int64_t g = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32; g < tokens * groups_per_row;
       g += warps) {
    const int64_t t = g / groups_per_row, k = (g % groups_per_row) * quant::kGroup + lane;
    const float v = x[t * x_stride + k];
    const float a = fabsf(v);
    const bool finite = a <= FLT_MAX;
    const float amax = warp_max(finite ? a : 0.0f);
    const bool group_finite = warp_max(finite ? 0.0f : 1.0f) == 0.0f;
    const float d = group_finite ? amax / 127.0f : NAN;
    const float inverse = group_finite && d != 0.0f ? 1.0f / d : 0.0f;
    float scaled = rintf(v * inverse);
    scaled = scaled > 127.0f ? 127.0f : scaled < -127.0f ? -127.0f : scaled;
    // An integer q, as the CPU's int8: -0 becomes 0, and a NaN (0 * inf under a subnormal d) becomes 0.
    const int q = scaled == scaled ? static_cast<int>(scaled) : 0;
    out[t * groups_per_row * quant::kGroup + k] = static_cast<float>(q) * d;
  }
}

}  // namespace

LaunchStatus launch_round_activations(const float* x, int64_t x_stride, int64_t tokens, int64_t in_features,
                                      float* out, cudaStream_t stream) {
  const int64_t groups = tokens * (in_features / quant::kGroup);
  if (groups == 0) return 0;
  const int64_t per_cta = kRoundThreads / 32;
  const int64_t max_ctas = static_cast<int64_t>(multiprocessor_count()) * kRoundCtasPerSm;
  const int64_t ctas = (groups + per_cta - 1) / per_cta < max_ctas ? (groups + per_cta - 1) / per_cta : max_ctas;
  round_activations_kernel<<<static_cast<unsigned>(ctas), kRoundThreads, 0, stream>>>(
      x, x_stride, tokens, in_features / quant::kGroup, out);
  return static_cast<LaunchStatus>(cudaGetLastError());
}

}  // namespace a1::cuda
