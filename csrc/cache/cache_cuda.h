// Launchers of the paged-KV-cache kernels (csrc/cache/*.cu). Torch-free: the glue in
// cache_cuda.cpp passes raw pointers, element strides and dtype tags, and a stream.
#pragma once
#include <cstdint>

#include "common/cuda_dtype.h"

namespace a1::cuda {

// One K or V input [T, Hkv, D] with arbitrary element strides.
struct TokenTensor {
  const void* data;
  FloatType kind;
  int64_t stride_token, stride_head, stride_dim;
};

// One cache [num_blocks, block_size, Hkv, D]; the inner [block_size, Hkv, D] is contiguous and
// blocks are `stride_block` elements apart (so K and V may be views into one larger tensor).
struct CacheTensor {
  void* data;
  FloatType kind;
  int64_t num_blocks, stride_block;
};

// Writes key/value row t into slot slot_mapping[t] (int64) of k_cache/v_cache; negative and
// out-of-range slots are skipped (no host sync to validate them).
LaunchStatus launch_reshape_and_cache(TokenTensor key, TokenTensor value, CacheTensor k_cache, CacheTensor v_cache,
                                      const int64_t* slot_mapping, int64_t num_tokens, int64_t block_size,
                                      int64_t num_heads, int64_t head_dim, cudaStream_t stream);

// Per layer l, copies block block_mapping[p, 0] onto block_mapping[p, 1] (int64 [P, 2] on the device)
// in caches[l]. All caches share num_blocks, block stride and `block_bytes` (bytes of one block's
// contiguous [block_size, Hkv, D] payload). Pairs naming an out-of-range block are skipped.
LaunchStatus launch_copy_blocks(void* const* caches, int64_t num_caches, int64_t num_blocks, int64_t stride_block_bytes,
                                int64_t block_bytes, const int64_t* block_mapping, int64_t num_pairs,
                                cudaStream_t stream);

}  // namespace a1::cuda
