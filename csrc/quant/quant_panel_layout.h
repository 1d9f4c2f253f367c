// Weights stored as packed panels: a1's CPU layout of Q4_0, Q4_1 and Q8_0 weights for the int8
// kernels, made once at load (a1_ext.quant_panels.pack_panels) where the CPU has AVX-512 VNNI.
//
// A weight W [N, K] (N a multiple of 16) is a uint8 tensor [N / 16, K / 32, 16, block_bytes]: the
// same bytes as its GGUF blocks, 16 rows' blocks of one group g together, rearranged so that the
// lanes of a vector are rows (what vpdpbusd with one broadcast token dword multiplies): first the
// 16 rows' float16 scales (32 bytes), for Q4_1 then their float16 mins (32 bytes), then the quants
// as vectors of 64 bytes, vector j holding dword j (bytes 4 j .. 4 j + 3) of each row's quants, 4
// vectors for the nibbles of Q4_0 / Q4_1, 8 for Q8_0's bytes. A batch-1 decode then reads every
// group's weights and scales with plain loads (the GGUF layout needs a gather of 16 scales and
// three inserts per 4 groups), and the weights of a panel are one sequential stream.
// Torch- and SIMD-free: the argument checks of both devices include it.
#pragma once
#include <cstdint>

#include "quant/quant_formats.h"

namespace a1::quant {

constexpr int kInt8PanelRows = 16;

// The formats with an int8 panel kernel (the 32-weight block formats).
inline bool is_panel_format(Format f) { return f == Format::kQ4_0 || f == Format::kQ4_1 || f == Format::kQ8_0; }

// Bytes before the quants in one group of a packed panel: 16 scales, and 16 mins for Q4_1.
constexpr int64_t panel_header_bytes(Format f) { return f == Format::kQ4_1 ? 64 : 32; }

}  // namespace a1::quant
