// Argument checks shared by the CPU and CUDA glue of a1::paged_attention, so both devices accept
// and reject the same inputs with the same message naming the argument. Device-kind checks and
// the CUDA kernel's head_dim limit stay in the glue.
#pragma once
#include <cmath>
#include <vector>

#include "common/checks.h"

namespace a1 {

// query [T, Hq, D] of a float dtype; k_cache and v_cache paged caches [num_blocks, block_size,
// Hkv, D] (check_paged_cache) of one float dtype (query's may differ), Hq a multiple of Hkv;
// block_table [B, max_blocks], seq_lens [B], query_start_loc [B+1], all int32 or int64; scale finite.
inline void check_attention_inputs(const at::Tensor& query, const at::Tensor& k_cache, const at::Tensor& v_cache,
                                   const at::Tensor& block_table, const at::Tensor& seq_lens,
                                   const at::Tensor& query_start_loc, double scale) {
  check_dim(query, "query", 3, "[num_tokens, num_q_heads, head_dim]");
  check_paged_cache(k_cache, "k_cache");
  check_paged_cache(v_cache, "v_cache");
  check_dim(block_table, "block_table", 2, "[batch, max_blocks]");
  check_dim(seq_lens, "seq_lens", 1, "[batch]");
  check_dim(query_start_loc, "query_start_loc", 1, "[batch + 1]");
  check_float_dtype(query, "query");
  check_float_dtype(k_cache, "k_cache");
  check_dtype(v_cache, "v_cache", k_cache.scalar_type());
  TORCH_CHECK(v_cache.sizes() == k_cache.sizes(), "v_cache shape ", v_cache.sizes(), " must equal k_cache shape ",
              k_cache.sizes());
  const int64_t num_q_heads = query.size(1), num_kv_heads = k_cache.size(2), head_dim = k_cache.size(3);
  TORCH_CHECK(query.size(2) == head_dim, "query.size(2) (head_dim=", query.size(2),
              ") must equal k_cache.size(3) (head_dim=", head_dim, ")");
  TORCH_CHECK(num_kv_heads > 0 && num_q_heads % num_kv_heads == 0, "query.size(1) (num_q_heads=", num_q_heads,
              ") must be a multiple of k_cache.size(2) (num_kv_heads=", num_kv_heads, ")");
  TORCH_CHECK(k_cache.size(1) > 0, "k_cache.size(1) (block_size) must be positive");
  const int64_t batch = block_table.size(0);
  check_size(seq_lens, "seq_lens", 0, batch, "block_table.size(0) (batch)");
  check_size(query_start_loc, "query_start_loc", 0, batch + 1, "block_table.size(0) + 1 (batch + 1)");
  check_index_dtype(block_table, "block_table");
  check_index_dtype(seq_lens, "seq_lens");
  check_index_dtype(query_start_loc, "query_start_loc");
  // A NaN or inf scale turns every score, and so every output, into NaN.
  TORCH_CHECK(std::isfinite(scale), "scale must be finite, got ", scale);
}

// The index values, read on the host: query_start_loc offsets into the T queries, 0 <= q_len_b <=
// seq_lens[b] <= the row's block capacity, and every block id a row reads (rows with q_len 0
// read none) in [0, num_blocks). Returns the offsets and seq_lens as int64.
struct AttentionIndexValues {
  std::vector<int64_t> offsets, seq_lens;
};

inline AttentionIndexValues check_attention_index_values(const at::Tensor& block_table, const at::Tensor& seq_lens,
                                                         const at::Tensor& query_start_loc, int64_t num_tokens,
                                                         int64_t block_size, int64_t num_blocks) {
  AttentionIndexValues v{
      checked_offset_values(query_start_loc, "query_start_loc", num_tokens, "query.size(0) (num_tokens)"),
      index_values(seq_lens, "seq_lens")};
  const std::vector<int64_t> ids = index_values(block_table, "block_table");
  const int64_t batch = block_table.size(0), max_blocks = block_table.size(1);
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t seq_len = v.seq_lens[b], q_len = v.offsets[b + 1] - v.offsets[b];
    TORCH_CHECK(seq_len >= 0, "seq_lens[", b, "]=", seq_len, " is negative");
    TORCH_CHECK(seq_len <= max_blocks * block_size, "seq_lens[", b, "]=", seq_len,
                " exceeds block_table capacity (", max_blocks, " blocks of ", block_size, " slots)");
    TORCH_CHECK(q_len <= seq_len, "query_start_loc gives row ", b, " q_len=", q_len, " queries, more than seq_lens[",
                b, "]=", seq_len);
    if (q_len == 0) continue;
    for (int64_t j = 0; j < (seq_len + block_size - 1) / block_size; ++j) {
      const int64_t id = ids[b * max_blocks + j];
      TORCH_CHECK(id >= 0 && id < num_blocks, "block_table[", b, ", ", j, "]=", id,
                  " is out of range for a cache of ", num_blocks, " blocks");
    }
  }
  return v;
}

}  // namespace a1
