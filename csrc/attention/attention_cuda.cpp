// CUDA glue of paged_attention: the argument checks shared with the CPU glue
// (attention/attention_checks.h), device guard, current stream, the split-KV workspace, then the
// torch-free launcher of csrc/attention/paged_attention.cu. No host sync: the split plan uses the
// block table's capacity, not seq_lens.
#include <torch/library.h>

#include "attention/attention_checks.h"
#include "attention/attention_cuda.h"
#include "common/cuda_glue.h"

namespace a1 {
namespace {

at::Tensor paged_attention_cuda(const at::Tensor& query_in, const at::Tensor& k_cache, const at::Tensor& v_cache,
                                const at::Tensor& block_table_in, const at::Tensor& seq_lens_in,
                                const at::Tensor& query_start_loc_in, double scale) {
  check_attention_inputs(query_in, k_cache, v_cache, block_table_in, seq_lens_in, query_start_loc_in, scale);
  const auto device = query_in.device();
  TORCH_CHECK(device.is_cuda(), "query must be a CUDA tensor, got ", device);
  check_on_device(k_cache, "k_cache", device);
  check_on_device(v_cache, "v_cache", device);
  const int64_t num_tokens = query_in.size(0), num_q_heads = query_in.size(1), head_dim = query_in.size(2);
  const int64_t block_size = k_cache.size(1), num_kv_heads = k_cache.size(2);
  TORCH_CHECK(head_dim <= cuda::kMaxAttentionHeadDim, "query head_dim must be <= ", cuda::kMaxAttentionHeadDim,
              " on CUDA, got ", head_dim);
  const int64_t batch = block_table_in.size(0);
  // Index values given on the CPU are validated like the CPU kernel's (free: no device read);
  // on the device they are not (a host read per layer per step), and the kernel clamps them.
  if (block_table_in.device().is_cpu() && seq_lens_in.device().is_cpu() && query_start_loc_in.device().is_cpu()) {
    check_attention_index_values(block_table_in, seq_lens_in, query_start_loc_in, num_tokens, block_size,
                                 k_cache.size(0));
  }

  // Index tensors: int32 on the device (converted when given as int64 or on the CPU).
  const at::Tensor block_table = to_device(block_table_in, "block_table", device, at::kInt);
  const at::Tensor seq_lens = to_device(seq_lens_in, "seq_lens", device, at::kInt);
  const at::Tensor query_start_loc = to_device(query_start_loc_in, "query_start_loc", device, at::kInt);
  // The kernel reads query, caches and output in one dtype: a query of another dtype (the CPU
  // kernel takes it as is) is rounded to the caches' dtype, and the output comes back in query's.
  const auto cache_dtype = k_cache.scalar_type();
  const auto kind = checked_float_type(k_cache, "k_cache");
  const at::Tensor query_cast = query_in.scalar_type() == cache_dtype ? query_in : query_in.to(cache_dtype);
  const at::Tensor query = query_cast.stride(2) == 1 ? query_cast : query_cast.contiguous();
  at::Tensor out = query.new_empty({num_tokens, num_q_heads, head_dim}, query.options());

  cuda::PagedAttentionArgs args{};
  args.query = query.data_ptr();
  args.q_stride_token = query.stride(0);
  args.q_stride_head = query.stride(1);
  args.out = out.data_ptr();
  args.kind = kind;
  args.k_cache = k_cache.data_ptr();
  args.v_cache = v_cache.data_ptr();
  args.k_stride_block = k_cache.stride(0);
  args.v_stride_block = v_cache.stride(0);
  args.block_table = block_table.data_ptr<int32_t>();
  args.block_table_stride = block_table.stride(0);
  args.max_blocks = block_table.size(1);
  args.seq_lens = seq_lens.data_ptr<int32_t>();
  args.query_start_loc = query_start_loc.data_ptr<int32_t>();
  args.num_seqs = batch;
  args.num_tokens = num_tokens;
  args.num_q_heads = num_q_heads;
  args.num_kv_heads = num_kv_heads;
  args.head_dim = head_dim;
  args.block_size = block_size;
  args.scale = static_cast<float>(scale);

  c10::cuda::CUDAGuard guard(device);
  const auto plan = cuda::plan_paged_attention(num_tokens, num_q_heads, block_table.size(1) * block_size);
  at::Tensor workspace;
  float *part_max = nullptr, *part_sum = nullptr, *part_out = nullptr;
  if (plan.num_splits > 1 && num_tokens > 0) {
    const int64_t partials = num_tokens * num_q_heads * plan.num_splits;
    workspace = query.new_empty({partials * (head_dim + 2)}, query.options().dtype(at::kFloat));
    part_max = workspace.data_ptr<float>();
    part_sum = part_max + partials;
    part_out = part_sum + partials;
  }
  check_launch(cuda::launch_paged_attention(args, plan, part_max, part_sum, part_out, current_stream()),
               "paged_attention");
  return out.scalar_type() == query_in.scalar_type() ? out : out.to(query_in.scalar_type());
}

}  // namespace
}  // namespace a1

TORCH_LIBRARY_IMPL(a1, CUDA, m) { m.impl("paged_attention", &a1::paged_attention_cuda); }
