// Torch-free CPU kernels of the paged KV cache ops (NHD layout [num_blocks, block_size, Hkv, D],
// inner three dims contiguous, free block stride). They move bytes: the glue guarantees that
// sources and caches share one dtype and validates every slot and block id.
#pragma once
#include <cstdint>
#include <cstring>

namespace a1::cache {

// One tensor of new rows [T, Hkv, D] (head_dim contiguous) and the cache it is written into.
struct RowsToCache {
  const char* src;
  int64_t src_token_stride, src_head_stride;  // bytes
  char* cache;
  int64_t cache_block_stride;  // bytes
};

struct CacheWriteParams {
  RowsToCache key, value;
  const int64_t* slot_mapping;  // [T]; negative = skip, else < num_blocks * block_size
  int64_t block_size, num_kv_heads, row_bytes;  // row_bytes = head_dim * element size
};

inline void write_rows(const RowsToCache& rows, const CacheWriteParams& p, int64_t token, int64_t slot) {
  const int64_t block = slot / p.block_size, offset = slot % p.block_size;
  char* dst = rows.cache + block * rows.cache_block_stride + offset * p.num_kv_heads * p.row_bytes;
  const char* src = rows.src + token * rows.src_token_stride;
  if (rows.src_head_stride == p.row_bytes) {  // the token's heads are one run on both sides
    std::memcpy(dst, src, p.num_kv_heads * p.row_bytes);
    return;
  }
  for (int64_t h = 0; h < p.num_kv_heads; ++h)
    std::memcpy(dst + h * p.row_bytes, src + h * rows.src_head_stride, p.row_bytes);
}

// reshape_and_cache for tokens [token_begin, token_end). Slots must be distinct (apart from
// negative ones): tokens are written in parallel ranges, so a repeated slot has no defined winner.
inline void write_tokens_to_cache(const CacheWriteParams& p, int64_t token_begin, int64_t token_end) {
  for (int64_t t = token_begin; t < token_end; ++t) {
    const int64_t slot = p.slot_mapping[t];
    if (slot < 0) continue;
    write_rows(p.key, p, t, slot);
    write_rows(p.value, p, t, slot);
  }
}

// One cache of copy_blocks: block bytes are contiguous inside a block, blocks are block_stride apart.
struct BlockCopyTarget {
  char* base;
  int64_t block_stride, block_bytes;  // bytes
};

// copy_blocks for pairs [pair_begin, pair_end) of block_mapping [P, 2] = (src, dst). The glue
// requires distinct destinations that are never another pair's source, so pairs are independent;
// a pair (b, b) copies nothing (memcpy onto itself would be undefined).
inline void copy_block_pairs(const BlockCopyTarget& cache, const int64_t* block_mapping, int64_t pair_begin,
                             int64_t pair_end) {
  for (int64_t i = pair_begin; i < pair_end; ++i) {
    const int64_t src = block_mapping[2 * i], dst = block_mapping[2 * i + 1];
    if (src == dst) continue;
    std::memcpy(cache.base + dst * cache.block_stride, cache.base + src * cache.block_stride, cache.block_bytes);
  }
}

}  // namespace a1::cache
