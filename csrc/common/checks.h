// Argument checks shared by the torch glue of every op: each failure names the argument and what
// was expected, so a misuse from Python reads like a normal ValueError-style message.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <initializer_list>
#include <vector>

#include "common/float_rows.h"

namespace a1 {

inline void check_dim(const at::Tensor& t, const char* name, int64_t dim, const char* shape) {
  TORCH_CHECK(t.dim() == dim, name, " must be ", dim, "-D ", shape, ", got shape ", t.sizes());
}

inline void check_dtype(const at::Tensor& t, const char* name, at::ScalarType dtype) {
  TORCH_CHECK(t.scalar_type() == dtype, name, " must be ", dtype, ", got ", t.scalar_type());
}

inline void check_float_dtype(const at::Tensor& t, const char* name) {
  const auto dtype = t.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kBFloat16 || dtype == at::kHalf, name,
              " must be float32, bfloat16 or float16, got ", dtype);
}

// The torch-free kernels' tag for a tensor that passed check_float_dtype.
inline FloatType float_type_of(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kBFloat16: return FloatType::kBFloat16;
    case at::kHalf: return FloatType::kFloat16;
    default: return FloatType::kFloat32;
  }
}

inline void check_same_device(const at::Tensor& t, const char* name, const at::Tensor& ref,
                              const char* ref_name) {
  TORCH_CHECK(t.device() == ref.device(), name, " must be on ", ref_name, "'s device ", ref.device(),
              ", got ", t.device());
}

// "<name> must have <ref_name>'s dtype D, got E".
inline void check_same_dtype(const at::Tensor& t, const char* name, const at::Tensor& ref, const char* ref_name) {
  TORCH_CHECK(t.scalar_type() == ref.scalar_type(), name, " must have ", ref_name, "'s dtype ", ref.scalar_type(),
              ", got ", t.scalar_type());
}

inline void check_size(const at::Tensor& t, const char* name, int64_t dim, int64_t expected,
                       const char* what) {
  TORCH_CHECK(t.size(dim) == expected, name, ".size(", dim, ") must equal ", what, " (", expected,
              "), got ", t.size(dim));
}

// A paged KV cache [num_blocks, block_size, num_kv_heads, head_dim]: the kernels address a slot's
// rows as one contiguous [num_kv_heads, head_dim] run inside a contiguous block, while the block
// stride is free (K and V may be views of one [num_blocks, 2, ...] tensor).
inline void check_paged_cache(const at::Tensor& cache, const char* name) {
  check_dim(cache, name, 4, "[num_blocks, block_size, num_kv_heads, head_dim]");
  const int64_t head_dim = cache.size(3), num_kv_heads = cache.size(2);
  const bool inner_contiguous = (cache.stride(3) == 1 || head_dim <= 1) &&
                                (cache.stride(2) == head_dim || num_kv_heads <= 1) &&
                                (cache.stride(1) == num_kv_heads * head_dim || cache.size(1) <= 1);
  TORCH_CHECK(inner_contiguous, name, " must have contiguous [block_size, num_kv_heads, head_dim] dims (any block stride), got strides ",
              cache.strides(), " for shape ", cache.sizes());
}

// "<name> must be int32 or int64, got D".
void check_index_dtype(const at::Tensor& t, const char* name);

// cu_seqlens-style offsets: int32 or int64 [B+1], starting at 0, non-decreasing, ending at total.
// Returned as int64 on the CPU; the CPU kernels read them directly.
at::Tensor checked_offsets(const at::Tensor& offsets, const char* name, int64_t total, const char* total_name);

// The same checks, returning the values in a vector: no torch op for a contiguous CPU tensor,
// which matters for ops called once per layer per decode step.
std::vector<int64_t> checked_offset_values(const at::Tensor& offsets, const char* name, int64_t total,
                                           const char* total_name);

// An int32 or int64 index tensor's values as int64 (any device, any strides).
std::vector<int64_t> index_values(const at::Tensor& t, const char* name);

// Every value of an integer tensor in [0, bound): "<name> must be in [0, bound), got values in
// [lo, hi]". Any device: on a GPU it costs one host sync (the kernels would otherwise read out of
// bounds or silently return NaN for an id they cannot look up).
void check_index_range(const at::Tensor& t, const char* name, int64_t bound);

// A float tensor whose values must all be finite and >= 0 (probabilities): names the first
// offending entry. Any device (one host sync on a GPU).
void check_finite_nonnegative(const at::Tensor& t, const char* name);

}  // namespace a1
