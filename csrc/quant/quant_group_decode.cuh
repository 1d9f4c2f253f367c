// Device decoding of one 32-weight group of a GGUF block into registers, for the CUDA decode
// kernel of quant_linear (quant_gemv.cu). The layouts are those of quant_formats.h's
// dequantize_element (which the exact dequantize kernel uses as is); here the block fields are
// read with the widest loads the format's block size keeps aligned, and d * q + m is one FMA (the
// matmul's sums round differently from F.linear anyway).
#pragma once
#include <type_traits>

#include "common/cuda_common.cuh"
#include "quant/quant_formats.h"

namespace a1::cuda {

// N bytes at p into out, in loads of A bytes (p must be A-aligned; A is 2, 4 or 16).
template <int N, int A>
__device__ __forceinline__ void load_bytes(const uint8_t* p, uint8_t (&out)[N]) {
  static_assert(N % A == 0, "a whole number of loads");
  using Word = typename std::conditional<A == 16, uint4, typename std::conditional<A == 4, unsigned, unsigned short>::type>::type;
  static_assert(sizeof(Word) == A, "A is 2, 4 or 16");
#pragma unroll
  for (int i = 0; i < N / A; ++i) {
    const Word word = __ldg(reinterpret_cast<const Word*>(p) + i);
    memcpy(out + i * A, &word, A);
  }
}

__device__ __forceinline__ float half_at(const uint8_t* p) {
  return quant::half_to_float(__ldg(reinterpret_cast<const unsigned short*>(p)));  // fields are 2-aligned
}

// quant::k4_scale_min on the 12 scale bytes read as three words: `sub` is a run-time value, and
// indexing a byte array by it would put the array in local memory.
__device__ __forceinline__ void k4_scale_min(const uint8_t* scales, int sub, int* scale, int* min) {
  const unsigned* words = reinterpret_cast<const unsigned*>(scales);  // 4-aligned in 16-aligned blocks
  const unsigned w0 = __ldg(words), w1 = __ldg(words + 1), w2 = __ldg(words + 2);
  const int shift = 8 * (sub % 4);
  const unsigned b0 = (w0 >> shift) & 0xFF, b1 = (w1 >> shift) & 0xFF, b2 = (w2 >> shift) & 0xFF;
  if (sub < 4) {  // bytes sub and sub + 4
    *scale = static_cast<int>(b0 & 63);
    *min = static_cast<int>(b1 & 63);
  } else {  // low 4 bits from byte sub + 4, high 2 bits from the top of bytes sub - 4 and sub
    *scale = static_cast<int>((b2 & 0xF) | ((b0 >> 6) << 4));
    *min = static_cast<int>((b2 >> 4) | ((b1 >> 6) << 4));
  }
}

// Weights [32 sub, 32 sub + 32) of the block at `block` (sub < block_size / 32) into w.
template <quant::Format F>
__device__ __forceinline__ void decode_group(const uint8_t* block, int sub, float (&w)[quant::kGroup]) {
  using quant::Format;
  if constexpr (F == Format::kQ4_0 || F == Format::kQ4_1) {  // low nibbles: weights 0-15, high: 16-31
    uint8_t qs[16];
    if constexpr (F == Format::kQ4_0) {
      load_bytes<16, 2>(block + 2, qs);  // 18-byte blocks: 2-aligned
    } else {
      load_bytes<16, 4>(block + 4, qs);  // 20-byte blocks: 4-aligned
    }
    const float d = half_at(block);
    const float m = F == Format::kQ4_1 ? half_at(block + 2) : -8.0f * d;
#pragma unroll
    for (int j = 0; j < 16; ++j) {
      w[j] = fmaf(d, static_cast<float>(qs[j] & 0xF), m);
      w[j + 16] = fmaf(d, static_cast<float>(qs[j] >> 4), m);
    }
  } else if constexpr (F == Format::kQ8_0) {
    uint8_t qs[32];
    load_bytes<32, 2>(block + 2, qs);  // 34-byte blocks: 2-aligned
    const float d = half_at(block);
#pragma unroll
    for (int j = 0; j < 32; ++j) w[j] = static_cast<float>(static_cast<int8_t>(qs[j])) * d;
  } else if constexpr (F == Format::kQ4_K || F == Format::kQ5_K) {  // 144 / 176-byte blocks: 16-aligned
    uint8_t qs[32];
    load_bytes<32, 16>(block + (F == Format::kQ4_K ? 16 : 48) + 32 * (sub / 2), qs);
    int scale, min;
    k4_scale_min(block + 4, sub, &scale, &min);
    const float d = half_at(block) * static_cast<float>(scale);
    const float dm = half_at(block + 2) * static_cast<float>(min);
    const int shift = 4 * (sub % 2);
    if constexpr (F == Format::kQ5_K) {
      uint8_t qh[32];
      load_bytes<32, 16>(block + 16, qh);
#pragma unroll
      for (int j = 0; j < 32; ++j)
        w[j] = fmaf(d, static_cast<float>(((qs[j] >> shift) & 0xF) | (((qh[j] >> sub) & 1) << 4)), -dm);
    } else {
#pragma unroll
      for (int j = 0; j < 32; ++j) w[j] = fmaf(d, static_cast<float>((qs[j] >> shift) & 0xF), -dm);
    }
  } else if constexpr (F == Format::kQ6_K) {  // 210-byte blocks: 2-aligned; a scale per 16 weights
    uint8_t ql[32], qh[32];
    const int g = sub / 4;
    load_bytes<32, 2>(block + 64 * g + (sub % 2) * 32, ql);
    load_bytes<32, 2>(block + 128 + 32 * g, qh);
    const unsigned short scales = __ldg(reinterpret_cast<const unsigned short*>(block + 192 + 2 * sub));
    const float d_all = half_at(block + 208);
    const float d0 = d_all * static_cast<float>(static_cast<int8_t>(scales & 0xFF));
    const float d1 = d_all * static_cast<float>(static_cast<int8_t>(scales >> 8));
    const int lo_shift = 4 * ((sub / 2) % 2), hi_shift = 2 * (sub % 4);
#pragma unroll
    for (int j = 0; j < 32; ++j) {
      const int q = (((ql[j] >> lo_shift) & 0xF) | (((qh[j] >> hi_shift) & 3) << 4)) - 32;
      w[j] = (j < 16 ? d0 : d1) * static_cast<float>(q);
    }
  }
}

}  // namespace a1::cuda
