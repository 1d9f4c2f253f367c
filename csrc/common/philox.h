// Philox4x32-10 counter-based RNG and the stream layout every random op uses. Torch-free and
// host/device, so the CPU kernels, the CUDA kernels and the pure-torch twin
// (a1_ext/reference.py) draw bit-identical uniforms for the same (seed, offset).
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define A1_HD __host__ __device__ __forceinline__
#else
#define A1_HD inline
#endif

namespace a1 {

struct Philox4 {
  uint32_t v[4];
};

A1_HD void mulhilo32(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  const uint64_t product = static_cast<uint64_t>(a) * b;
  hi = static_cast<uint32_t>(product >> 32);
  lo = static_cast<uint32_t>(product);
}

// Random123's Philox4x32 with 10 rounds.
A1_HD Philox4 philox4x32_10(Philox4 ctr, uint32_t key0, uint32_t key1) {
  constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
  constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, lo0, hi1, lo1;
    mulhilo32(kMul0, ctr.v[0], hi0, lo0);
    mulhilo32(kMul1, ctr.v[2], hi1, lo1);
    ctr = Philox4{{hi1 ^ ctr.v[1] ^ key0, lo1, hi0 ^ ctr.v[3] ^ key1, lo0}};
    key0 += kWeyl0;
    key1 += kWeyl1;
  }
  return ctr;
}

// What a draw is for; part of the counter so that streams never overlap.
enum class RngPurpose : uint32_t { kSampleRace = 0, kVerifyAccept = 1, kVerifyRace = 2 };

// Counter = (block, position | purpose << 28, offset lo, offset hi); key = seed. `block` indexes
// groups of 4 vocab entries for races and is 0 for single uniforms.
A1_HD Philox4 philox_draw(int64_t seed, int64_t offset, RngPurpose purpose, uint32_t position,
                          uint32_t block) {
  const uint64_t s = static_cast<uint64_t>(seed), o = static_cast<uint64_t>(offset);
  Philox4 ctr{{block, (position & 0x0FFFFFFFu) | (static_cast<uint32_t>(purpose) << 28),
               static_cast<uint32_t>(o), static_cast<uint32_t>(o >> 32)}};
  return philox4x32_10(ctr, static_cast<uint32_t>(s), static_cast<uint32_t>(s >> 32));
}

// Uniform in the open interval (0, 1) with 23 random bits; exact in float, never 0 or 1.
A1_HD float open_uniform_float(uint32_t bits) {
  return (static_cast<float>(bits >> 9) + 0.5f) * (1.0f / 8388608.0f);
}

// Uniform in the open interval (0, 1) with 52 random bits (float32 rand can return 0: pytorch#16706).
A1_HD double open_uniform_double(uint32_t bits_hi, uint32_t bits_lo) {
  const uint64_t k = (static_cast<uint64_t>(bits_hi >> 6) << 26) | (bits_lo >> 6);
  return (static_cast<double>(k) + 0.5) * (1.0 / 4503599627370496.0);
}

}  // namespace a1
