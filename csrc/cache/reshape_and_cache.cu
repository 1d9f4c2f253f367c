// reshape_and_cache: scatter the new tokens' K/V rows into their cache slots. One CTA per token,
// threads over (head, dim); the cast to the cache dtype happens on the fly, like the twin's .to().
#include "cache/cache_cuda.h"
#include "common/cuda_common.cuh"

namespace a1::cuda {
namespace {

template <typename In, typename Out>
__global__ void reshape_and_cache_kernel(const In* __restrict__ key, const In* __restrict__ value,
                                         int64_t k_stride_t, int64_t k_stride_h, int64_t k_stride_d,
                                         int64_t v_stride_t, int64_t v_stride_h, int64_t v_stride_d,
                                         Out* __restrict__ k_cache, Out* __restrict__ v_cache,
                                         int64_t k_block_stride, int64_t v_block_stride, int64_t num_blocks,
                                         const int64_t* __restrict__ slot_mapping, int64_t block_size,
                                         int num_heads, int head_dim) {
  const int64_t token = blockIdx.x;
  const int64_t slot = slot_mapping[token];
  // Negative = padding (CUDA-graph friendly); beyond the cache = invalid, skipped rather than
  // written out of bounds because validating would need a host sync.
  if (slot < 0 || slot >= num_blocks * block_size) return;
  const int64_t block = slot / block_size, offset = slot % block_size;
  const int64_t row = offset * num_heads * head_dim;  // inner [block_size, Hkv, D] is contiguous
  Out* k_dst = k_cache + block * k_block_stride + row;
  Out* v_dst = v_cache + block * v_block_stride + row;
  const int elems = num_heads * head_dim;
  for (int i = threadIdx.x; i < elems; i += blockDim.x) {
    const int h = i / head_dim, d = i % head_dim;
    k_dst[i] = from_float<Out>(to_float(key[token * k_stride_t + h * k_stride_h + d * k_stride_d]));
    v_dst[i] = from_float<Out>(to_float(value[token * v_stride_t + h * v_stride_h + d * v_stride_d]));
  }
}

template <typename In, typename Out>
void launch_typed(TokenTensor key, TokenTensor value, CacheTensor k_cache, CacheTensor v_cache,
                  const int64_t* slot_mapping, int64_t num_tokens, int64_t block_size, int64_t num_heads,
                  int64_t head_dim, cudaStream_t stream) {
  const int elems = static_cast<int>(num_heads * head_dim);
  const int threads = elems >= 512 ? 512 : ((elems + 31) / 32) * 32;
  reshape_and_cache_kernel<In, Out><<<static_cast<unsigned>(num_tokens), threads, 0, stream>>>(
      static_cast<const In*>(key.data), static_cast<const In*>(value.data), key.stride_token, key.stride_head,
      key.stride_dim, value.stride_token, value.stride_head, value.stride_dim, static_cast<Out*>(k_cache.data),
      static_cast<Out*>(v_cache.data), k_cache.stride_block, v_cache.stride_block, k_cache.num_blocks, slot_mapping,
      block_size, static_cast<int>(num_heads), static_cast<int>(head_dim));
}

}  // namespace

LaunchStatus launch_reshape_and_cache(TokenTensor key, TokenTensor value, CacheTensor k_cache, CacheTensor v_cache,
                                      const int64_t* slot_mapping, int64_t num_tokens, int64_t block_size,
                                      int64_t num_heads, int64_t head_dim, cudaStream_t stream) {
  if (num_tokens == 0 || num_heads * head_dim == 0) return 0;
  // key/value share a dtype and so do the two caches (checked by the glue); 3 x 3 combinations.
  A1_DISPATCH_FLOAT(key.kind, {
    using in_t = scalar_t;
    A1_DISPATCH_FLOAT(k_cache.kind, {
      launch_typed<in_t, scalar_t>(key, value, k_cache, v_cache, slot_mapping, num_tokens, block_size, num_heads,
                                   head_dim, stream);
    });
  });
  return static_cast<LaunchStatus>(cudaGetLastError());
}

}  // namespace a1::cuda
