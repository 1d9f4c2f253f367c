"""Random GGUF blocks for the quantized-op tests: every format, with the edge values its fields can
hold (float16 scales from 0 and subnormals to 65504 and inf/NaN, every nibble and 6-bit scale/min,
int8 extremes), as uint8 tensors in the ops' layout [N, K / block_size, block_bytes]."""
from __future__ import annotations

import gguf
import numpy as np
import torch

from a1_ext.quant_formats import QUANT_FORMATS, QuantFormat, as_blocks

FORMATS = list(QUANT_FORMATS)
# Byte offsets of each format's float16 fields (scale d, and min m / dmin where it has one).
HALF_FIELDS = {"Q4_0": [0], "Q4_1": [0, 2], "Q8_0": [0], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208]}
EDGE_HALVES = np.array([0.0, -0.0, 1.0, -1.0, 65504.0, -65504.0, 6.1035e-05, 5.96e-08, -5.96e-08, 0.0001234,
                        -3.5, np.inf, -np.inf, np.nan], dtype=np.float16)


def random_blocks(name: str, rows: int, blocks_per_row: int, seed: int = 0, edges: bool = True,
                  scale: float = 0.02) -> torch.Tensor:
    """uint8 [rows, blocks_per_row, block_bytes]: random bytes, float16 fields random normals times
    `scale`; with `edges`, every 3rd block's fields take the EDGE_HALVES values and the quant bytes
    of every 5th block run through 0..255 (all nibbles, all 6-bit scales and mins, int8 extremes)."""
    fmt: QuantFormat = QUANT_FORMATS[name]
    rng = np.random.default_rng(seed)
    flat = rng.integers(0, 256, size=(rows * blocks_per_row, fmt.block_bytes), dtype=np.uint8)
    for offset in HALF_FIELDS[name]:
        halves = (rng.standard_normal(len(flat)) * scale).astype(np.float16)
        if edges:
            halves[::3] = rng.choice(EDGE_HALVES, size=len(halves[::3]))
        flat[:, offset : offset + 2] = halves.view(np.uint8).reshape(-1, 2)
    if edges:
        fields = {o for off in HALF_FIELDS[name] for o in (off, off + 1)}
        rest = [i for i in range(fmt.block_bytes) if i not in fields]
        flat[::5, rest] = (np.arange(len(rest)) * 7 + 3) % 256  # a permutation of byte values
        flat[1::5, rest] = np.arange(len(rest)) % 256
    return torch.from_numpy(flat.reshape(rows, blocks_per_row, fmt.block_bytes))


def finite_blocks(name: str, rows: int, blocks_per_row: int, seed: int = 0, scale: float = 0.02) -> torch.Tensor:
    """Blocks of ordinary weights (finite, normal scales): for the matmul tests."""
    return random_blocks(name, rows, blocks_per_row, seed, edges=False, scale=scale)


def gguf_dequantize(blocks: torch.Tensor, name: str) -> torch.Tensor:
    """float32 [N, K] of blocks [N, K / block_size, block_bytes] by the gguf package itself."""
    raw = blocks.reshape(blocks.shape[0], -1).numpy()
    with np.errstate(all="ignore"):
        return torch.from_numpy(np.ascontiguousarray(gguf.quants.dequantize(raw, gguf.GGMLQuantizationType[name])))


def quantize_weight(weight: torch.Tensor, name: str) -> torch.Tensor:
    """W [N, K] float32 quantized by the gguf package, in the ops' layout [N, K / block_size, block_bytes]."""
    raw = gguf.quants.quantize(weight.numpy(), gguf.GGMLQuantizationType[name])
    return as_blocks(torch.from_numpy(raw), QUANT_FORMATS[name], tuple(weight.shape))


def in_features(name: str, blocks_per_row: int) -> int:
    return QUANT_FORMATS[name].block_size * blocks_per_row


def assert_bit_equal(got: torch.Tensor, want: torch.Tensor) -> None:
    """Equal bit for bit, NaN positions included (payloads aside)."""
    assert got.shape == want.shape and got.dtype == want.dtype == torch.float32
    nan = torch.isnan(want)
    assert torch.equal(torch.isnan(got), nan)
    mismatch = (got.view(torch.int32) != want.view(torch.int32)) & ~nan
    assert not mismatch.any(), f"{int(mismatch.sum())} values differ, first at {mismatch.nonzero()[0].tolist()}"


def identity_q8_0(n: int, k: int) -> torch.Tensor:
    """Q8_0 blocks of W [n, k] with W[i, i] = 1, zeros elsewhere: x @ W^T is x's first n columns."""
    blocks = torch.zeros(n, k // 32, 34, dtype=torch.uint8)
    blocks[:, :, 0:2] = torch.tensor([1.0], dtype=torch.float16).view(torch.uint8)
    for i in range(n):
        blocks[i, i // 32, 2 + i % 32] = 1
    return blocks
