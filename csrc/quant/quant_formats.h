// The GGUF block formats a1 executes without widening (Q4_0, Q4_1, Q8_0, Q4_K, Q5_K, Q6_K): their
// type ids, block geometry and the exact scalar dequantization of one element. Torch-free and
// usable on the host and in CUDA device code, so the CPU kernels, the CUDA kernels and the emulator
// share one definition of every format.
//
// A quantized weight W [N, K] is a uint8 tensor [N, K / block_size, block_bytes]: each row is its
// GGUF blocks, unchanged. Every format's block_bytes differs (18, 20, 34, 144, 176, 210), so the
// tensor's last dimension names its format and the ops need no format argument.
//
// Exactness: every value is computed as gguf.quants.dequantize computes it in float32 numpy, each
// product rounded before the add (quant_round stops the compiler from fusing them into an FMA).
#pragma once
#include <cstdint>
#include <cstring>
#include <type_traits>

#if defined(__CUDACC__)
#define A1_QUANT_HD __host__ __device__ __forceinline__
#else
#define A1_QUANT_HD inline
#endif

namespace a1::quant {

// GGML type ids (gguf.GGMLQuantizationType): the emulator and the Python side pass them as ints.
enum class Format : int32_t { kQ4_0 = 2, kQ4_1 = 3, kQ8_0 = 8, kQ4_K = 12, kQ5_K = 13, kQ6_K = 14 };

// Weights per sub-block group every format decodes at once (the K-quants' super-block has 8).
constexpr int kGroup = 32;

struct FormatInfo {
  int32_t block_size;   // weights per block
  int32_t block_bytes;  // bytes per block
};

A1_QUANT_HD constexpr FormatInfo format_info(Format f) {
  switch (f) {
    case Format::kQ4_0: return {32, 18};
    case Format::kQ4_1: return {32, 20};
    case Format::kQ8_0: return {32, 34};
    case Format::kQ4_K: return {256, 144};
    case Format::kQ5_K: return {256, 176};
    case Format::kQ6_K: return {256, 210};
  }
  return {0, 0};
}

// The format whose blocks take `block_bytes` bytes; false when none does.
A1_QUANT_HD bool format_of_block_bytes(int64_t block_bytes, Format* out) {
  const Format all[] = {Format::kQ4_0, Format::kQ4_1, Format::kQ8_0, Format::kQ4_K, Format::kQ5_K, Format::kQ6_K};
  for (Format f : all) {
    if (format_info(f).block_bytes == block_bytes) {
      *out = f;
      return true;
    }
  }
  return false;
}

inline const char* format_name(Format f) {
  switch (f) {
    case Format::kQ4_0: return "Q4_0";
    case Format::kQ4_1: return "Q4_1";
    case Format::kQ8_0: return "Q8_0";
    case Format::kQ4_K: return "Q4_K";
    case Format::kQ5_K: return "Q5_K";
    case Format::kQ6_K: return "Q6_K";
  }
  return "?";
}

// Calls fn(std::integral_constant<Format, F>{}) with the compile-time format of `f`, so a generic
// lambda instantiates one kernel per format (C++17: the CUDA sources' dialect).
template <class Fn>
inline void visit_format(Format f, Fn&& fn) {
  switch (f) {
    case Format::kQ4_0: fn(std::integral_constant<Format, Format::kQ4_0>{}); break;
    case Format::kQ4_1: fn(std::integral_constant<Format, Format::kQ4_1>{}); break;
    case Format::kQ8_0: fn(std::integral_constant<Format, Format::kQ8_0>{}); break;
    case Format::kQ4_K: fn(std::integral_constant<Format, Format::kQ4_K>{}); break;
    case Format::kQ5_K: fn(std::integral_constant<Format, Format::kQ5_K>{}); break;
    case Format::kQ6_K: fn(std::integral_constant<Format, Format::kQ6_K>{}); break;
  }
}

// IEEE half -> float, exact for every value (subnormals, inf, NaN payloads), by bit manipulation.
A1_QUANT_HD float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exponent = (h >> 10) & 0x1Fu, mantissa = h & 0x3FFu, bits;
  if (exponent == 0x1Fu) {
    bits = sign | 0x7F800000u | (mantissa << 13);
  } else if (exponent != 0) {
    bits = sign | ((exponent + 112u) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {
    bits = sign;
  } else {  // subnormal: normalize
    exponent = 113;
    while ((mantissa & 0x400u) == 0) mantissa <<= 1, --exponent;
    bits = sign | (exponent << 23) | ((mantissa & 0x3FFu) << 13);
  }
  float out;
  memcpy(&out, &bits, sizeof out);
  return out;
}

A1_QUANT_HD float load_half(const uint8_t* p) { return half_to_float(static_cast<uint16_t>(p[0] | (p[1] << 8))); }

// x as computed, with no contraction into a neighbouring add (a barrier the compiler cannot see
// through on the host; device code is compiled with -fmad=false).
A1_QUANT_HD float quant_round(float x) {
#if !defined(__CUDA_ARCH__) && (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
  asm("" : "+x"(x));
#endif
  return x;
}

// The 6-bit scale and min of sub-block j of a Q4_K / Q5_K super-block (llama.cpp's get_scale_min_k4).
A1_QUANT_HD void k4_scale_min(int j, const uint8_t* scales, int* scale, int* min) {
  if (j < 4) {
    *scale = scales[j] & 63;
    *min = scales[j + 4] & 63;
  } else {
    *scale = (scales[j + 4] & 0xF) | ((scales[j - 4] >> 6) << 4);
    *min = (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4);
  }
}

// Element i of one block, exactly as gguf.quants.dequantize computes it.
A1_QUANT_HD float dequantize_element(Format f, const uint8_t* block, int i) {
  switch (f) {
    case Format::kQ4_0: {  // d * (q - 8); low nibbles hold elements 0-15, high nibbles 16-31
      const int q = (i < 16 ? block[2 + i] & 0xF : block[2 + i - 16] >> 4) - 8;
      return load_half(block) * static_cast<float>(q);
    }
    case Format::kQ4_1: {  // d * q + m
      const int q = i < 16 ? block[4 + i] & 0xF : block[4 + i - 16] >> 4;
      return quant_round(load_half(block) * static_cast<float>(q)) + load_half(block + 2);
    }
    case Format::kQ8_0:  // q * d
      return static_cast<float>(static_cast<int8_t>(block[2 + i])) * load_half(block);
    case Format::kQ4_K:
    case Format::kQ5_K: {  // (d * scale) * q - dmin * min, sub-blocks of 32
      const int sub = i / 32, j = i % 32;
      int scale, min;
      k4_scale_min(sub, block + 4, &scale, &min);
      const uint8_t* qs = block + (f == Format::kQ4_K ? 16 : 48);
      int q = (qs[32 * (sub / 2) + j] >> (4 * (sub % 2))) & 0xF;
      if (f == Format::kQ5_K) q |= ((block[16 + j] >> sub) & 1) << 4;
      const float d = quant_round(load_half(block) * static_cast<float>(scale));
      const float dm = quant_round(load_half(block + 2) * static_cast<float>(min));
      return quant_round(d * static_cast<float>(q)) - dm;
    }
    case Format::kQ6_K: {  // (d * scale) * (q - 32): ql[128], qh[64], int8 scales[16], d
      const int r = i / 32, j = i % 32, g = r / 4;
      const int lo = (block[64 * g + (r % 2) * 32 + j] >> (4 * ((r / 2) % 2))) & 0xF;
      const int hi = (block[128 + 32 * g + j] >> (2 * (r % 4))) & 3;
      const float d = quant_round(load_half(block + 208) * static_cast<float>(static_cast<int8_t>(block[192 + i / 16])));
      return d * static_cast<float>((lo | (hi << 4)) - 32);
    }
  }
  return 0.0f;
}

}  // namespace a1::quant
