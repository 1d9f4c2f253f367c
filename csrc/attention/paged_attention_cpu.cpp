// CPU glue of a1::paged_attention: validates the arguments, fills PagedAttentionParams and runs the
// torch-free tile kernel (attention/paged_attention_kernels.h) on at::parallel_for workers that
// take work items longest-first from a shared counter.
//
// Dtypes: query, k_cache and v_cache may each be fp32/bf16/fp16 (k_cache and v_cache the same);
// the output has query's dtype, accumulation is fp32. The index tensors block_table, seq_lens and
// query_start_loc are int32 per the layout contract; int64 is accepted for all three as well.
// Block ids are checked for the blocks a row reads (rows with q_len 0 read none).
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <atomic>
#include <vector>

#include "attention/attention_checks.h"
#include "attention/paged_attention_kernels.h"

namespace a1 {
namespace {

// Below this many score entries (a batch-1 decode step over a short context: ~1000) the work
// takes a few microseconds, about what a fork/join of the thread pool costs, so it runs inline.
constexpr int64_t kInlineAttentionCost = 8192;

at::Tensor paged_attention_cpu(const at::Tensor& query_in, const at::Tensor& k_cache, const at::Tensor& v_cache,
                               const at::Tensor& block_table, const at::Tensor& seq_lens,
                               const at::Tensor& query_start_loc, double scale) {
  check_attention_inputs(query_in, k_cache, v_cache, block_table, seq_lens, query_start_loc, scale);
  for (const auto& [t, name] : {std::pair{&k_cache, "k_cache"}, {&v_cache, "v_cache"}, {&block_table, "block_table"},
                                {&seq_lens, "seq_lens"}, {&query_start_loc, "query_start_loc"}})
    check_same_device(*t, name, query_in, "query");
  TORCH_CHECK(query_in.device().is_cpu(), "query must be a CPU tensor for the CPU kernel, got ", query_in.device());
  const int64_t num_tokens = query_in.size(0), num_q_heads = query_in.size(1);
  const int64_t num_blocks = k_cache.size(0), block_size = k_cache.size(1);
  const int64_t num_kv_heads = k_cache.size(2), head_dim = k_cache.size(3);
  const int64_t batch = block_table.size(0);
  // Index tensors are read straight into vectors: a decode step calls this once per layer, and
  // converting them with torch ops cost ~15 us per call there (a third of the op).
  const AttentionIndexValues indices =
      check_attention_index_values(block_table, seq_lens, query_start_loc, num_tokens, block_size, num_blocks);
  const std::vector<int64_t>& offsets = indices.offsets;
  const std::vector<int64_t>& lens = indices.seq_lens;
  const at::Tensor table =
      block_table.scalar_type() == at::kInt ? block_table.contiguous() : block_table.to(at::kInt).contiguous();

  at::Tensor out = at::empty_like(query_in);  // the layout register_fake promises
  if (num_tokens == 0 || num_q_heads == 0 || head_dim == 0) return out;
  const at::Tensor query = query_in.stride(2) == 1 ? query_in : query_in.contiguous();
  const bool write_direct = out.scalar_type() == at::kFloat && out.stride(2) == 1;
  at::Tensor out_f32 = write_direct ? out : at::empty(query.sizes(), query.options().dtype(at::kFloat));

  attention::PagedAttentionParams params{};
  params.query = query.data_ptr();
  params.query_type = float_type_of(query);
  params.query_token_stride = query.stride(0);
  params.query_head_stride = query.stride(1);
  params.k_cache = k_cache.data_ptr();
  params.v_cache = v_cache.data_ptr();
  params.cache_type = float_type_of(k_cache);
  params.k_block_stride = k_cache.stride(0);
  params.v_block_stride = v_cache.stride(0);
  params.block_table = table.data_ptr<int32_t>();
  params.block_table_stride = table.size(1);
  params.seq_lens = lens.data();
  params.query_start_loc = offsets.data();
  params.batch = static_cast<int>(batch);
  params.num_q_heads = static_cast<int>(num_q_heads);
  params.num_kv_heads = static_cast<int>(num_kv_heads);
  params.head_dim = static_cast<int>(head_dim);
  params.block_size = static_cast<int>(block_size);
  params.scale = static_cast<float>(scale);
  params.out = out_f32.data_ptr<float>();
  params.out_token_stride = out_f32.stride(0);
  params.out_head_stride = out_f32.stride(1);

  const std::vector<attention::AttentionWorkItem> items = attention::plan_attention_work(params);
  const attention::AttendTileFn attend_tile = attention::select_attend_tile(simd::select_isa());
  const int tile_rows = attention::max_tile_rows(items, params.num_q_heads / params.num_kv_heads);
  // Workers take the items of all kv heads of a row together when there are enough items to keep
  // the threads balanced: a key's rows for the different heads share cache lines, and the ones the
  // hardware prefetches for one head then serve the next on the same core (batch 32 decode: ~15%).
  const int64_t workers = std::min<int64_t>(at::get_num_threads(), static_cast<int64_t>(items.size()));
  const size_t grab = static_cast<int64_t>(items.size()) >= 4 * workers * num_kv_heads ? num_kv_heads : 1;
  auto run_items = [&](std::atomic<size_t>& next_item) {
    attention::AttentionScratch scratch(tile_rows, params.head_dim);
    for (size_t i = next_item.fetch_add(grab); i < items.size(); i = next_item.fetch_add(grab))
      for (size_t j = i; j < std::min(items.size(), i + grab); ++j) attend_tile(params, items[j], scratch);
  };
  std::atomic<size_t> next_item{0};
  if (attention::total_cost(items) < kInlineAttentionCost) {
    run_items(next_item);
  } else {
    at::parallel_for(0, workers, 1, [&](int64_t, int64_t) { run_items(next_item); });
  }
  if (!write_direct) out.copy_(out_f32);
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(a1, CPU, m) { m.impl("paged_attention", &paged_attention_cpu); }

}  // namespace a1
