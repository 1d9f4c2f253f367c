// Torch-free CPU building blocks of `sample` and `speculative_verify`, one row at a time. The
// semantics (filter rules, RNG streams, race keys) are those of a1_ext/reference.py.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <numeric>
#include <vector>

#include "common/philox.h"
#include "common/softmax.h"
#include "sampling/greedy_temperature.h"

namespace a1 {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

struct RowSampling {
  float temperature;  // < kGreedyTemperature (0 included) = greedy
  int64_t top_k;      // 0 = off
  float top_p;        // 1 = off
  int64_t seed;
  int64_t offset;
};

// Reusable per-thread buffers so a row allocates nothing after the first.
struct SamplingScratch {
  std::vector<float> filtered, weights, values;
  std::vector<int64_t> order;
  explicit SamplingScratch(int64_t vocab) : filtered(vocab), weights(vocab) {}
};

// The largest value of x[0, n), NaNs skipped (-inf when there is none).
A1_MULTIVERSION inline float max_skipping_nan(const float* x, int64_t n) {
  simd::f32x8 running = simd::broadcast(kNegInf);
  int64_t i = 0;
  for (; i + simd::kWidth <= n; i += simd::kWidth) {
    const simd::f32x8 v = simd::load(x + i);
    running = v > running ? v : running;  // a NaN lane compares false and is skipped
  }
  float best = simd::horizontal_max(running);
  for (; i < n; ++i) best = x[i] > best ? x[i] : best;
  return best;
}

// Whether a row is a distribution to sample from: no NaN, no +inf and some value above -inf,
// i.e. its NaN-propagating max is finite (the rule of a1_ext.reference and the CUDA kernels).
A1_MULTIVERSION inline bool row_has_finite_max(const float* x, int64_t n) {
  constexpr float kMax = std::numeric_limits<float>::max();
  simd::i32x8 all_below_inf = simd::i32x8{} - 1, any_above_neg_inf{};
  int64_t i = 0;
  for (; i + simd::kWidth <= n; i += simd::kWidth) {
    const simd::f32x8 v = simd::load(x + i);
    all_below_inf &= v <= kMax;  // false for NaN and +inf
    any_above_neg_inf |= v > kNegInf;
  }
  bool ok = true, any = false;
  for (int j = 0; j < simd::kWidth; ++j) ok = ok && all_below_inf[j] != 0, any = any || any_above_neg_inf[j] != 0;
  for (; i < n; ++i) ok = ok && x[i] <= kMax, any = any || x[i] > kNegInf;
  return ok && any;
}

// The first index of the largest value (NaNs never win; x[0] = NaN returns 0), i.e. the result of
// `best = 0; for i: if (x[i] > x[best]) best = i`. That loop carries a dependence through x[best]
// and does not vectorize (~75 us per 49152-token row); this is a vector max then a scan for it.
inline int64_t first_argmax(const float* x, int64_t n) {
  if (std::isnan(x[0])) return 0;
  const float best = max_skipping_nan(x, n);
  for (int64_t j = 0; j < n; ++j)
    if (x[j] == best) return j;
  return 0;  // every value NaN or -inf past x[0] = -inf
}

// A greedy row's token (first_argmax) and its softmax statistics (for the token's logprob) in one
// pass: chunk by chunk, each chunk's max and sum of exp are taken while it sits in L1, so a 49152-
// float row is read from memory once rather than three times (32 rows: 0.9 -> ~0.4 ms).
struct GreedyRow {
  int64_t token;
  SoftmaxStats stats;
};

inline GreedyRow greedy_row(const float* x, int64_t n) {
  if (std::isnan(x[0])) return {0, row_softmax_stats(x, n, 1.0f)};
  GreedyRow out{-1, SoftmaxStats{}};
  float best = kNegInf;
  int64_t best_start = -1;
  for (int64_t start = 0; start < n; start += kSoftmaxChunk) {
    const int64_t len = std::min(kSoftmaxChunk, n - start);
    const float chunk_max = max_skipping_nan(x + start, len);
    if (chunk_max > best) best = chunk_max, best_start = start;  // strict: the first chunk wins ties
    out.stats.add(x + start, len, 1.0f);
  }
  if (best_start < 0) return {first_argmax(x, n), out.stats};  // nothing above -inf
  for (int64_t j = best_start; j < n; ++j)
    if (x[j] == best) return {j, out.stats};
  return {first_argmax(x, n), out.stats};  // not reached: best is some x[j]
}

// out[v] = logits[v] / temperature, or -inf outside top-k (ties at the k-th value kept) and
// outside top-p (token v kept iff the mass of strictly more likely tokens is < top_p).
inline void filter_row(const float* logits, int64_t vocab, const RowSampling& params, SamplingScratch& scratch) {
  float* out = scratch.filtered.data();
  for (int64_t v = 0; v < vocab; ++v) out[v] = logits[v] / params.temperature;
  if (params.top_k > 0 && params.top_k < vocab) {
    scratch.values.assign(out, out + vocab);
    std::nth_element(scratch.values.begin(), scratch.values.begin() + (params.top_k - 1), scratch.values.end(),
                     std::greater<float>());
    const float kth = scratch.values[params.top_k - 1];
    for (int64_t v = 0; v < vocab; ++v) out[v] = out[v] >= kth ? out[v] : kNegInf;
  }
  if (params.top_p >= 1.0f) return;
  auto& order = scratch.order;
  order.clear();
  for (int64_t v = 0; v < vocab; ++v)
    if (out[v] > kNegInf) order.push_back(v);
  if (order.empty()) return;
  std::sort(order.begin(), order.end(), [out](int64_t a, int64_t b) { return out[a] > out[b]; });
  const float top = out[order.front()];
  double total = 0.0;
  for (int64_t v : order) total += std::exp(static_cast<double>(out[v] - top));
  double mass_greater = 0.0;  // mass of the tokens before the current group of equal values
  size_t i = 0;
  while (i < order.size() && mass_greater < params.top_p) {
    const float value = out[order[i]];
    for (; i < order.size() && out[order[i]] == value; ++i)
      mass_greater += std::exp(static_cast<double>(value - top)) / total;
  }
  for (; i < order.size(); ++i) out[order[i]] = kNegInf;
}

// Largest possible race noise -log(-log(u)): the largest float uniform, 1 - 2^-24, gives 16.64.
constexpr float kMaxRaceNoise = 16.7f;

// Exponential race: argmax over v of log_weights[v] - log(-log(u_v)), with u_v the float
// uniforms of Philox block v / 4 of (seed, offset, purpose, position): a draw from
// softmax(log_weights). Because the noise is bounded, a block whose best weight plus
// kMaxRaceNoise cannot beat the current key is skipped without drawing; the block holding the
// largest weight goes first so that most of the vocabulary is skipped. Ties go to the lower index.
inline int64_t race_argmax(const float* log_weights, int64_t vocab, int64_t seed, int64_t offset,
                           RngPurpose purpose, uint32_t position) {
  const int64_t heaviest = first_argmax(log_weights, vocab);
  if (!(log_weights[heaviest] > kNegInf)) return -1;
  int64_t best = -1;
  float best_key = kNegInf;
  auto race_block = [&](int64_t block) {
    const int64_t base = block * 4, len = std::min<int64_t>(4, vocab - base);
    float block_max = kNegInf;
    for (int64_t j = 0; j < len; ++j) block_max = std::max(block_max, log_weights[base + j]);
    if (!(block_max > kNegInf) || block_max + kMaxRaceNoise < best_key) return;
    const Philox4 bits = philox_draw(seed, offset, purpose, position, static_cast<uint32_t>(block));
    for (int64_t j = 0; j < len; ++j) {
      const float weight = log_weights[base + j];
      if (!(weight > kNegInf) || weight + kMaxRaceNoise < best_key) continue;
      const float key = weight - std::log(-std::log(open_uniform_float(bits.v[j])));
      if (key > best_key || (key == best_key && base + j < best) || best < 0) {
        best_key = key;
        best = base + j;
      }
    }
  };
  race_block(heaviest / 4);
  for (int64_t block = 0; block < (vocab + 3) / 4; ++block)
    if (block != heaviest / 4) race_block(block);
  return best;
}

// probs[v] = softmax(filtered)[v] in float, as torch.softmax computes it.
inline void softmax_row(const float* filtered, int64_t vocab, float* probs) {
  const SoftmaxStats stats = row_softmax_stats(filtered, vocab, 1.0f);
  for (int64_t v = 0; v < vocab; ++v) probs[v] = std::exp(filtered[v] - stats.max) / stats.sum;
}

// probs[0, V) = the distribution sample draws a non-greedy row from: softmax of the filtered row,
// or one-hot on the row's first argmax when the filter keeps nothing (sample's fallback too).
inline void sampling_probs_row(const float* row, int64_t vocab, const RowSampling& params, SamplingScratch& scratch,
                               float* probs) {
  filter_row(row, vocab, params, scratch);
  if (max_skipping_nan(scratch.filtered.data(), vocab) > kNegInf) {
    softmax_row(scratch.filtered.data(), vocab, probs);
    return;
  }
  std::fill(probs, probs + vocab, 0.0f);
  probs[first_argmax(row, vocab)] = 1.0f;
}

// One request of speculative_verify on float target rows [k + 1, V]. Writes out_ids[0..accepted]
// and returns the number of accepted draft tokens.
inline int64_t verify_request(const float* target_rows, int64_t vocab, const int64_t* draft_ids, int64_t num_draft,
                              const float* draft_probs, const RowSampling& params, SamplingScratch& scratch,
                              int64_t* out_ids) {
  if (params.temperature < kGreedyTemperature) {
    for (int64_t i = 0; i <= num_draft; ++i) {
      const int64_t target_choice = first_argmax(target_rows + i * vocab, vocab);
      out_ids[i] = target_choice;
      if (i == num_draft || draft_ids[i] != target_choice) return i;
    }
  }
  float* probs = scratch.weights.data();
  for (int64_t i = 0; i <= num_draft; ++i) {
    filter_row(target_rows + i * vocab, vocab, params, scratch);
    softmax_row(scratch.filtered.data(), vocab, probs);
    if (i < num_draft) {
      const int64_t token = draft_ids[i];
      const float* q_row = draft_probs != nullptr ? draft_probs + i * vocab : nullptr;
      const double q_token = q_row != nullptr ? q_row[token] : 1.0;
      const Philox4 bits = philox_draw(params.seed, params.offset, RngPurpose::kVerifyAccept, i, 0);
      if (open_uniform_double(bits.v[0], bits.v[1]) * q_token < static_cast<double>(probs[token])) {
        out_ids[i] = token;
        continue;
      }
      // Rejected: the replacement comes from norm(max(0, p - q)); q is one-hot without draft_probs.
      double residual_mass = 0.0;
      for (int64_t v = 0; v < vocab; ++v) {
        const float q = q_row != nullptr ? q_row[v] : (v == token ? 1.0f : 0.0f);
        scratch.filtered[v] = std::max(probs[v] - q, 0.0f);
        residual_mass += scratch.filtered[v];
      }
      if (residual_mass > 0.0) std::copy(scratch.filtered.begin(), scratch.filtered.end(), probs);
    }
    for (int64_t v = 0; v < vocab; ++v) probs[v] = std::log(probs[v]);
    out_ids[i] = race_argmax(probs, vocab, params.seed, params.offset, RngPurpose::kVerifyRace, i);
    if (out_ids[i] < 0) out_ids[i] = first_argmax(target_rows + i * vocab, vocab);  // nothing kept: greedy
    return i;
  }
  return num_draft;  // unreachable: the loop returns at i == num_draft
}

}  // namespace a1
