// a1::decoder_layer: one Llama/Qwen2 decoder layer over the paged KV cache as a single op that
// calls the other a1 ops through the dispatcher, so the same code runs the CPU and the CUDA
// kernels. Why an op: a batch-1 decode step is ~10 small ops per layer between weight matmuls;
// from Python each costs an interpreter round trip and a trip through torch's op wrappers, and
// after every matmul has streamed megabytes of weights through the caches that code runs cold
// (~4 ms of a 30 ms step on the benchmark machine). From C++ the same sequence is a few
// dispatcher calls. Each projection may be float (a1::linear) or GGUF blocks (a1::quant_linear).
// The pure-torch spec of the layer is reference.decoder_layer.
#include <ATen/core/Tensor.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <optional>
#include <utility>

#include "common/checks.h"
#include "linear/linear_checks.h"
#include "quant/quant_checks.h"

namespace a1 {
namespace {

using OptionalTensor = std::optional<at::Tensor>;

// Typed handles of the a1 ops the layer calls, looked up once.
struct LayerOps {
  c10::TypedOperatorHandle<void(const at::Tensor&, const at::Tensor&, const at::Tensor&, double)> fused_add_rms_norm;
  c10::TypedOperatorHandle<at::Tensor(const at::Tensor&, const at::Tensor&, const OptionalTensor&)> linear;
  c10::TypedOperatorHandle<void(const at::Tensor&, const at::Tensor&, const at::Tensor&)> rotary_embedding;
  c10::TypedOperatorHandle<void(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                const at::Tensor&)>
      reshape_and_cache;
  c10::TypedOperatorHandle<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                      const at::Tensor&, const at::Tensor&, double)>
      paged_attention;
  c10::TypedOperatorHandle<at::Tensor(const at::Tensor&)> silu_and_mul;
  c10::TypedOperatorHandle<at::Tensor(const at::Tensor&, const at::Tensor&, const OptionalTensor&)> quant_linear;

  // x @ weight^T (+ bias): a1::quant_linear for GGUF blocks (uint8), a1::linear for float weights.
  at::Tensor project(const at::Tensor& x, const at::Tensor& weight, const OptionalTensor& bias) const {
    return is_quantized_weight(weight) ? quant_linear.call(x, weight, bias) : linear.call(x, weight, bias);
  }

  static const LayerOps& get() {
    static const LayerOps ops = [] {
      auto& dispatcher = c10::Dispatcher::singleton();
      auto find = [&](const char* name) { return dispatcher.findSchemaOrThrow(name, ""); };
      return LayerOps{
          find("a1::fused_add_rms_norm").typed<void(const at::Tensor&, const at::Tensor&, const at::Tensor&, double)>(),
          find("a1::linear").typed<at::Tensor(const at::Tensor&, const at::Tensor&, const OptionalTensor&)>(),
          find("a1::rotary_embedding").typed<void(const at::Tensor&, const at::Tensor&, const at::Tensor&)>(),
          find("a1::reshape_and_cache")
              .typed<void(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                          const at::Tensor&)>(),
          find("a1::paged_attention")
              .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                const at::Tensor&, const at::Tensor&, double)>(),
          find("a1::silu_and_mul").typed<at::Tensor(const at::Tensor&)>(),
          find("a1::quant_linear").typed<at::Tensor(const at::Tensor&, const at::Tensor&, const OptionalTensor&)>(),
      };
    }();
    return ops;
  }
};

// The MLP's [T, 2F] and [T, F] intermediates are a prefill's largest buffers (52 MiB for 512 tokens
// of a 1.5B model, more than its KV cache): above kMlpSliceBytes they are made a slice of token rows
// at a time, which keeps them a few MiB (and in cache). The slices are balanced, so every slice runs
// the many-row kernels (each row computed as it would be unsliced) and weights are read a few more
// times, which costs a prefill little.
constexpr int64_t kMlpSliceBytes = int64_t{8} << 20;
constexpr int64_t kMinSliceRows = 64;

at::Tensor mlp(const LayerOps& ops, const at::Tensor& x, const at::Tensor& gate_up_weight,
               const OptionalTensor& gate_up_bias, const at::Tensor& down_weight, const OptionalTensor& down_bias) {
  const int64_t tokens = x.size(0);
  const int64_t row_bytes = linear_out_features(gate_up_weight) * static_cast<int64_t>(x.element_size());
  const int64_t slices = std::max<int64_t>(1, std::min(tokens * row_bytes / kMlpSliceBytes, tokens / kMinSliceRows));
  auto run = [&](const at::Tensor& rows) {
    return ops.project(ops.silu_and_mul.call(ops.project(rows, gate_up_weight, gate_up_bias)), down_weight, down_bias);
  };
  if (slices == 1) return run(x);
  const int64_t rows = (tokens + slices - 1) / slices;
  at::Tensor out = at::empty({tokens, linear_out_features(down_weight)}, x.options());
  for (int64_t start = 0; start < tokens; start += rows) {
    const int64_t count = std::min(rows, tokens - start);
    out.narrow(0, start, count).copy_(run(x.narrow(0, start, count)));
  }
  return out;
}

at::Tensor decoder_layer(const at::Tensor& residual, const at::Tensor& hidden, const at::Tensor& input_norm_weight,
                         const at::Tensor& qkv_weight, const OptionalTensor& qkv_bias, const at::Tensor& o_weight,
                         const OptionalTensor& o_bias, const at::Tensor& post_norm_weight,
                         const at::Tensor& gate_up_weight, const OptionalTensor& gate_up_bias,
                         const at::Tensor& down_weight, const OptionalTensor& down_bias, const at::Tensor& cos,
                         const at::Tensor& sin, const at::Tensor& k_cache, const at::Tensor& v_cache,
                         const at::Tensor& slot_mapping, const at::Tensor& block_table, const at::Tensor& seq_lens,
                         const at::Tensor& query_start_loc, double eps, double scale) {
  check_dim(hidden, "hidden", 2, "[T, H]");
  check_paged_cache(k_cache, "k_cache");
  // N = (num_heads + 2 * num_kv_heads) * head_dim
  if (is_quantized_weight(qkv_weight)) {
    check_quant_weight(qkv_weight, "qkv_weight");
  } else {
    check_linear_weight_layout(qkv_weight, "qkv_weight");
  }
  const int64_t tokens = hidden.size(0), num_kv_heads = k_cache.size(2), head_dim = k_cache.size(3);
  const int64_t qkv_width = linear_out_features(qkv_weight);
  TORCH_CHECK(head_dim > 0 && qkv_width % head_dim == 0, "qkv_weight's N (", qkv_width,
              ") must be a multiple of k_cache.size(3) (head_dim=", head_dim, ")");
  const int64_t num_heads = qkv_width / head_dim - 2 * num_kv_heads;
  TORCH_CHECK(num_heads > 0, "qkv_weight's N (", qkv_width, ") must hold more than the 2 * ", num_kv_heads,
              " k/v heads of head_dim ", head_dim, " that k_cache gives");
  const LayerOps& ops = LayerOps::get();

  ops.fused_add_rms_norm.call(hidden, residual, input_norm_weight, eps);  // residual += hidden; hidden = norm
  const at::Tensor qkv =
      ops.project(hidden, qkv_weight, qkv_bias).view({tokens, num_heads + 2 * num_kv_heads, head_dim});
  ops.rotary_embedding.call(qkv.narrow(1, 0, num_heads + num_kv_heads), cos, sin);  // q and k heads, in place
  const at::Tensor query = qkv.narrow(1, 0, num_heads);
  const at::Tensor key = qkv.narrow(1, num_heads, num_kv_heads);
  const at::Tensor value = qkv.narrow(1, num_heads + num_kv_heads, num_kv_heads);
  ops.reshape_and_cache.call(key, value, k_cache, v_cache, slot_mapping);
  const at::Tensor attention =
      ops.paged_attention.call(query, k_cache, v_cache, block_table, seq_lens, query_start_loc, scale);
  const at::Tensor projected = ops.project(attention.view({tokens, num_heads * head_dim}), o_weight, o_bias);
  ops.fused_add_rms_norm.call(projected, residual, post_norm_weight, eps);  // residual += attention; normalized
  return mlp(ops, projected, gate_up_weight, gate_up_bias, down_weight, down_bias);
}

using OptionalTensorList = c10::List<std::optional<at::Tensor>>;

at::Tensor decoder_layers(const at::Tensor& residual, const at::Tensor& hidden, at::TensorList input_norm_weight,
                          at::TensorList qkv_weight, const OptionalTensorList& qkv_bias, at::TensorList o_weight,
                          const OptionalTensorList& o_bias, at::TensorList post_norm_weight,
                          at::TensorList gate_up_weight, const OptionalTensorList& gate_up_bias,
                          at::TensorList down_weight, const OptionalTensorList& down_bias, const at::Tensor& cos,
                          const at::Tensor& sin, at::TensorList k_caches, at::TensorList v_caches,
                          const at::Tensor& slot_mapping, const at::Tensor& block_table, const at::Tensor& seq_lens,
                          const at::Tensor& query_start_loc, double eps, double scale) {
  const size_t layers = input_norm_weight.size();
  TORCH_CHECK(layers > 0, "decoder_layers needs at least one layer, got empty input_norm_weight");
  const std::pair<const char*, size_t> lengths[] = {
      {"qkv_weight", qkv_weight.size()},         {"qkv_bias", qkv_bias.size()},
      {"o_weight", o_weight.size()},             {"o_bias", o_bias.size()},
      {"post_norm_weight", post_norm_weight.size()}, {"gate_up_weight", gate_up_weight.size()},
      {"gate_up_bias", gate_up_bias.size()},     {"down_weight", down_weight.size()},
      {"down_bias", down_bias.size()},           {"k_caches", k_caches.size()},
      {"v_caches", v_caches.size()}};
  for (const auto& [name, length] : lengths)
    TORCH_CHECK(length == layers, name, " must have one entry per layer (", layers, ", the length of input_norm_weight), got ",
                length);
  at::Tensor out = hidden;
  for (size_t i = 0; i < layers; ++i) {
    out = decoder_layer(residual, out, input_norm_weight[i], qkv_weight[i], qkv_bias.get(i), o_weight[i], o_bias.get(i),
                        post_norm_weight[i], gate_up_weight[i], gate_up_bias.get(i), down_weight[i], down_bias.get(i),
                        cos, sin, k_caches[i], v_caches[i], slot_mapping, block_table, seq_lens, query_start_loc, eps,
                        scale);
  }
  return out;
}

}  // namespace

// The same composition on either device: every step dispatches to that device's kernels.
TORCH_LIBRARY_IMPL(a1, CPU, m) {
  m.impl("decoder_layer", &decoder_layer);
  m.impl("decoder_layers", &decoder_layers);
}
TORCH_LIBRARY_IMPL(a1, CUDA, m) {
  m.impl("decoder_layer", &decoder_layer);
  m.impl("decoder_layers", &decoder_layers);
}

}  // namespace a1
