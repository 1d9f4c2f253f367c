// Device helpers shared by the CUDA kernels: element conversion, warp/block reductions, 16-byte
// vector loads and the float-type dispatch. Needs only the CUDA toolkit (no torch), so every .cu
// compiles in seconds and CI can build it without a CUDA torch.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cfloat>
#include <cstdint>

#include "common/cuda_dtype.h"

namespace a1::cuda {

// ----------------------------------------------------------------------------- conversion
__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) { return x; }
template <>
__device__ __forceinline__ __half from_float<__half>(float x) { return __float2half_rn(x); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

// ----------------------------------------------------------------------------- vector loads
// Elements per 16-byte load.
template <typename T>
constexpr int kVec = 16 / sizeof(T);

// Loads kVec<T> consecutive elements as floats from a 16-byte aligned address.
template <typename T>
__device__ __forceinline__ void load_vec(const T* ptr, float (&out)[kVec<T>]) {
  const uint4 raw = __ldg(reinterpret_cast<const uint4*>(ptr));
  T elems[kVec<T>];
  memcpy(elems, &raw, sizeof raw);  // register moves on the GPU; no type-punned reads on the host
#pragma unroll
  for (int i = 0; i < kVec<T>; ++i) out[i] = to_float(elems[i]);
}

__host__ __device__ __forceinline__ bool aligned16(const void* ptr) {
  return (reinterpret_cast<uintptr_t>(ptr) & 15u) == 0;
}

// ----------------------------------------------------------------------------- reductions
constexpr unsigned kFullMask = 0xFFFFFFFFu;

__device__ __forceinline__ float warp_max(float x) {
#pragma unroll
  for (int s = 16; s > 0; s >>= 1) x = fmaxf(x, __shfl_xor_sync(kFullMask, x, s));
  return x;
}

__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int s = 16; s > 0; s >>= 1) x += __shfl_xor_sync(kFullMask, x, s);
  return x;
}

__device__ __forceinline__ double warp_sum(double x) {
#pragma unroll
  for (int s = 16; s > 0; s >>= 1) x += __shfl_xor_sync(kFullMask, x, s);
  return x;
}

__device__ __forceinline__ unsigned long long warp_sum(unsigned long long x) {
#pragma unroll
  for (int s = 16; s > 0; s >>= 1) x += __shfl_xor_sync(kFullMask, x, s);
  return x;
}

// Running (max, sum of exp(x - max)) pair: the online softmax normaliser.
struct MaxSum {
  float max;
  float sum;
};

__device__ __forceinline__ MaxSum merge(MaxSum a, MaxSum b) {
  const float m = fmaxf(a.max, b.max);
  if (m == -INFINITY) return {m, 0.0f};
  return {m, a.sum * expf(a.max - m) + b.sum * expf(b.max - m)};
}

__device__ __forceinline__ MaxSum warp_merge(MaxSum x) {
#pragma unroll
  for (int s = 16; s > 0; s >>= 1) {
    MaxSum other{__shfl_xor_sync(kFullMask, x.max, s), __shfl_xor_sync(kFullMask, x.sum, s)};
    x = merge(x, other);
  }
  return x;
}

// Argmax with the lowest index winning ties (torch.argmax's first-max rule).
struct ArgMax {
  float value;
  int64_t index;
};

__device__ __forceinline__ ArgMax better(ArgMax a, ArgMax b) {
  if (b.value > a.value || (b.value == a.value && b.index < a.index)) return b;
  return a;
}

__device__ __forceinline__ ArgMax warp_argmax(ArgMax x) {
#pragma unroll
  for (int s = 16; s > 0; s >>= 1) {
    ArgMax other{__shfl_xor_sync(kFullMask, x.value, s), __shfl_xor_sync(kFullMask, x.index, s)};
    x = better(x, other);
  }
  return x;
}

// Block-wide reductions through shared memory: every thread gets the result. `scratch` must
// hold one entry per warp (at most 32) and is reused, so calls are separated by barriers here.
template <typename T, typename WarpOp, typename Combine>
__device__ __forceinline__ T block_reduce(T x, T* scratch, WarpOp warp_op, Combine combine) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
  x = warp_op(x);
  __syncthreads();  // scratch may still be read by a previous reduction
  if (lane == 0) scratch[warp] = x;
  __syncthreads();
  T total = scratch[0];
  for (int w = 1; w < warps; ++w) total = combine(total, scratch[w]);
  return total;
}

__device__ __forceinline__ float block_max(float x, float* scratch) {
  return block_reduce(x, scratch, [](float v) { return warp_max(v); }, [](float a, float b) { return fmaxf(a, b); });
}

__device__ __forceinline__ float block_sum(float x, float* scratch) {
  return block_reduce(x, scratch, [](float v) { return warp_sum(v); }, [](float a, float b) { return a + b; });
}

__device__ __forceinline__ MaxSum block_merge(MaxSum x, MaxSum* scratch) {
  return block_reduce(x, scratch, [](MaxSum v) { return warp_merge(v); }, [](MaxSum a, MaxSum b) { return merge(a, b); });
}

__device__ __forceinline__ ArgMax block_argmax(ArgMax x, ArgMax* scratch) {
  return block_reduce(x, scratch, [](ArgMax v) { return warp_argmax(v); }, [](ArgMax a, ArgMax b) { return better(a, b); });
}

}  // namespace a1::cuda

// Instantiates `__VA_ARGS__` with `scalar_t` bound to the element type of a FloatType.
#define A1_DISPATCH_FLOAT(kind, ...)                                \
  do {                                                              \
    switch (kind) {                                                 \
      case ::a1::FloatType::kFloat32: {                       \
        using scalar_t = float;                                     \
        __VA_ARGS__;                                                \
        break;                                                      \
      }                                                             \
      case ::a1::FloatType::kFloat16: {                       \
        using scalar_t = __half;                                    \
        __VA_ARGS__;                                                \
        break;                                                      \
      }                                                             \
      case ::a1::FloatType::kBFloat16: {                      \
        using scalar_t = __nv_bfloat16;                             \
        __VA_ARGS__;                                                \
        break;                                                      \
      }                                                             \
    }                                                               \
  } while (0)
