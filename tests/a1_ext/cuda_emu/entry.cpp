// C entry points over the CUDA launchers for the CPU emulator (runtime.h): flat arguments that
// ctypes can pass (pointers from torch CPU tensors, integers, floats), workspaces from malloc, and
// the handful of CUDA runtime calls the launchers make, answered on the host.
#include <cstdlib>
#include <cstring>
#include <vector>

#include "attention/attention_cuda.h"
#include "cache/cache_cuda.h"
#include "norm/norm_cuda.h"
#include "pointwise/pointwise_cuda.h"
#include "quant/quant_cuda.h"
#include "sampling/sampling_cuda.h"
#include "score/score_cuda.h"

extern "C" {

cudaError_t cudaGetLastError(void) { return cudaSuccess; }
const char* cudaGetErrorString(cudaError_t) { return "emulated"; }
cudaError_t cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr, int) {
  *value = 2;  // a tiny "GPU": split and chunk heuristics take their small-machine branches
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* ptr, int value, size_t count, cudaStream_t) {
  std::memset(ptr, value, count);
  return cudaSuccess;
}

using a1::FloatType;

int emu_reshape_and_cache(const void* key, const void* value, int kind, const int64_t* key_strides,
                          const int64_t* value_strides, void* k_cache, void* v_cache, int cache_kind,
                          int64_t num_blocks, int64_t k_stride_block, int64_t v_stride_block, const int64_t* slots,
                          int64_t num_tokens, int64_t block_size, int64_t num_heads, int64_t head_dim) {
  const a1::cuda::TokenTensor k{key, FloatType(kind), key_strides[0], key_strides[1], key_strides[2]};
  const a1::cuda::TokenTensor v{value, FloatType(kind), value_strides[0], value_strides[1], value_strides[2]};
  const a1::cuda::CacheTensor kc{k_cache, FloatType(cache_kind), num_blocks, k_stride_block};
  const a1::cuda::CacheTensor vc{v_cache, FloatType(cache_kind), num_blocks, v_stride_block};
  return a1::cuda::launch_reshape_and_cache(k, v, kc, vc, slots, num_tokens, block_size, num_heads, head_dim, nullptr);
}

int emu_copy_blocks(void* const* caches, int64_t num_caches, int64_t num_blocks, int64_t stride_block_bytes,
                    int64_t block_bytes, const int64_t* mapping, int64_t num_pairs) {
  return a1::cuda::launch_copy_blocks(caches, num_caches, num_blocks, stride_block_bytes, block_bytes, mapping,
                                      num_pairs, nullptr);
}

// ints: [q_stride_token, q_stride_head, k_stride_block, v_stride_block, block_table_stride, max_blocks,
//        num_seqs, num_tokens, num_q_heads, num_kv_heads, head_dim, block_size]
int emu_paged_attention(const void* query, void* out, int kind, const void* k_cache, const void* v_cache,
                        const int32_t* block_table, const int32_t* seq_lens, const int32_t* query_start_loc,
                        const int64_t* ints, float scale) {
  a1::cuda::PagedAttentionArgs a{};
  a.query = query;
  a.q_stride_token = ints[0];
  a.q_stride_head = ints[1];
  a.out = out;
  a.kind = FloatType(kind);
  a.k_cache = k_cache;
  a.v_cache = v_cache;
  a.k_stride_block = ints[2];
  a.v_stride_block = ints[3];
  a.block_table = block_table;
  a.block_table_stride = ints[4];
  a.max_blocks = ints[5];
  a.seq_lens = seq_lens;
  a.query_start_loc = query_start_loc;
  a.num_seqs = ints[6];
  a.num_tokens = ints[7];
  a.num_q_heads = ints[8];
  a.num_kv_heads = ints[9];
  a.head_dim = ints[10];
  a.block_size = ints[11];
  a.scale = scale;
  const auto plan = a1::cuda::plan_paged_attention(a.num_tokens, a.num_q_heads, a.max_blocks * a.block_size);
  const int64_t partials = a.num_tokens * a.num_q_heads * plan.num_splits;
  std::vector<float> workspace(static_cast<size_t>(partials * (a.head_dim + 2) + 1));
  float* part_max = workspace.data();
  return a1::cuda::launch_paged_attention(a, plan, part_max, part_max + partials, part_max + 2 * partials, nullptr);
}

int64_t emu_paged_attention_splits(int64_t num_tokens, int64_t num_q_heads, int64_t max_kv_len) {
  return a1::cuda::plan_paged_attention(num_tokens, num_q_heads, max_kv_len).num_splits;
}

// x / out / residual: [num_rows, hidden] rows with the given row strides; residual null = rms_norm.
int emu_rms_norm(const void* x, int64_t x_stride, void* residual, int64_t residual_stride, const void* weight,
                 void* out, int64_t out_stride, int kind, int64_t num_rows, int64_t hidden, float eps) {
  const a1::cuda::NormRowsArgs args{x, x_stride, residual, residual_stride, weight, out, out_stride,
                                    FloatType(kind), num_rows, hidden, eps};
  return residual == nullptr ? a1::cuda::launch_rms_norm(args, nullptr)
                             : a1::cuda::launch_fused_add_rms_norm(args, nullptr);
}

int emu_silu_and_mul(const void* x, int64_t x_stride, void* out, int64_t out_stride, int kind, int64_t num_rows,
                     int64_t width) {
  return a1::cuda::launch_silu_and_mul(x, x_stride, out, out_stride, FloatType(kind), num_rows, width, nullptr);
}

// strides: [x_token, x_head, table_token]
int emu_rotary_embedding(void* x, int kind, const int64_t* strides, const void* cos, const void* sin,
                         int64_t num_tokens, int64_t num_heads, int64_t head_dim) {
  const a1::cuda::RotaryArgs args{x, strides[0], strides[1], cos, sin, strides[2], FloatType(kind),
                                  num_tokens, num_heads, head_dim};
  return a1::cuda::launch_rotary_embedding(args, nullptr);
}

int emu_step_score(const void* logits, int kind, int64_t row_stride, int64_t num_tokens, int64_t vocab,
                   float temperature, const int64_t* token_ids, const int64_t* cu_seqlens, int64_t num_segments,
                   float* token_logprob, float* step_nll) {
  const a1::cuda::ScoreOutputs out{token_ids, cu_seqlens, num_segments, token_logprob, step_nll};
  return a1::cuda::launch_step_score(logits, FloatType(kind), row_stride, num_tokens, vocab, temperature, out,
                                     nullptr);
}

int emu_linear_step_score(const void* hidden, const void* lm_head, int kind, int64_t hidden_stride,
                          int64_t lm_head_stride, int64_t num_tokens, int64_t hidden_size, int64_t vocab,
                          float temperature, int64_t chunk, const int64_t* token_ids, const int64_t* cu_seqlens,
                          int64_t num_segments, float* token_logprob, float* step_nll) {
  const a1::cuda::LinearScoreInputs in{hidden, lm_head, FloatType(kind), hidden_stride, lm_head_stride,
                                       num_tokens, hidden_size, vocab, temperature};
  const a1::cuda::ScoreOutputs out{token_ids, cu_seqlens, num_segments, token_logprob, step_nll};
  const int64_t per_launch = a1::cuda::linear_score_vocab_per_launch(num_tokens, vocab, chunk);
  std::vector<float> workspace(static_cast<size_t>(a1::cuda::linear_score_workspace_floats(num_tokens, per_launch) + 1));
  return a1::cuda::launch_linear_step_score(in, per_launch, workspace.data(), out, nullptr);
}

int emu_sample(const void* logits, int kind, int64_t row_stride, int64_t rows, int64_t vocab, const float* temperature,
               const int64_t* top_k, const float* top_p, const int64_t* seed, const int64_t* offset, int64_t* ids,
               float* logprob) {
  const a1::cuda::SamplingParams params{temperature, top_k, top_p, seed, offset};
  return a1::cuda::launch_sample(logits, FloatType(kind), row_stride, rows, vocab, params, ids, logprob, nullptr);
}

int emu_sampling_probs(const void* logits, int kind, int64_t row_stride, int64_t rows, int64_t vocab,
                       const float* temperature, const int64_t* top_k, const float* top_p, float* probs,
                       int64_t* status) {
  const a1::cuda::SamplingParams params{temperature, top_k, top_p, nullptr, nullptr};
  return a1::cuda::launch_sampling_probs(logits, FloatType(kind), row_stride, rows, vocab, params, probs, status,
                                         nullptr);
}

int emu_speculative_verify(const void* target, int target_kind, int64_t target_stride, const int64_t* drafts,
                           const int64_t* cu_num_draft, const void* draft_probs, int draft_kind, int64_t draft_stride,
                           int64_t batch, int64_t rows, int64_t vocab, const float* temperature, const int64_t* top_k,
                           const float* top_p, const int64_t* seed, const int64_t* offset, int64_t* out_ids,
                           int64_t width, int64_t* num_accepted, float* target_logprob) {
  const a1::cuda::VerifyInputs in{target,       FloatType(target_kind), target_stride, drafts, cu_num_draft,
                                  draft_probs,  FloatType(draft_kind),  draft_stride,  batch,  rows,
                                  vocab};
  const a1::cuda::SamplingParams params{temperature, top_k, top_p, seed, offset};
  const a1::cuda::VerifyOutputs out{out_ids, width, num_accepted, target_logprob};
  std::vector<unsigned char> workspace(static_cast<size_t>(a1::cuda::verify_workspace_bytes(rows) + 8));
  return a1::cuda::launch_speculative_verify(in, params, workspace.data(), out, nullptr);
}

// weight: GGUF blocks [rows, in_features / block_size, block_bytes] of format `format` (GGML type id).
int emu_dequantize(const uint8_t* weight, int64_t rows, int64_t in_features, int64_t row_bytes, int format,
                   const int64_t* picked, int64_t row_begin, int64_t count, float* out) {
  const a1::cuda::QuantWeight w{weight, row_bytes, rows, in_features, a1::quant::Format(format)};
  return a1::cuda::launch_dequantize(w, picked, row_begin, count, out, nullptr);
}

int emu_quant_gemv(const uint8_t* weight, int64_t rows, int64_t in_features, int64_t row_bytes, int format,
                   const float* x, int64_t x_stride, int64_t tokens, const float* bias, float* out) {
  const a1::cuda::QuantWeight w{weight, row_bytes, rows, in_features, a1::quant::Format(format)};
  return a1::cuda::launch_quant_gemv(w, x, x_stride, tokens, bias, out, nullptr);
}

int emu_round_activations(const float* x, int64_t x_stride, int64_t tokens, int64_t in_features, float* out) {
  return a1::cuda::launch_round_activations(x, x_stride, tokens, in_features, out, nullptr);
}

int64_t emu_quant_gemv_max_tokens() { return a1::cuda::kQuantGemvMaxTokens; }

}  // extern "C"
