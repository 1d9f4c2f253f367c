// Launcher of the paged-attention kernel (csrc/attention/paged_attention.cu). Torch-free: the
// glue in attention_cuda.cpp passes raw pointers, strides, dtype tags and a stream.
#pragma once
#include <cstdint>

#include "common/cuda_dtype.h"

namespace a1::cuda {

struct PagedAttentionArgs {
  // query [T, Hq, D], last dim contiguous; out [T, Hq, D] contiguous, same dtype.
  const void* query;
  int64_t q_stride_token, q_stride_head;
  void* out;
  FloatType kind;  // query, caches and out share it
  // caches [num_blocks, block_size, Hkv, D]: inner [block_size, Hkv, D] contiguous.
  const void* k_cache;
  const void* v_cache;
  int64_t k_stride_block, v_stride_block;
  // block_table int32 [B, max_blocks] (row stride given); seq_lens int32 [B];
  // query_start_loc int32 [B+1]. All on the device.
  const int32_t* block_table;
  int64_t block_table_stride, max_blocks;
  const int32_t* seq_lens;
  const int32_t* query_start_loc;
  int64_t num_seqs, num_tokens, num_q_heads, num_kv_heads, head_dim, block_size;
  float scale;
};

// How the KV range of each (token, head) is split across CTAs (flash-decoding). With more than
// one split the caller provides float workspaces of num_tokens * num_q_heads * num_splits
// entries (max, sum) and that times head_dim (partial outputs).
struct AttentionSplitPlan {
  int64_t num_splits;
  int64_t partition;  // keys per split, a multiple of 128
};

// Chosen from the grid size and the longest possible KV length (max_blocks * block_size, an upper
// bound known on the host: reading seq_lens would need a host sync).
AttentionSplitPlan plan_paged_attention(int64_t num_tokens, int64_t num_q_heads, int64_t max_kv_len);

// Largest head_dim the kernel supports.
constexpr int64_t kMaxAttentionHeadDim = 256;

LaunchStatus launch_paged_attention(const PagedAttentionArgs& args, AttentionSplitPlan plan, float* partial_max,
                                    float* partial_sum, float* partial_out, cudaStream_t stream);

}  // namespace a1::cuda
