// CPU glue of the quantized ops. a1::dequantize decodes whole rows exactly (the embedding lookup
// reads only the rows it needs). a1::quant_linear multiplies 8-bit rounded activations by GGUF
// blocks without widening them (quant/quant_activations.h says why and how x is rounded):
//   - up to kInt8MaxTokens token rows with AVX2: integer dot products on the rounded bytes
//     (quant/quant_int8_kernels.h; with VNNI, Q4_0 / Q4_1 / Q8_0 run quant/quant_int8_pairs.h);
//   - more rows with VNNI, for Q4_0 / Q4_1 / Q8_0: 16-row int8 panels decoded once per thread and
//     multiplied by every token row (quant/quant_int8_panels.h);
//   - weights stored as packed panels (quant/quant_panel_layout.h), any number of rows: the int8
//     panel kernel reads them as they are (the batch-1 decode's fastest path);
//   - otherwise the fp32 kernels multiply the rounded values q * d: up to kGemvMaxTokens rows decode
//     each block in registers (quant/quant_gemv_kernels.h), more rows decode 16-row fp32 panels for
//     the packed kernel (quant/quant_gemm_kernels.h).
// Each picks AVX-512, AVX2 or baseline code at run time.
#include <ATen/Parallel.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <memory>
#include <vector>

#include "common/parallel_rows.h"
#include "quant/quant_checks.h"
#include "quant/quant_cpu.h"
#include "quant/quant_activations.h"
#include "quant/quant_amx_panels.h"
#include "quant/quant_gemm_kernels.h"
#include "quant/quant_int8_kernels.h"
#include "quant/quant_int8_panels.h"

namespace a1 {
namespace {

// Token rows up to which the in-register decode path beats decoding panels for the packed kernel
// (measured on the benchmark machine, SmolLM2-135M's shapes, by timing quant_linear at 1-32 rows).
constexpr int64_t kGemvMaxTokens = 8;
// Token rows up to which the integer decode kernels beat the int8 panels (measured likewise: the
// panels' decoding pays for itself from ~5 rows).
constexpr int64_t kInt8MaxTokens = 4;

// row_bytes: the bytes of one weight row, or of one panel when the weight is packed panels.
quant::QuantGemmParams gemm_params(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                                   at::Tensor& out, quant::Format format) {
  return {x.data_ptr<float>(),
          x.stride(0),
          weight.data_ptr<uint8_t>(),
          weight.numel() / std::max<int64_t>(1, weight.size(0)),
          bias.defined() ? bias.data_ptr<float>() : nullptr,
          out.data_ptr<float>(),
          x.size(0),
          quant_out_features(weight),
          x.size(1),
          format};
}

// Packed panels [P, G, 16, B] back to GGUF blocks [16 P, G, B] (the inverse of
// a1_ext.quant_panels.pack_panels): for a CPU without the panel kernels (the weight was packed
// on another, or A1_CPU_ISA caps this one), which then runs the GGUF paths on the same blocks.
at::Tensor unpack_panels(const at::Tensor& panels, quant::Format format) {
  const int64_t P = panels.size(0), G = panels.size(1), R = panels.size(2), B = panels.size(3);
  const int64_t header = quant::panel_header_bytes(format), dwords = (R * B - header) / (4 * R);
  const at::Tensor flat = panels.view({P, G, R * B});
  const at::Tensor fields =  // [P, G, scale (and min), row, 2 bytes] -> [P, row, G, 2 or 4 bytes]
      flat.narrow(2, 0, header).view({P, G, header / (2 * R), R, 2}).permute({0, 3, 1, 2, 4}).reshape({P, R, G, header / R});
  const at::Tensor quants =  // [P, G, dword, row, 4 bytes] -> [P, row, G, quant bytes]
      flat.narrow(2, header, R * B - header).view({P, G, dwords, R, 4}).permute({0, 3, 1, 2, 4}).reshape({P, R, G, 4 * dwords});
  return at::cat({fields, quants}, 3).reshape({P * R, G, B});
}

// Weight rows [n_begin, n_end) for every token row, by the in-register decode kernel.
void gemv_rows(const quant::QuantGemmParams& p, int64_t n_begin, int64_t n_end, simd::Isa isa) {
  const quant::QuantGemvRowsFn rows_fn = quant::select_quant_gemv_rows(isa);
  const int64_t align = quant::kQuantRowAlignment;
  const int64_t units = (n_end - n_begin + align - 1) / align;
  for_each_weight_range(units, align * p.in_features, [&](int64_t begin, int64_t end) {
    rows_fn(p, n_begin + begin * align, std::min(n_end, n_begin + end * align));
  });
}

// Every token row of x rounded to 8 bits: into Q8 rows (`q8`, for an integer kernel, laid out as
// `layout` says) or into floats q * d (`rounded` [T, K]).
void round_rows(const at::Tensor& x, uint8_t* q8, quant::Q8Layout layout, float* rounded, simd::Isa isa) {
  const int64_t T = x.size(0), K = x.size(1), row_bytes = quant::q8_row_bytes(K);
  const quant::RoundRowFn fn = quant::select_round_row(isa);
  const float* data = x.data_ptr<float>();
  at::parallel_for(0, T, std::max<int64_t>(1, 65536 / std::max<int64_t>(K, 1)), [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const quant::Q8Row row = q8 != nullptr ? quant::q8_row_at(q8 + t * row_bytes, K) : quant::Q8Row{};
      fn(data + t * x.stride(0), K, row, layout, rounded != nullptr ? rounded + t * K : nullptr);
    }
  });
}

// x's token rows rounded for the integer kernels (64-byte aligned: the kernels' aligned loads).
struct RoundedRows {
  at::Tensor storage;
  std::vector<quant::Q8Row> rows;
};

RoundedRows round_for_int8(const at::Tensor& x, quant::Q8Layout layout, simd::Isa isa) {
  const int64_t T = x.size(0), K = x.size(1), row_bytes = quant::q8_row_bytes(K);
  RoundedRows out{at::empty({T * row_bytes}, x.options().dtype(at::kByte)), std::vector<quant::Q8Row>(T)};
  uint8_t* q8 = out.storage.data_ptr<uint8_t>();
  round_rows(x, q8, layout, nullptr, isa);
  for (int64_t t = 0; t < T; ++t) out.rows[t] = quant::q8_row_at(q8 + t * row_bytes, K);
  return out;
}

// Weight rows [0, N) for a few token rows by the integer decode kernel.
void int8_linear(const quant::QuantGemmParams& p, const at::Tensor& x, quant::Int8RowsFn fn, simd::Isa isa) {
  const RoundedRows rounded = round_for_int8(x, quant::int8_rows_layout(p.format, fn), isa);
  const int64_t align = quant::kQuantRowAlignment, units = (p.out_features + align - 1) / align;
  for_each_weight_range(units, align * p.in_features, [&](int64_t begin, int64_t end) {
    fn(p, rounded.rows.data(), begin * align, std::min(p.out_features, end * align));
  });
}

// Every weight row for many token rows by the integer panel kernel: each thread decodes its panels
// into its own buffer, one at a time.
void int8_panel_linear(const quant::QuantGemmParams& p, const at::Tensor& x, quant::Int8PanelsFn fn, simd::Isa isa) {
  const RoundedRows rounded = round_for_int8(x, {quant::int8_panel_zero_point(p.format), false}, isa);
  const int64_t P = quant::kInt8PanelRows, panels = (p.out_features + P - 1) / P;
  const int64_t buffer_bytes = quant::int8_panel_bytes(p.in_features / quant::kGroup);
  for_each_weight_range(panels, P * p.in_features * std::max<int64_t>(1, p.tokens / 8), [&](int64_t begin, int64_t end) {
    const at::Tensor buffer = at::empty({buffer_bytes}, x.options().dtype(at::kByte));
    fn(p, rounded.rows.data(), begin, end, buffer.data_ptr<uint8_t>());
  });
}

// Every weight panel for every token row by the packed-panel kernel.
void packed_panel_linear(const quant::QuantGemmParams& p, const at::Tensor& x, quant::Int8PanelsFn fn, simd::Isa isa) {
  const RoundedRows rounded = round_for_int8(x, {quant::int8_panel_zero_point(p.format), false}, isa);
  const int64_t panels = p.out_features / quant::kInt8PanelRows;
  // The AMX kernel's decoded panel, one per thread (indexed by thread number: a call from inside a
  // parallel region runs inline on that thread), allocated here by the calling thread: a pool
  // thread's allocation would grow that thread's own heap arena, which nothing trims.
  const bool amx = p.tokens >= quant::kAmxTokens;
  const int64_t buffer_bytes = amx ? quant::int8_panel_bytes(p.in_features / quant::kGroup) : 0;
  const int64_t threads = std::max<int64_t>(at::get_num_threads(), at::get_thread_num() + 1);
  const at::Tensor buffers = at::empty({threads * buffer_bytes}, x.options().dtype(at::kByte));
  for_each_weight_range(panels, quant::kInt8PanelRows * p.in_features * std::max<int64_t>(1, p.tokens / 8),
                        [&](int64_t begin, int64_t end) {
                          uint8_t* buffer = amx ? buffers.data_ptr<uint8_t>() + at::get_thread_num() * buffer_bytes : nullptr;
                          fn(p, rounded.rows.data(), begin, end, buffer);
                        });
}

// Whole 16-row panels by decoding them for the packed kernel; returns the rows it covered.
int64_t gemm_panels(const quant::QuantGemmParams& p, simd::Isa isa) {
  const int64_t K = p.in_features, P = linear::kPanelWidth, num_panels = p.out_features / P;
  if (num_panels == 0) return 0;
  const linear::PackedGemmKernel packed = linear::select_packed_gemm(isa);
  const quant::QuantGemmUnitFn unit_fn = quant::select_quant_gemm_unit(isa);
  // Token rows packed once, chunk by chunk, as the packed kernel reads them.
  const std::unique_ptr<float[]> x_tiles(new float[p.tokens * K]);
  for (int64_t t0 = 0; t0 < p.tokens; t0 += quant::kGemmTokenChunk)
    packed.pack_fn(p.x + t0 * p.x_stride, p.x_stride, std::min(quant::kGemmTokenChunk, p.tokens - t0), K,
                   x_tiles.get() + t0 * K);
  const int64_t per_unit = quant::kPanelsPerUnit, units = (num_panels + per_unit - 1) / per_unit;
  for_each_weight_range(units, per_unit * P * K * std::max<int64_t>(1, p.tokens / 8), [&](int64_t begin, int64_t end) {
    const std::unique_ptr<float[]> buffer(new float[per_unit * K * P]);  // this thread's decoded panels
    for (int64_t u = begin; u < end; ++u)
      unit_fn(p, x_tiles.get(), u * per_unit, std::min(num_panels, (u + 1) * per_unit), buffer.get());
  });
  return num_panels * P;
}

at::Tensor dequantize_cpu(const at::Tensor& weight, const std::optional<at::Tensor>& rows) {
  const quant::Format format = check_dequantize_inputs(weight, rows);
  TORCH_CHECK(weight.device().is_cpu(), "weight must be a CPU tensor for the CPU kernel, got ", weight.device());
  if (is_quant_panels(weight)) return dequantize_cpu(unpack_panels(weight, format), rows);
  const int64_t K = quant_in_features(weight, format);
  std::vector<int64_t> indices;
  if (rows.has_value()) indices = index_values(*rows, "rows");
  const int64_t count = rows.has_value() ? static_cast<int64_t>(indices.size()) : weight.size(0);
  at::Tensor out = at::empty({count, K}, weight.options().dtype(at::kFloat));
  if (count == 0 || K == 0) return out;
  const quant::DequantizeRowsFn fn = quant::select_dequantize_rows(simd::select_isa());
  const uint8_t* data = weight.data_ptr<uint8_t>();
  const int64_t row_bytes = weight.size(1) * weight.size(2);
  const int64_t* picked = rows.has_value() ? indices.data() : nullptr;
  float* dst = out.data_ptr<float>();
  for_each_weight_range(count, K, [&](int64_t begin, int64_t end) { fn(format, data, row_bytes, K, picked, begin, end, dst, K); });
  return out;
}

}  // namespace

at::Tensor quant_linear_cpu(const at::Tensor& x_in, const at::Tensor& weight, const std::optional<at::Tensor>& bias) {
  const quant::Format format = check_quant_linear_inputs(x_in, weight, bias);
  TORCH_CHECK(x_in.device().is_cpu(), "x must be a CPU tensor for the CPU kernel, got ", x_in.device());
  const at::Tensor x = x_in.stride(1) == 1 || x_in.size(1) <= 1 ? x_in : x_in.contiguous();
  at::Tensor out = at::empty({x.size(0), quant_out_features(weight)}, x.options());
  if (out.numel() == 0) return out;
  if (x.size(1) == 0) return bias.has_value() ? out.copy_(bias->expand_as(out)) : out.zero_();
  const at::Tensor bias_contiguous = bias.has_value() ? bias->contiguous() : at::Tensor();
  const simd::Isa isa = simd::select_isa();
  if (is_quant_panels(weight)) {
    const quant::Int8PanelsFn packed_fn = quant::select_packed_panels(isa, x.size(0));
    if (packed_fn == nullptr) return quant_linear_cpu(x, unpack_panels(weight, format), bias);
    packed_panel_linear(gemm_params(x, weight, bias_contiguous, out, format), x, packed_fn, isa);
    return out;
  }
  const quant::Int8RowsFn int8_fn = x.size(0) <= kInt8MaxTokens ? quant::select_int8_rows(isa) : nullptr;
  if (int8_fn != nullptr) {
    int8_linear(gemm_params(x, weight, bias_contiguous, out, format), x, int8_fn, isa);
    return out;
  }
  const quant::Int8PanelsFn panels_fn = quant::select_int8_panels(isa, format);
  if (panels_fn != nullptr) {
    int8_panel_linear(gemm_params(x, weight, bias_contiguous, out, format), x, panels_fn, isa);
    return out;
  }
  at::Tensor rounded = at::empty({x.size(0), x.size(1)}, x.options());
  round_rows(x, nullptr, {0, false}, rounded.data_ptr<float>(), isa);
  const quant::QuantGemmParams p = gemm_params(rounded, weight, bias_contiguous, out, format);
  const int64_t covered = x.size(0) > kGemvMaxTokens ? gemm_panels(p, isa) : 0;
  if (covered < p.out_features) gemv_rows(p, covered, p.out_features, isa);
  return out;
}

TORCH_LIBRARY_IMPL(a1, CPU, m) {
  m.impl("dequantize", &dequantize_cpu);
  m.impl("quant_linear", &quant_linear_cpu);
}

}  // namespace a1
