// Torch-free CPU paged attention (flash-attention style) over the NHD paged KV cache
// [num_blocks, block_size, num_kv_heads, head_dim]. The torch glue validates every argument and
// fills PagedAttentionParams; a CUDA twin implements the same contract.
//
// Work item = (batch row, kv head, tile of consecutive queries of that row). Its tile rows are the
// group's Hq/Hkv query heads at each of those positions, so every K/V row read from the cache
// serves all of them. Keys are visited in chunks of kKeysPerChunk: scores = Q.K^T (register-
// blocked dot products), causal mask + online softmax per row, O = O * rescale + P.V. The score
// buffer never exceeds [tile rows, kKeysPerChunk]. bf16/fp16 K/V rows (and fp32 rows whose
// head_dim is not a multiple of the vector width) are widened into a padded fp32 chunk first;
// the next chunk's rows are prefetched meanwhile.
#pragma once
#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "attention/attention_microkernels.h"
#include "common/float_rows.h"
#include "common/simd_wide.h"

namespace a1::attention {

constexpr int kKeysPerChunk = 64;  // multiple of every vector width and KC
constexpr int kTileRows = 128;     // target rows per tile: queries per tile = kTileRows / group
constexpr int kMaxWidth = 16;      // widest vector (f32x16): scratch rows are padded to it

struct PagedAttentionParams {
  const void* query;  // [T, Hq, D] elements of query_type, head_dim contiguous
  FloatType query_type;
  int64_t query_token_stride, query_head_stride;  // in elements
  const void* k_cache;  // [num_blocks, block_size, Hkv, D], inner three dims contiguous
  const void* v_cache;
  FloatType cache_type;
  int64_t k_block_stride, v_block_stride;  // in elements
  const int32_t* block_table;              // [batch, block_table_stride], ids validated
  int64_t block_table_stride;
  const int64_t* seq_lens;         // [batch]
  const int64_t* query_start_loc;  // [batch + 1]
  int batch, num_q_heads, num_kv_heads, head_dim, block_size;
  float scale;
  float* out;  // [T, Hq, D] fp32, head_dim contiguous
  int64_t out_token_stride, out_head_stride;
};

struct AttentionWorkItem {
  int32_t row, kv_head, q_begin, q_end;  // queries [q_begin, q_end) of the row, row-relative
  int64_t cost;                          // score entries computed, for scheduling
};

inline int queries_per_tile(int group) { return std::max(1, kTileRows / group); }

// Work items of all rows, most expensive first (workers take them in order: longest-first keeps
// the causal prefill tiles balanced across threads).
inline std::vector<AttentionWorkItem> plan_attention_work(const PagedAttentionParams& p) {
  const int group = p.num_q_heads / p.num_kv_heads;
  const int tile = queries_per_tile(group);
  std::vector<AttentionWorkItem> items;
  for (int b = 0; b < p.batch; ++b) {
    const int64_t q_len = p.query_start_loc[b + 1] - p.query_start_loc[b];
    const int64_t prefix = p.seq_lens[b] - q_len;  // cached keys before the first query
    for (int h = 0; h < p.num_kv_heads; ++h)
      for (int64_t q0 = 0; q0 < q_len; q0 += tile) {
        const int64_t q1 = std::min<int64_t>(q_len, q0 + tile);
        const int64_t cost = (q1 - q0) * group * (prefix + q1) + 64;
        items.push_back({b, h, static_cast<int32_t>(q0), static_cast<int32_t>(q1), cost});
      }
  }
  std::stable_sort(items.begin(), items.end(),
                   [](const AttentionWorkItem& a, const AttentionWorkItem& b) { return a.cost > b.cost; });
  return items;
}

// Rows of the largest tile among the items (a decode step's tiles are one query per head group).
inline int max_tile_rows(const std::vector<AttentionWorkItem>& items, int group) {
  int rows = 1;
  for (const AttentionWorkItem& item : items) rows = std::max(rows, (item.q_end - item.q_begin) * group);
  return rows;
}

// Total cost of the items (score entries), to decide whether threads are worth waking.
inline int64_t total_cost(const std::vector<AttentionWorkItem>& items) {
  int64_t cost = 0;
  for (const AttentionWorkItem& item : items) cost += item.cost;
  return cost;
}

// Per-thread buffers for tiles of up to max_rows rows (max_tile_rows: sized for the step's
// largest tile, so a decode step zeroes a few KB rather than a prefill tile's ~160 KB); reused
// across work items.
struct AttentionScratch {
  AttentionScratch(int max_rows, int head_dim)
      : max_rows(max_rows),
        padded_dim((head_dim + kMaxWidth - 1) / kMaxWidth * kMaxWidth),
        q(static_cast<size_t>(max_rows) * padded_dim),
        o(static_cast<size_t>(max_rows) * padded_dim),
        scores(static_cast<size_t>(max_rows) * kKeysPerChunk),
        row_max(max_rows),
        row_sum(max_rows),
        rescale(max_rows),
        k_rows(static_cast<size_t>(kKeysPerChunk) * padded_dim),
        v_rows(static_cast<size_t>(kKeysPerChunk) * padded_dim),
        k_ptr(kKeysPerChunk),
        v_ptr(kKeysPerChunk),
        k_offset(2 * kKeysPerChunk),
        v_offset(2 * kKeysPerChunk) {}
  int max_rows, padded_dim;
  std::vector<float> q, o, scores, row_max, row_sum, rescale, k_rows, v_rows;
  std::vector<const float*> k_ptr, v_ptr;
  std::vector<int64_t> k_offset, v_offset;  // byte offsets in the caches of two chunks' rows
};

// Byte offsets of the K and V rows of keys [k0, k0 + n) of one kv head, walking the block table
// (one division per chunk rather than per key: block_size is a run-time value).
inline void locate_key_rows(const PagedAttentionParams& p, const int32_t* table, int kv_head, int64_t k0, int n,
                            int64_t* k_offset, int64_t* v_offset) {
  const int64_t elem = float_type_size(p.cache_type);
  const int64_t token_bytes = static_cast<int64_t>(p.num_kv_heads) * p.head_dim * elem;
  const int64_t head_bytes = static_cast<int64_t>(kv_head) * p.head_dim * elem;
  int64_t block_index = k0 / p.block_size, slot = k0 % p.block_size;
  for (int j = 0; j < n; ++j) {
    const int64_t block = table[block_index];
    const int64_t in_block = slot * token_bytes + head_bytes;
    k_offset[j] = block * p.k_block_stride * elem + in_block;
    v_offset[j] = block * p.v_block_stride * elem + in_block;
    if (++slot == p.block_size) {
      slot = 0;
      ++block_index;
    }
  }
}

// Pointers to the fp32 K and V rows of located keys: straight into the cache when it already
// holds fp32 rows of whole vectors, else widened into the scratch rows.
inline void stage_key_rows(const PagedAttentionParams& p, const int64_t* k_offset, const int64_t* v_offset, int n,
                           int dim, bool direct, AttentionScratch& sc) {
  const char* k_base = static_cast<const char*>(p.k_cache);
  const char* v_base = static_cast<const char*>(p.v_cache);
  for (int j = 0; j < n; ++j) {
    if (direct) {
      sc.k_ptr[j] = reinterpret_cast<const float*>(k_base + k_offset[j]);
      sc.v_ptr[j] = reinterpret_cast<const float*>(v_base + v_offset[j]);
    } else {
      float* k_dst = sc.k_rows.data() + static_cast<size_t>(j) * sc.padded_dim;
      float* v_dst = sc.v_rows.data() + static_cast<size_t>(j) * sc.padded_dim;
      widen_row(k_base + k_offset[j], p.cache_type, k_dst, p.head_dim, dim);
      widen_row(v_base + v_offset[j], p.cache_type, v_dst, p.head_dim, dim);
      sc.k_ptr[j] = k_dst;
      sc.v_ptr[j] = v_dst;
    }
  }
  // Q.K^T blocks run over whole groups of KC keys: repeat the last key (its scores are masked).
  for (int j = n; j < kKeysPerChunk; ++j) sc.k_ptr[j] = sc.k_ptr[n - 1];
}

template <class Fn>
inline void for_row_blocks(int first_row, int rows, Fn&& fn) {
  for (int r = first_row; r < rows; r += kRowBlock) {
    switch (std::min(kRowBlock, rows - r)) {
      case 4: fn(r, std::integral_constant<int, 4>{}); break;
      case 3: fn(r, std::integral_constant<int, 3>{}); break;
      case 2: fn(r, std::integral_constant<int, 2>{}); break;
      default: fn(r, std::integral_constant<int, 1>{}); break;
    }
  }
}

// Where a work item's tile sits: row r of the tile is query q_begin + r / group of its batch row
// (token first_token + r / group, key position first_pos + r / group) for query head
// kv_head * group + r % group. The last query sees keys [0, num_keys).
struct TileGeometry {
  int group, rows, dim;  // dim: head_dim rounded up to the vector width
  int64_t first_token, first_pos, num_keys;

  TileGeometry(const PagedAttentionParams& p, const AttentionWorkItem& item, int width)
      : group(p.num_q_heads / p.num_kv_heads),
        rows((item.q_end - item.q_begin) * group),
        dim((p.head_dim + width - 1) / width * width) {
    const int64_t q_len = p.query_start_loc[item.row + 1] - p.query_start_loc[item.row];
    first_token = p.query_start_loc[item.row] + item.q_begin;
    first_pos = p.seq_lens[item.row] - q_len + item.q_begin;
    num_keys = first_pos + (item.q_end - item.q_begin);
  }
  int64_t token(int r) const { return first_token + r / group; }
  int64_t head(const AttentionWorkItem& item, int r) const { return static_cast<int64_t>(item.kv_head) * group + r % group; }
  // Keys of the chunk [k0, k0 + n) that row r may see (causal mask).
  int visible_keys(int r, int64_t k0, int n) const {
    return static_cast<int>(std::clamp<int64_t>(first_pos + r / group + 1 - k0, 0, n));
  }
};

// Scaled fp32 queries of the tile, zeroed outputs and fresh softmax state.
inline void load_tile(const PagedAttentionParams& p, const AttentionWorkItem& item, const TileGeometry& tile,
                      AttentionScratch& sc) {
  const int elem = float_type_size(p.query_type);
  for (int r = 0; r < tile.rows; ++r) {
    const int64_t offset = tile.token(r) * p.query_token_stride + tile.head(item, r) * p.query_head_stride;
    widen_row(static_cast<const char*>(p.query) + offset * elem, p.query_type, p.scale,
              sc.q.data() + static_cast<int64_t>(r) * sc.padded_dim, p.head_dim, tile.dim);
    std::fill_n(sc.o.data() + static_cast<int64_t>(r) * sc.padded_dim, tile.dim, 0.0f);
    sc.row_max[r] = -std::numeric_limits<float>::infinity();
    sc.row_sum[r] = 0.0f;
  }
}

// One chunk of staged keys [k0, k0 + n): scores, online softmax, O = O * rescale + P.V.
template <class V>
inline void attend_chunk(const TileGeometry& tile, int64_t k0, int n, AttentionScratch& sc) {
  const int64_t pd = sc.padded_dim;
  // Rows whose query precedes the whole chunk see none of it: skip their row blocks.
  const int first_visible = k0 > tile.first_pos ? static_cast<int>(k0 - tile.first_pos) * tile.group : 0;
  const int first_row = first_visible / kRowBlock * kRowBlock;
  for_row_blocks(first_row, tile.rows, [&](int r, auto R) {
    qk_rows<V, decltype(R)::value>(sc.q.data() + r * pd, pd, sc.k_ptr.data(), n, tile.dim,
                                   sc.scores.data() + r * kKeysPerChunk, kKeysPerChunk);
  });
  for (int r = first_row; r < tile.rows; ++r) {
    float* scores = sc.scores.data() + r * kKeysPerChunk;
    const int valid = tile.visible_keys(r, k0, n);
    if (valid == 0) {  // keeps the row's state; P.V adds nothing for it
      std::fill_n(scores, kKeysPerChunk, 0.0f);
      sc.rescale[r] = 1.0f;
      continue;
    }
    sc.rescale[r] = online_softmax_row<V>(scores, n, valid, sc.row_max[r], sc.row_sum[r]);
  }
  for_row_blocks(first_row, tile.rows, [&](int r, auto R) {
    const int keys = tile.visible_keys(r + R - 1, k0, n);  // rows are in position order: the last sees most
    if (keys > 0)
      pv_rows<V, decltype(R)::value>(sc.o.data() + r * pd, pd, sc.rescale.data() + r,
                                     sc.scores.data() + r * kKeysPerChunk, kKeysPerChunk, sc.v_ptr.data(), keys,
                                     tile.dim);
  });
}

template <class V>
inline void attend_tile(const PagedAttentionParams& p, const AttentionWorkItem& item, AttentionScratch& sc) {
  const TileGeometry tile(p, item, simd::width_v<V>);
  const bool direct = p.cache_type == FloatType::kFloat32 && p.head_dim % simd::width_v<V> == 0;
  const int32_t* table = p.block_table + item.row * p.block_table_stride;
  const char* k_base = static_cast<const char*>(p.k_cache);
  const char* v_base = static_cast<const char*>(p.v_cache);
  const int64_t row_bytes = static_cast<int64_t>(p.head_dim) * float_type_size(p.cache_type);
  auto chunk_size = [&](int64_t k0) { return static_cast<int>(std::min<int64_t>(kKeysPerChunk, tile.num_keys - k0)); };
  // Row offsets are double-buffered: chunk c + 1 is located and prefetched before c is computed.
  int64_t* k_offset[2] = {sc.k_offset.data(), sc.k_offset.data() + kKeysPerChunk};
  int64_t* v_offset[2] = {sc.v_offset.data(), sc.v_offset.data() + kKeysPerChunk};
  locate_key_rows(p, table, item.kv_head, 0, chunk_size(0), k_offset[0], v_offset[0]);
  // The first chunk too: a short decode context is a single chunk, whose rows are cold (the
  // layer's weights streamed through the caches since they were written) and would otherwise be
  // fetched one demand miss at a time.
  for (int j = 0; j < chunk_size(0); ++j)
    for (int64_t b = 0; b < row_bytes; b += 64) {
      __builtin_prefetch(k_base + k_offset[0][j] + b, 0, 3);
      __builtin_prefetch(v_base + v_offset[0][j] + b, 0, 3);
    }
  load_tile(p, item, tile, sc);  // overlaps the misses just issued
  for (int64_t k0 = 0, c = 0; k0 < tile.num_keys; k0 += kKeysPerChunk, c ^= 1) {
    const int64_t next = k0 + kKeysPerChunk;
    if (next < tile.num_keys) {
      // Consecutive keys of one head are num_kv_heads * head_dim elements apart (4 KB for Llama
      // shapes): every row sits in another page, where the hardware prefetchers stop. Measured on
      // fp32 decode: 25 -> 21.5 ms (AVX-512), 31 -> 24 ms (AVX2). The same loop moved into a
      // helper function measured no gain (not understood; benchmark before moving it).
      locate_key_rows(p, table, item.kv_head, next, chunk_size(next), k_offset[c ^ 1], v_offset[c ^ 1]);
      for (int j = 0; j < chunk_size(next); ++j)
        for (int64_t b = 0; b < row_bytes; b += 64) {
          __builtin_prefetch(k_base + k_offset[c ^ 1][j] + b, 0, 3);
          __builtin_prefetch(v_base + v_offset[c ^ 1][j] + b, 0, 3);
        }
    }
    stage_key_rows(p, k_offset[c], v_offset[c], chunk_size(k0), tile.dim, direct, sc);
    attend_chunk<V>(tile, k0, chunk_size(k0), sc);
  }

  for (int r = 0; r < tile.rows; ++r) {
    float* dst = p.out + tile.token(r) * p.out_token_stride + tile.head(item, r) * p.out_head_stride;
    const float* o = sc.o.data() + static_cast<int64_t>(r) * sc.padded_dim;
    const float inv_sum = 1.0f / sc.row_sum[r];
    for (int d = 0; d < p.head_dim; ++d) dst[d] = o[d] * inv_sum;
  }
}

using AttendTileFn = void (*)(const PagedAttentionParams&, const AttentionWorkItem&, AttentionScratch&);

A1_TARGET_AVX512 inline void attend_tile_avx512(const PagedAttentionParams& p, const AttentionWorkItem& item,
                                                AttentionScratch& sc) {
  attend_tile<simd::f32x16>(p, item, sc);
}
A1_TARGET_AVX2 inline void attend_tile_avx2(const PagedAttentionParams& p, const AttentionWorkItem& item,
                                            AttentionScratch& sc) {
  attend_tile<simd::f32x8>(p, item, sc);
}
A1_TARGET_BASELINE inline void attend_tile_baseline(const PagedAttentionParams& p, const AttentionWorkItem& item,
                                                    AttentionScratch& sc) {
  attend_tile<simd::f32x4>(p, item, sc);
}

inline AttendTileFn select_attend_tile(simd::Isa isa) {
  switch (isa) {
    case simd::Isa::kAvx512: return attend_tile_avx512;
    case simd::Isa::kAvx2: return attend_tile_avx2;
    default: return attend_tile_baseline;
  }
}

}  // namespace a1::attention
