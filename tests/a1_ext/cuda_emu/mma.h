// CPU stand-in for the WMMA subset the kernels use (runtime.h explains the emulator). On a GPU a
// fragment is spread over the 32 lanes of a warp; here every lane holds the whole 16x16 tile and
// computes it redundantly, and only lane 0 stores it, so the results are exact fp32 sums of
// exact products like the tensor cores' (up to summation order).
#pragma once
#include <cstring>

namespace nvcuda::wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <typename Use, int M, int N, int K, typename T, typename Layout = void>
struct fragment {
  float v[16 * 16];  // (row, col) at v[row * 16 + col]; for matrix_b rows are k, columns n
};

template <typename Use, typename T, typename Layout>
void fill_fragment(fragment<Use, 16, 16, 16, T, Layout>& frag, float value) {
  for (float& x : frag.v) x = value;
}

template <typename T>
void load_matrix_sync(fragment<matrix_a, 16, 16, 16, T, row_major>& frag, const T* ptr, unsigned ldm) {
  for (int r = 0; r < 16; ++r)
    for (int c = 0; c < 16; ++c) frag.v[r * 16 + c] = static_cast<float>(ptr[r * ldm + c]);
}

template <typename T>
void load_matrix_sync(fragment<matrix_b, 16, 16, 16, T, col_major>& frag, const T* ptr, unsigned ldm) {
  for (int k = 0; k < 16; ++k)
    for (int n = 0; n < 16; ++n) frag.v[k * 16 + n] = static_cast<float>(ptr[n * ldm + k]);
}

template <typename T>
void mma_sync(fragment<accumulator, 16, 16, 16, float>& d, const fragment<matrix_a, 16, 16, 16, T, row_major>& a,
              const fragment<matrix_b, 16, 16, 16, T, col_major>& b,
              const fragment<accumulator, 16, 16, 16, float>& c) {
  float out[16 * 16];
  for (int r = 0; r < 16; ++r)
    for (int n = 0; n < 16; ++n) {
      float s = c.v[r * 16 + n];
      for (int k = 0; k < 16; ++k) s += a.v[r * 16 + k] * b.v[k * 16 + n];
      out[r * 16 + n] = s;
    }
  std::memcpy(d.v, out, sizeof out);
}

inline void store_matrix_sync(float* ptr, const fragment<accumulator, 16, 16, 16, float>& frag, unsigned ldm,
                              layout_t) {
  if (threadIdx.x % 32 != 0) return;
  for (int r = 0; r < 16; ++r)
    for (int c = 0; c < 16; ++c) ptr[r * ldm + c] = frag.v[r * 16 + c];
}

}  // namespace nvcuda::wmma
