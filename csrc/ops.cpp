// The one place where the a1 op schemas are declared. CPU and CUDA implementations register
// themselves with TORCH_LIBRARY_IMPL(a1, CPU|CUDA, m) in csrc/<family>/.
#include <torch/library.h>

TORCH_LIBRARY(a1, m) {
  // KV cache: key/value [T, Hkv, D] -> caches [num_blocks, block_size, Hkv, D] at slot_mapping[T]
  // (slot = block * block_size + offset, negative = skip).
  m.def("reshape_and_cache(Tensor key, Tensor value, Tensor(a!) k_cache, Tensor(b!) v_cache, "
        "Tensor slot_mapping) -> ()");
  // Causal attention of ragged queries [T, Hq, D] over paged KV; row b owns queries
  // query_start_loc[b]:query_start_loc[b+1], which are its last positions of seq_lens[b].
  m.def("paged_attention(Tensor query, Tensor k_cache, Tensor v_cache, Tensor block_table, "
        "Tensor seq_lens, Tensor query_start_loc, float scale) -> Tensor");
  // Copy whole blocks src -> dst in every layer's caches (copy-on-write for forks).
  m.def("copy_blocks(Tensor(a!)[] k_caches, Tensor(b!)[] v_caches, Tensor block_mapping) -> ()");
  // Per-token log-prob of token_ids under softmax(logits / temperature) and the mean NLL of each
  // segment of cu_seqlens (NaN for an empty segment).
  m.def("step_score(Tensor logits, Tensor token_ids, Tensor cu_seqlens, float temperature) "
        "-> (Tensor token_logprob, Tensor step_nll)");
  // Same as step_score on logits = hidden @ lm_head.T, computed `chunk` vocab rows at a time.
  m.def("linear_step_score(Tensor hidden, Tensor lm_head, Tensor token_ids, Tensor cu_seqlens, "
        "float temperature, int chunk) -> (Tensor token_logprob, Tensor step_nll)");
  // Speculative verification of ragged drafts (cu_num_draft[B+1]) against target_logits
  // [sum(k_b + 1), V]; per-request temperature/top_k/top_p/seed/offset.
  m.def("speculative_verify(Tensor target_logits, Tensor draft_token_ids, Tensor cu_num_draft, "
        "Tensor? draft_probs, Tensor temperature, Tensor top_k, Tensor top_p, Tensor seed, "
        "Tensor offset) -> (Tensor out_ids, Tensor num_accepted, Tensor target_logprob)");
  // One token per row of logits [B, V]; per-row temperature (0 = greedy), top_k (0 = off),
  // top_p (1 = off), seed and offset.
  m.def("sample(Tensor logits, Tensor temperature, Tensor top_k, Tensor top_p, Tensor seed, "
        "Tensor offset) -> (Tensor token_ids, Tensor logprob)");
  // The distribution `sample` draws row b of logits [B, V] from, as float32 [B, V]: softmax of the
  // temperature / top-k / top-p filtered row (the same filter code), one-hot on the first argmax
  // for greedy rows (and rows the filter leaves empty). Speculative decoding's draft q rows.
  m.def("sampling_probs(Tensor logits, Tensor temperature, Tensor top_k, Tensor top_p) -> Tensor");
  // RMSNorm of x [T, H] in transformers' order: weight * to_dtype(x_f32 * rsqrt(mean(x_f32^2) + eps)).
  m.def("rms_norm(Tensor x, Tensor weight, float eps) -> Tensor");
  // In place, vLLM's fused residual step: residual += x (rounded to the dtype), then
  // x = rms_norm(residual, weight, eps).
  m.def("fused_add_rms_norm(Tensor(a!) x, Tensor(b!) residual, Tensor weight, float eps) -> ()");
  // SwiGLU gate: x [T, 2I] -> silu(x[:, :I]) * x[:, I:] (silu rounded to the dtype first).
  m.def("silu_and_mul(Tensor x) -> Tensor");
  // RoPE in place: x [T, H, D] = x * cos + rotate_half(x) * sin with per-token cos, sin [T, D] (sin
  // pre-signed: -sin on the first half); x * cos is rounded to the dtype before the add.
  m.def("rotary_embedding(Tensor(a!) x, Tensor cos, Tensor sin) -> ()");
  // out [T, N] = x [T, K] @ weight [N, K]^T (+ bias [N]), F.linear's contract for 2-D x; weight may
  // also be the same matrix as panels [N / 16, K, 16] (panels[p, k, i] = W[16 p + i, k]). On the CPU,
  // fp32 panels run a1's packed kernel, fp32 / bf16 / fp16 [N, K] with few rows (decode) stream the
  // weights once (16-bit ones summed in fp32), others go to BLAS.
  m.def("linear(Tensor x, Tensor weight, Tensor? bias=None) -> Tensor");
  // GGUF block formats (quant/quant_formats.h): a quantized weight W [N, K] is uint8
  // [N, K / block_size, block_bytes], each row its GGUF blocks unchanged; block_bytes names the
  // format (Q4_0 18, Q4_1 20, Q8_0 34, Q4_K 144, Q5_K 176, Q6_K 210). dequantize returns float32
  // [N, K], or [R, K] for the rows `rows` [R] (an embedding lookup), exactly as gguf.quants does.
  m.def("dequantize(Tensor weight, Tensor? rows=None) -> Tensor");
  // out [T, N] = x [T, K] @ W^T (+ bias [N]), x and bias float32, W quantized as above.
  m.def("quant_linear(Tensor x, Tensor weight, Tensor? bias=None) -> Tensor");
  // One Llama/Qwen2 decoder layer on the ops above (vLLM's residual layout): residual += hidden,
  // then attention and the SwiGLU MLP on the normalized stream; returns the MLP output [T, H], whose
  // add into residual is left to the next layer's norm. residual is updated and hidden overwritten
  // (with the normalized input) in place; K/V of the T tokens are written into the caches.
  m.def("decoder_layer(Tensor(a!) residual, Tensor(b!) hidden, Tensor input_norm_weight, Tensor qkv_weight, "
        "Tensor? qkv_bias, Tensor o_weight, Tensor? o_bias, Tensor post_norm_weight, Tensor gate_up_weight, "
        "Tensor? gate_up_bias, Tensor down_weight, Tensor? down_bias, Tensor cos, Tensor sin, Tensor(c!) k_cache, "
        "Tensor(d!) v_cache, Tensor slot_mapping, Tensor block_table, Tensor seq_lens, Tensor query_start_loc, "
        "float eps, float scale) -> Tensor");
  // decoder_layer over L layers in one call, layer i taking element i of every list and the previous
  // layer's output as its hidden; returns the last layer's MLP output. Saves a decode step L trips
  // through Python (~25 us each).
  m.def("decoder_layers(Tensor(a!) residual, Tensor(b!) hidden, Tensor[] input_norm_weight, Tensor[] qkv_weight, "
        "Tensor?[] qkv_bias, Tensor[] o_weight, Tensor?[] o_bias, Tensor[] post_norm_weight, Tensor[] gate_up_weight, "
        "Tensor?[] gate_up_bias, Tensor[] down_weight, Tensor?[] down_bias, Tensor cos, Tensor sin, "
        "Tensor(c!)[] k_caches, Tensor(d!)[] v_caches, Tensor slot_mapping, Tensor block_table, Tensor seq_lens, "
        "Tensor query_start_loc, float eps, float scale) -> Tensor");
}
