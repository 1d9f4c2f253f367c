// Width-generic companions of simd.h for kernels that are compiled once per instruction set:
// the same template body runs on f32x16 (AVX-512, 32 registers), f32x8 (AVX2) or f32x4 (SSE2).
//
// Why not A1_MULTIVERSION: target_clones keeps one vector width for every clone, and its "avx2"
// clone has no FMA. Kernels that need both widths write the body as templates over the vector type
// and instantiate it inside one entry function per ISA, marked A1_TARGET_* plus `flatten` so every
// helper is inlined and compiled for that ISA; select_isa() picks the entry at run time.
#pragma once
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <utility>

#include "common/simd.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__CUDACC__)
#define A1_HAVE_ISA_DISPATCH 1
#define A1_TARGET_AVX512 __attribute__((target("avx512f,avx512vl,avx512dq,avx512bw,avx2,fma,f16c"), flatten))
#define A1_TARGET_AVX2 __attribute__((target("avx2,fma,f16c"), flatten))
#else
#define A1_HAVE_ISA_DISPATCH 0
#define A1_TARGET_AVX512 __attribute__((flatten))
#define A1_TARGET_AVX2 __attribute__((flatten))
#endif
#define A1_TARGET_BASELINE __attribute__((flatten))

namespace a1::simd {

// One vector type per instruction set: f32x4 for baseline x86-64 (SSE2), f32x8 for AVX2,
// f32x16 for AVX-512. The assembly helpers below rely on that pairing.
typedef float f32x4 __attribute__((vector_size(16)));
typedef float f32x16 __attribute__((vector_size(64)));

enum class Isa { kBaseline, kAvx2, kAvx512 };

// The best instruction set this CPU runs (libgcc's cpu model, initialised before main), capped by
// the environment variable A1_CPU_ISA=avx2|baseline when set (read on every call: tests and
// benchmarks switch it at run time, like ATEN_CPU_CAPABILITY for torch's kernels).
inline Isa select_isa() {
  Isa best = Isa::kBaseline;
#if A1_HAVE_ISA_DISPATCH
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw"))
    best = Isa::kAvx512;
  else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
    best = Isa::kAvx2;
#endif
  const char* cap = std::getenv("A1_CPU_ISA");
  if (cap == nullptr) return best;
  if (std::strcmp(cap, "baseline") == 0) return Isa::kBaseline;
  if (std::strcmp(cap, "avx2") == 0 && best == Isa::kAvx512) return Isa::kAvx2;
  return best;
}

template <class V>
constexpr int width_v = static_cast<int>(sizeof(V) / sizeof(float));

template <class V>
inline V vload(const float* p) {
  V v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

template <class V>
inline void vstore(float* p, V v) {
  std::memcpy(p, &v, sizeof v);
}

namespace detail {
template <class V, std::size_t... L>
inline V splat_lane0(V v, std::index_sequence<L...>) {
  return __builtin_shufflevector(v, v, static_cast<int>(L * 0)...);
}
}  // namespace detail

// Broadcasts are spelled in assembly for the AVX2 (f32x8) and AVX-512 (f32x16) instantiations:
// inside the unrolled register blocks GCC 12 otherwise builds them lane by lane (vinsertps or
// masked broadcasts), or keeps a scalar add for `V{} + x` (0 + x is not x for x = -0).
template <class V>
inline V vbroadcast(float x) {
#if A1_HAVE_ISA_DISPATCH
  if constexpr (width_v<V> >= 8) {
    V v;
    asm("vbroadcastss %1, %0" : "=v"(v) : "v"(x));
    return v;
  }
#endif
  return detail::splat_lane0(V{x}, std::make_index_sequence<width_v<V>>{});
}

// Broadcast of *p: the memory form is a pure load, no shuffle port (which also runs 512-bit FMAs).
template <class V>
inline V vbroadcast_load(const float* p) {
#if A1_HAVE_ISA_DISPATCH
  if constexpr (width_v<V> >= 8) {
    V v;
    asm("vbroadcastss %1, %0" : "=v"(v) : "m"(*p));
    return v;
  }
#endif
  return vbroadcast<V>(*p);
}

// {0, 1, ..., W-1}: lane indices, for masking the tail of a row.
template <class V>
inline V lane_index() {
  V v;
  for (int i = 0; i < width_v<V>; ++i) v[i] = static_cast<float>(i);
  return v;
}

template <class V>
inline V vmax(V a, V b) {
  return a > b ? a : b;
}

namespace detail {
// v with each block of 2*S lanes' halves swapped: lane i takes lane i ^ S.
template <int S, class V, std::size_t... L>
inline V swap_halves(V v, std::index_sequence<L...>) {
  return __builtin_shufflevector(v, v, static_cast<int>(L ^ S)...);
}
}  // namespace detail

// Horizontal max / sum by halving (log2 W shuffles), every lane ends up holding the result.
template <class V, int S = width_v<V> / 2>
inline V vallmax(V v) {
  if constexpr (S >= 1)
    return vallmax<V, S / 2>(vmax(v, detail::swap_halves<S>(v, std::make_index_sequence<width_v<V>>{})));
  else
    return v;
}

template <class V, int S = width_v<V> / 2>
inline V vallsum(V v) {
  if constexpr (S >= 1)
    return vallsum<V, S / 2>(v + detail::swap_halves<S>(v, std::make_index_sequence<width_v<V>>{}));
  else
    return v;
}

template <class V>
inline float vhmax(V v) {
  return vallmax(v)[0];
}

template <class V>
inline float vhsum(V v) {
  return vallsum(v)[0];
}

// exp(x) for x <= 0, lane-wise: the f32x8 routine of simd.h (widened for f32x4, on both halves for
// f32x16).
inline f32x4 vexp_nonpositive(f32x4 x) {
  const f32x8 wide = exp_nonpositive(__builtin_shufflevector(x, x, 0, 1, 2, 3, 0, 1, 2, 3));
  return __builtin_shufflevector(wide, wide, 0, 1, 2, 3);
}
inline f32x8 vexp_nonpositive(f32x8 x) { return exp_nonpositive(x); }
inline f32x16 vexp_nonpositive(f32x16 x) {
  const f32x8 lo = exp_nonpositive(__builtin_shufflevector(x, x, 0, 1, 2, 3, 4, 5, 6, 7));
  const f32x8 hi = exp_nonpositive(__builtin_shufflevector(x, x, 8, 9, 10, 11, 12, 13, 14, 15));
  return __builtin_shufflevector(lo, hi, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
}

namespace detail {
// One level of the transposing reduction: within each block of 2*S lanes, lanes [0, S) take x's
// and y's first S lanes of that block (or, High, their last S lanes).
template <int W, int S, bool High>
constexpr int fold_index(int lane) {
  const int block = lane / (2 * S) * (2 * S);
  const int within = lane % (2 * S);
  const int source = within < S ? block + within : W + block + within - S;
  return source + (High ? S : 0);
}

template <int S, class V, std::size_t... L>
inline V fold_pair(V x, V y, std::index_sequence<L...>) {
  constexpr int W = width_v<V>;
  return __builtin_shufflevector(x, y, fold_index<W, S, false>(L)...) +
         __builtin_shufflevector(x, y, fold_index<W, S, true>(L)...);
}

template <int S, class V>
inline void fold_level(V* acc) {
  if constexpr (S >= 1) {
    for (int i = 0; i < S; ++i)
      acc[i] = fold_pair<S>(acc[i], acc[i + S], std::make_index_sequence<width_v<V>>{});
    fold_level<S / 2>(acc);
  }
}
}  // namespace detail

// Horizontal sums of W vectors at once: returns v with v[i] = sum of the lanes of acc[i]
// (W - 1 adds and 2(W - 1) shuffles for W sums, instead of log2(W) of each per sum).
// acc is overwritten.
template <class V>
inline V transpose_sum(V* acc) {
  detail::fold_level<width_v<V> / 2>(acc);
  return acc[0];
}

// sums[i] = the sum of the lanes of acc[i] for N accumulators: one transpose when N is the vector
// width (a tile of R x TT = W dot products), else one horizontal sum each. acc is overwritten.
template <int N, class V>
inline void lane_sums(V* acc, float* sums) {
  if constexpr (N == width_v<V>) {
    const V all = transpose_sum(acc);
    for (int i = 0; i < N; ++i) sums[i] = all[i];
  } else {
    for (int i = 0; i < N; ++i) sums[i] = vhsum(acc[i]);
  }
}

}  // namespace a1::simd
