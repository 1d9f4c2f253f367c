// silu_and_mul and rotary_embedding: one CTA per row (token); consecutive threads take consecutive
// elements, so loads are coalesced without 16-byte vectors (rows are a few thousand elements).
// expf, not __expf, so results track the CPU kernels to float rounding.
#include "common/cuda_common.cuh"
#include "pointwise/pointwise_cuda.h"

namespace a1::cuda {
namespace {

constexpr int kMaxPointwiseThreads = 1024;
constexpr int kElementsPerThread = 4;

// A few elements per thread, whole warps, at most kMaxPointwiseThreads.
unsigned pointwise_threads(int64_t elements) {
  const int64_t warps = ((elements + kElementsPerThread - 1) / kElementsPerThread + 31) / 32;
  return static_cast<unsigned>(warps < 1 ? 32 : (warps * 32 > kMaxPointwiseThreads ? kMaxPointwiseThreads : warps * 32));
}

template <typename T>
__global__ void __launch_bounds__(kMaxPointwiseThreads)
    silu_and_mul_kernel(const T* __restrict__ x, int64_t x_row_stride, T* __restrict__ out, int64_t out_row_stride,
                        int64_t width) {
  const T* gate = x + static_cast<int64_t>(blockIdx.x) * x_row_stride;
  const T* up = gate + width;
  T* dst = out + static_cast<int64_t>(blockIdx.x) * out_row_stride;
  for (int64_t i = threadIdx.x; i < width; i += blockDim.x) {
    const float g = to_float(gate[i]);
    const T activated = from_float<T>(g / (1.0f + expf(-g)));  // torch's silu, rounded like act_fn(gate)
    dst[i] = from_float<T>(to_float(activated) * to_float(up[i]));
  }
}

// One thread per (head, i < D/2) pair: it reads x[i] and x[i + D/2] and writes both, so the
// in-place update needs no synchronisation.
template <typename T>
__global__ void __launch_bounds__(kMaxPointwiseThreads)
    rotary_embedding_kernel(T* __restrict__ x, int64_t x_token_stride, int64_t x_head_stride,
                            const T* __restrict__ cos, const T* __restrict__ sin, int64_t table_token_stride,
                            int64_t num_heads, int64_t half) {
  const int64_t t = blockIdx.x;
  const T* cos_row = cos + t * table_token_stride;
  const T* sin_row = sin + t * table_token_stride;
  for (int64_t p = threadIdx.x; p < num_heads * half; p += blockDim.x) {
    const int64_t h = p / half, i = p % half;
    T* row = x + t * x_token_stride + h * x_head_stride;
    const float lo = to_float(row[i]), hi = to_float(row[half + i]);
    // x * cos is a tensor of the dtype in the torch formulation: rounded before the add.
    const float lo_cos = to_float(from_float<T>(lo * to_float(cos_row[i])));
    const float hi_cos = to_float(from_float<T>(hi * to_float(cos_row[half + i])));
    row[i] = from_float<T>(lo_cos + hi * to_float(sin_row[i]));
    row[half + i] = from_float<T>(hi_cos + lo * to_float(sin_row[half + i]));
  }
}

}  // namespace

LaunchStatus launch_silu_and_mul(const void* x, int64_t x_row_stride, void* out, int64_t out_row_stride, FloatType kind,
                                 int64_t num_rows, int64_t width, cudaStream_t stream) {
  if (num_rows == 0 || width == 0) return 0;
  A1_DISPATCH_FLOAT(kind, {
    silu_and_mul_kernel<scalar_t><<<static_cast<unsigned>(num_rows), pointwise_threads(width), 0, stream>>>(
        static_cast<const scalar_t*>(x), x_row_stride, static_cast<scalar_t*>(out), out_row_stride, width);
  });
  return static_cast<LaunchStatus>(cudaGetLastError());
}

LaunchStatus launch_rotary_embedding(const RotaryArgs& a, cudaStream_t stream) {
  const int64_t half = a.head_dim / 2, pairs = a.num_heads * half;
  if (a.num_tokens == 0 || pairs == 0) return 0;
  A1_DISPATCH_FLOAT(a.kind, {
    rotary_embedding_kernel<scalar_t><<<static_cast<unsigned>(a.num_tokens), pointwise_threads(pairs), 0, stream>>>(
        static_cast<scalar_t*>(a.x), a.x_token_stride, a.x_head_stride, static_cast<const scalar_t*>(a.cos),
        static_cast<const scalar_t*>(a.sin), a.table_token_stride, a.num_heads, half);
  });
  return static_cast<LaunchStatus>(cudaGetLastError());
}

}  // namespace a1::cuda
