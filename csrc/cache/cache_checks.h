// Argument checks shared by the CPU and CUDA glue of reshape_and_cache and copy_blocks, so both
// devices accept and reject the same inputs with the same message naming the argument.
// Device-kind checks (which device each tensor may be on) stay in the glue.
#pragma once
#include <ATen/core/Tensor.h>

#include <algorithm>
#include <vector>

#include "common/checks.h"

namespace a1 {

namespace detail {

// key or value [T, Hkv, D] for a cache: its heads and head_dim, its dtype, its device.
inline void check_rows_for_cache(const at::Tensor& rows, const char* name, const at::Tensor& cache,
                                 const char* cache_name) {
  check_dim(rows, name, 3, "[num_tokens, num_kv_heads, head_dim]");
  check_same_device(rows, name, cache, cache_name);
  TORCH_CHECK(rows.size(1) == cache.size(2) && rows.size(2) == cache.size(3), name, " shape ", rows.sizes(),
              " must be [num_tokens, ", cache.size(2), ", ", cache.size(3), "] to match ", cache_name, " ",
              cache.sizes());
  TORCH_CHECK(rows.scalar_type() == cache.scalar_type(), name, " dtype ", rows.scalar_type(), " must equal ",
              cache_name, " dtype ", cache.scalar_type());
}

}  // namespace detail

// reshape_and_cache: paged caches of one float dtype and shape, key and value [T, Hkv, D] of the
// caches' dtype on their device, slot_mapping int64 [T].
inline void check_reshape_and_cache_inputs(const at::Tensor& key, const at::Tensor& value, const at::Tensor& k_cache,
                                           const at::Tensor& v_cache, const at::Tensor& slot_mapping) {
  check_paged_cache(k_cache, "k_cache");
  check_paged_cache(v_cache, "v_cache");
  check_same_device(v_cache, "v_cache", k_cache, "k_cache");
  TORCH_CHECK(v_cache.sizes() == k_cache.sizes(), "v_cache shape ", v_cache.sizes(), " must equal k_cache shape ",
              k_cache.sizes());
  check_float_dtype(k_cache, "k_cache");
  check_dtype(v_cache, "v_cache", k_cache.scalar_type());
  detail::check_rows_for_cache(key, "key", k_cache, "k_cache");
  detail::check_rows_for_cache(value, "value", v_cache, "v_cache");
  check_dim(slot_mapping, "slot_mapping", 1, "[num_tokens]");
  check_dtype(slot_mapping, "slot_mapping", at::kLong);
  check_size(value, "value", 0, key.size(0), "key.size(0) (num_tokens)");
  check_size(slot_mapping, "slot_mapping", 0, key.size(0), "key.size(0) (num_tokens)");
}

// Every slot below num_blocks * block_size (negative slots are padding, skipped), read on the host.
inline void check_slot_values(const int64_t* slots, int64_t num_tokens, const at::Tensor& k_cache) {
  const int64_t num_slots = k_cache.size(0) * k_cache.size(1);
  for (int64_t t = 0; t < num_tokens; ++t)
    TORCH_CHECK(slots[t] < num_slots, "slot_mapping[", t, "]=", slots[t], " is out of range for a cache of ",
                k_cache.size(0), " blocks of ", k_cache.size(1), " slots");
}

// copy_blocks: one cache per layer in each list, every cache paged (check_paged_cache) on the
// device of the first, block_mapping int64 [P, 2] of (src, dst). Returns the smallest number of
// blocks of any cache: the ids must be valid in every one.
inline int64_t check_copy_blocks_inputs(at::TensorList k_caches, at::TensorList v_caches,
                                        const at::Tensor& block_mapping) {
  TORCH_CHECK(k_caches.size() == v_caches.size(), "v_caches has ", v_caches.size(), " caches, k_caches has ",
              k_caches.size(), "; both lists need one cache per layer");
  check_dim(block_mapping, "block_mapping", 2, "[num_pairs, 2]");
  check_dtype(block_mapping, "block_mapping", at::kLong);
  TORCH_CHECK(block_mapping.size(1) == 2, "block_mapping must be [num_pairs, 2] (src, dst), got shape ",
              block_mapping.sizes());
  int64_t num_blocks = k_caches.empty() ? 0 : k_caches[0].size(0);
  for (const auto* list : {&k_caches, &v_caches}) {
    const char* name = list == &k_caches ? "k_caches" : "v_caches";
    for (const at::Tensor& cache : *list) {
      check_paged_cache(cache, name);
      check_same_device(cache, name, k_caches[0], "k_caches[0]");
      num_blocks = std::min(num_blocks, cache.size(0));
    }
  }
  return num_blocks;
}

// Block ids of every pair in [0, num_blocks); destinations distinct and never another pair's
// source (a pair (b, b) copies nothing). Pairs are copied concurrently (CPU threads, CUDA blocks),
// so a destination that is also read, or written twice, would tear the copy.
inline void check_block_mapping_values(const int64_t* ids, int64_t pairs, int64_t num_blocks) {
  for (int64_t i = 0; i < 2 * pairs; ++i)
    TORCH_CHECK(ids[i] >= 0 && ids[i] < num_blocks, "block_mapping[", i / 2, ", ", i % 2, "]=", ids[i],
                " is out of range for caches of ", num_blocks, " blocks");
  std::vector<int8_t> role(num_blocks, 0);  // 1 = source of a copying pair, 2 = destination
  for (int64_t i = 0; i < pairs; ++i)
    if (ids[2 * i] != ids[2 * i + 1]) role[ids[2 * i]] = 1;
  for (int64_t i = 0; i < pairs; ++i) {
    const int64_t src = ids[2 * i], dst = ids[2 * i + 1];
    if (src == dst) continue;  // copies nothing (the kernels skip it), so it cannot tear another pair
    TORCH_CHECK(role[dst] == 0, "block_mapping[", i, ", 1]=", dst,
                role[dst] == 1 ? " is also a source block" : " is a destination twice",
                "; destinations must be distinct and not sources");
    role[dst] = 2;
  }
}

}  // namespace a1
