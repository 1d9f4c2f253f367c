// CPU glue of the paged KV cache ops a1::reshape_and_cache and a1::copy_blocks: argument checks,
// then the byte-moving kernels of cache/cache_kernels.h on at::parallel_for.
//
// reshape_and_cache: key/value [T, Hkv, D] may be strided (head_dim contiguous or not); their dtype
//   must equal the caches'. slot_mapping is int64 [T]; negative slots are skipped, the others must
//   be distinct and < num_blocks * block_size.
// copy_blocks: block_mapping int64 [P, 2] of (src, dst) applied to every cache of both lists.
//   Destinations must be distinct and must not be another pair's source (checked), so the result
//   never depends on the order of the pairs; a pair (b, b) copies nothing.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <vector>

#include "cache/cache_checks.h"
#include "cache/cache_kernels.h"

namespace a1 {
namespace {

constexpr int64_t kCopyGrainBytes = 1 << 20;  // below ~1 MB of copies a thread is not worth waking

cache::RowsToCache rows_to_cache(const at::Tensor& rows, const at::Tensor& cache) {
  const int64_t elem = rows.element_size();
  return {static_cast<const char*>(rows.data_ptr()), rows.stride(0) * elem, rows.stride(1) * elem,
          static_cast<char*>(cache.data_ptr()), cache.stride(0) * elem};
}

// const references like every a1 kernel (in-place outputs included): the dispatcher requires one C++
// signature across the CPU and CUDA kernels of an op, and decoder_layer calls it with that signature.
void reshape_and_cache_cpu(const at::Tensor& key_in, const at::Tensor& value_in, const at::Tensor& k_cache,
                           const at::Tensor& v_cache, const at::Tensor& slot_mapping_in) {
  check_reshape_and_cache_inputs(key_in, value_in, k_cache, v_cache, slot_mapping_in);
  TORCH_CHECK(k_cache.device().is_cpu(), "k_cache must be a CPU tensor for the CPU kernel, got ", k_cache.device());
  check_same_device(slot_mapping_in, "slot_mapping", k_cache, "k_cache");
  const int64_t num_tokens = key_in.size(0);
  const at::Tensor slot_mapping = slot_mapping_in.contiguous();
  const int64_t* slots = slot_mapping.data_ptr<int64_t>();
  check_slot_values(slots, num_tokens, k_cache);
  if (num_tokens == 0 || k_cache.numel() == 0) return;

  const at::Tensor key = key_in.stride(2) == 1 ? key_in : key_in.contiguous();
  const at::Tensor value = value_in.stride(2) == 1 ? value_in : value_in.contiguous();
  cache::CacheWriteParams params{rows_to_cache(key, k_cache), rows_to_cache(value, v_cache), slots,
                                 k_cache.size(1), k_cache.size(2), k_cache.size(3) * k_cache.element_size()};
  const int64_t token_bytes = 2 * params.num_kv_heads * params.row_bytes;
  at::parallel_for(0, num_tokens, std::max<int64_t>(1, kCopyGrainBytes / token_bytes),
                   [&](int64_t begin, int64_t end) { cache::write_tokens_to_cache(params, begin, end); });
}

void copy_blocks_cpu(at::TensorList k_caches, at::TensorList v_caches, const at::Tensor& block_mapping_in) {
  const int64_t num_blocks = check_copy_blocks_inputs(k_caches, v_caches, block_mapping_in);
  TORCH_CHECK(block_mapping_in.device().is_cpu(), "block_mapping must be a CPU tensor, got ",
              block_mapping_in.device());
  std::vector<at::Tensor> caches(k_caches.begin(), k_caches.end());
  caches.insert(caches.end(), v_caches.begin(), v_caches.end());
  if (caches.empty()) return;
  check_same_device(caches[0], "k_caches", block_mapping_in, "block_mapping");
  const at::Tensor block_mapping = block_mapping_in.contiguous();
  check_block_mapping_values(block_mapping.data_ptr<int64_t>(), block_mapping.size(0), num_blocks);
  const int64_t pairs = block_mapping.size(0);
  if (pairs == 0) return;

  const int64_t* ids = block_mapping.data_ptr<int64_t>();
  std::vector<cache::BlockCopyTarget> targets;
  for (const at::Tensor& c : caches)
    targets.push_back({static_cast<char*>(c.data_ptr()), c.stride(0) * c.element_size(),
                       c.size(1) * c.size(2) * c.size(3) * c.element_size()});
  // Work unit = (cache, pair); parallel only when the copies are large enough to pay for threads.
  const int64_t units = static_cast<int64_t>(targets.size()) * pairs;
  const int64_t grain = std::max<int64_t>(1, kCopyGrainBytes / std::max<int64_t>(1, targets[0].block_bytes));
  at::parallel_for(0, units, grain, [&](int64_t begin, int64_t end) {
    for (int64_t u = begin; u < end;) {
      const int64_t c = u / pairs, first = u % pairs, last = std::min(pairs, first + (end - u));
      cache::copy_block_pairs(targets[c], ids, first, last);
      u += last - first;
    }
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(a1, CPU, m) {
  m.impl("reshape_and_cache", &reshape_and_cache_cpu);
  m.impl("copy_blocks", &copy_blocks_cpu);
}

}  // namespace a1
