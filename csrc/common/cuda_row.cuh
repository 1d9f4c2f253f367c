// Block-wide traversal of one row of a [rows, V] tensor with 16-byte loads: the few elements
// before the first 16-byte boundary are read one by one, the body in vectors, the tail one by
// one, so odd vocab sizes (V=111) and misaligned row strides still take the vector path.
#pragma once
#include "common/cuda_common.cuh"

namespace a1::cuda {

// Calls f(index, value) for every element of row[0, n) once, spread over the CTA's threads.
template <typename T, typename F>
__device__ __forceinline__ void for_each_element(const T* row, int64_t n, F&& f) {
  int64_t head = 0;
  const uintptr_t address = reinterpret_cast<uintptr_t>(row);
  if (address % sizeof(T) == 0) {
    head = static_cast<int64_t>(((16 - address % 16) % 16) / sizeof(T));
  } else {
    head = n;  // not even element-aligned: everything scalar
  }
  if (head > n) head = n;
  for (int64_t i = threadIdx.x; i < head; i += blockDim.x) f(i, to_float(row[i]));
  const T* body = row + head;
  const int64_t body_vectors = (n - head) / kVec<T>;
  for (int64_t v = threadIdx.x; v < body_vectors; v += blockDim.x) {
    float values[kVec<T>];
    load_vec(body + v * kVec<T>, values);
#pragma unroll
    for (int e = 0; e < kVec<T>; ++e) f(head + v * kVec<T> + e, values[e]);
  }
  for (int64_t i = head + body_vectors * kVec<T> + threadIdx.x; i < n; i += blockDim.x) f(i, to_float(row[i]));
}

// Adds x to a running (max, sum of exp(x - max)); -inf entries contribute nothing.
__device__ __forceinline__ void online_add(MaxSum& acc, float x) {
  if (x == -INFINITY) return;
  if (x > acc.max) {
    acc.sum = acc.sum * expf(acc.max - x) + 1.0f;
    acc.max = x;
  } else {
    acc.sum += expf(x - acc.max);
  }
}

}  // namespace a1::cuda
