// rms_norm and fused_add_rms_norm: one CTA per row, a block-wide sum of squares, then one write
// pass. A row is a few thousand elements at most, so consecutive threads read consecutive
// elements (coalesced) without 16-byte vectors; each thread re-reads in the second pass exactly
// the elements it wrote in the first, so the fused residual needs no extra barrier.
#include "common/cuda_common.cuh"
#include "norm/norm_cuda.h"

namespace a1::cuda {
namespace {

constexpr int kMaxNormThreads = 1024;
constexpr int kElementsPerThread = 4;

// Rounds through the storage type: transformers casts the normalised row to the input dtype
// before multiplying by the weight, and that product is rounded again.
template <typename T>
__device__ __forceinline__ T scaled_by_weight(float value, float inv_rms, T weight) {
  return from_float<T>(to_float(weight) * to_float(from_float<T>(value * inv_rms)));
}

__device__ __forceinline__ float inverse_rms(float squares, float* scratch, int64_t hidden, float eps) {
  // Divide and sqrtf (not rsqrtf) so the value rounds like the CPU kernel's 1 / sqrt.
  return 1.0f / sqrtf(block_sum(squares, scratch) / static_cast<float>(hidden) + eps);
}

template <typename T>
__global__ void __launch_bounds__(kMaxNormThreads)
    rms_norm_kernel(const T* __restrict__ x, int64_t x_row_stride, const T* __restrict__ weight,
                    T* __restrict__ out, int64_t out_row_stride, int64_t hidden, float eps) {
  __shared__ float scratch[32];
  const T* in = x + static_cast<int64_t>(blockIdx.x) * x_row_stride;
  T* dst = out + static_cast<int64_t>(blockIdx.x) * out_row_stride;
  float squares = 0.0f;
  for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) {
    const float v = to_float(in[i]);
    squares += v * v;
  }
  const float inv_rms = inverse_rms(squares, scratch, hidden, eps);
  for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) dst[i] = scaled_by_weight(to_float(in[i]), inv_rms, weight[i]);
}

template <typename T>
__global__ void __launch_bounds__(kMaxNormThreads)
    fused_add_rms_norm_kernel(T* __restrict__ x, int64_t x_row_stride, T* __restrict__ residual,
                              int64_t residual_row_stride, const T* __restrict__ weight, int64_t hidden, float eps) {
  __shared__ float scratch[32];
  T* row = x + static_cast<int64_t>(blockIdx.x) * x_row_stride;
  T* res = residual + static_cast<int64_t>(blockIdx.x) * residual_row_stride;
  float squares = 0.0f;
  for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) {
    const T sum = from_float<T>(to_float(res[i]) + to_float(row[i]));  // the stored, rounded residual
    res[i] = sum;
    const float v = to_float(sum);
    squares += v * v;
  }
  const float inv_rms = inverse_rms(squares, scratch, hidden, eps);
  for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) row[i] = scaled_by_weight(to_float(res[i]), inv_rms, weight[i]);
}

// A few elements per thread, whole warps, at most kMaxNormThreads.
unsigned norm_threads(int64_t hidden) {
  const int64_t wanted = (hidden + kElementsPerThread - 1) / kElementsPerThread;
  const int64_t warps = (wanted + 31) / 32;
  return static_cast<unsigned>(warps < 1 ? 32 : (warps * 32 > kMaxNormThreads ? kMaxNormThreads : warps * 32));
}

}  // namespace

LaunchStatus launch_rms_norm(const NormRowsArgs& a, cudaStream_t stream) {
  if (a.num_rows == 0 || a.hidden == 0) return 0;
  A1_DISPATCH_FLOAT(a.kind, {
    rms_norm_kernel<scalar_t><<<static_cast<unsigned>(a.num_rows), norm_threads(a.hidden), 0, stream>>>(
        static_cast<const scalar_t*>(a.x), a.x_row_stride, static_cast<const scalar_t*>(a.weight),
        static_cast<scalar_t*>(a.out), a.out_row_stride, a.hidden, a.eps);
  });
  return static_cast<LaunchStatus>(cudaGetLastError());
}

LaunchStatus launch_fused_add_rms_norm(const NormRowsArgs& a, cudaStream_t stream) {
  if (a.num_rows == 0 || a.hidden == 0) return 0;
  A1_DISPATCH_FLOAT(a.kind, {
    fused_add_rms_norm_kernel<scalar_t><<<static_cast<unsigned>(a.num_rows), norm_threads(a.hidden), 0, stream>>>(
        static_cast<scalar_t*>(a.out), a.out_row_stride, static_cast<scalar_t*>(a.residual), a.residual_row_stride,
        static_cast<const scalar_t*>(a.weight), a.hidden, a.eps);
  });
  return static_cast<LaunchStatus>(cudaGetLastError());
}

}  // namespace a1::cuda
