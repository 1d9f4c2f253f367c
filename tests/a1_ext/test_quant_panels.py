"""Packed panels (a1_ext.quant_panels, csrc/quant/quant_panel_layout.h): the layout against its
definition byte by byte, pack/unpack as inverses, and dequantize / quant_linear / decoder_layer on
packed weights against the same ops on the GGUF blocks and the twins, on every instruction-set
path (where the panel kernels are missing the op unpacks the weight and runs the block paths)."""
from __future__ import annotations

import pytest
import torch

from a1_ext import ops, reference
from a1_ext.quant_formats import quant_format, quant_shape
from a1_ext.quant_panels import (PANEL_FORMATS, PANEL_ROWS, amx_int8_ready, block_byte_offsets, can_pack,
                                 int8_panels_supported, pack_panels, unpack_panels)
from cuda_cases import layer_case
from quant_cases import assert_bit_equal, finite_blocks, random_blocks


def packed_by_definition(blocks: torch.Tensor) -> torch.Tensor:
    """The packed layout written byte by byte from its definition: per panel p and group g, the 16
    rows' scales (Q4_1: then mins), then vector j = dword j of each row's quants."""
    n, groups, size = blocks.shape
    header = 4 if quant_format(blocks).name == "Q4_1" else 2
    out = torch.empty(n // PANEL_ROWS, groups, PANEL_ROWS * size, dtype=torch.uint8)
    for p in range(n // PANEL_ROWS):
        for g in range(groups):
            unit = []
            for field in range(header // 2):
                for r in range(PANEL_ROWS):
                    unit += blocks[PANEL_ROWS * p + r, g, 2 * field : 2 * field + 2].tolist()
            for j in range((size - header) // 4):
                for r in range(PANEL_ROWS):
                    unit += blocks[PANEL_ROWS * p + r, g, header + 4 * j : header + 4 * j + 4].tolist()
            out[p, g] = torch.tensor(unit, dtype=torch.uint8)
    return out.view(n // PANEL_ROWS, groups, PANEL_ROWS, size)


@pytest.mark.parametrize("name", PANEL_FORMATS)
def test_pack_follows_the_layout_and_unpack_inverts_it(name):
    blocks = random_blocks(name, rows=32, blocks_per_row=3, seed=4)
    packed = pack_panels(blocks)
    assert packed.shape == (2, 3, PANEL_ROWS, blocks.shape[2]) and packed.is_contiguous()
    assert torch.equal(packed, packed_by_definition(blocks))
    assert torch.equal(unpack_panels(packed), blocks)
    assert quant_format(packed).name == name and quant_shape(packed) == quant_shape(blocks)
    every = torch.arange(blocks.numel())
    assert torch.equal(packed.reshape(-1)[block_byte_offsets(packed, every)], blocks.reshape(-1))


def test_only_32_weight_blocks_with_whole_panels_pack():
    assert not can_pack(random_blocks("Q4_0", rows=24, blocks_per_row=2))  # 24 rows: not whole panels
    assert not can_pack(random_blocks("Q4_K", rows=16, blocks_per_row=1))
    with pytest.raises(ValueError, match="N a multiple of 16"):
        pack_panels(random_blocks("Q8_0", rows=8, blocks_per_row=1))
    q4k = random_blocks("Q4_K", rows=16, blocks_per_row=1).view(1, 1, 16, 144)
    with pytest.raises(RuntimeError, match="packed panels hold Q4_0, Q4_1 or Q8_0 blocks, got Q4_K"):
        ops.quant_linear(torch.randn(1, 256), q4k)


@pytest.mark.parametrize("name", PANEL_FORMATS)
def test_dequantize_reads_packed_panels_as_their_blocks(name, isa):
    blocks = random_blocks(name, rows=48, blocks_per_row=2, seed=5)
    packed = pack_panels(blocks)
    assert_bit_equal(ops.dequantize(packed), ops.dequantize(blocks))
    rows = torch.tensor([47, 0, 16, 16, 31])
    assert_bit_equal(ops.dequantize(packed, rows), ops.dequantize(blocks, rows))
    assert_bit_equal(reference.dequantize(packed, rows), ops.dequantize(blocks, rows))


@pytest.mark.parametrize("name", PANEL_FORMATS)
@pytest.mark.parametrize("tokens", [1, 2, 3, 4, 5, 8, 13, 33])
def test_quant_linear_on_packed_panels(name, tokens, isa):
    """The same op as on the blocks: bit for bit above 4 token rows (both run the int8 panel tile)
    or where the panel kernels are missing (the op unpacks and runs the block path); up to the
    order of float additions at 1-4 rows (the blocks' decode kernel sums groups in another order)."""
    blocks = finite_blocks(name, 48, 5, seed=tokens)
    packed = pack_panels(blocks)
    g = torch.Generator().manual_seed(tokens)
    x = torch.randn(tokens, 160, generator=g)
    bias = torch.randn(48, generator=g)
    got, on_blocks = ops.quant_linear(x, packed, bias), ops.quant_linear(x, blocks, bias)
    if tokens > 4 or isa != "native" or not int8_panels_supported():
        assert_bit_equal(got, on_blocks)
    torch.testing.assert_close(got, on_blocks, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got, reference.quant_linear(x, packed, bias), atol=1e-3, rtol=1e-4)


@pytest.mark.skipif(not amx_int8_ready(), reason="no AMX-INT8 here: the packed panels run the VNNI tile alone")
@pytest.mark.parametrize("name", PANEL_FORMATS)
def test_amx_tiles_equal_the_vnni_tile(name, monkeypatch):
    """From 16 token rows packed panels run on AMX tiles (csrc/quant/quant_amx_panels.h): the same
    integer dot products and float operations as the VNNI tile (A1_CPU_ISA=avx512 turns AMX off),
    bit for bit; 37 rows: two tiles of 16, then 5 rows on the VNNI tile."""
    packed = pack_panels(finite_blocks(name, 48, 5, seed=3))
    g = torch.Generator().manual_seed(3)
    x, bias = torch.randn(37, 160, generator=g), torch.randn(48, generator=g)
    on_amx = ops.quant_linear(x, packed, bias)
    monkeypatch.setenv("A1_CPU_ISA", "avx512")
    assert not amx_int8_ready()
    assert_bit_equal(on_amx, ops.quant_linear(x, packed, bias))
    torch.testing.assert_close(on_amx, reference.quant_linear(x, packed, bias), atol=1e-3, rtol=1e-4)


def test_quant_linear_on_packed_panels_opcheck():
    packed = pack_panels(finite_blocks("Q4_1", 32, 2, seed=1))
    torch.library.opcheck(torch.ops.a1.quant_linear.default, (torch.randn(3, 64), packed, torch.randn(32)))
    torch.library.opcheck(torch.ops.a1.dequantize.default, (packed, torch.tensor([3, 31])))


def test_a_broken_layout_is_caught():
    """The test above would see a packing that swaps two rows' quants: a sanity check of its power."""
    blocks = finite_blocks("Q4_0", 16, 2, seed=2)
    packed = pack_panels(blocks).clone()
    unit = packed.view(1, 2, -1)
    unit[0, 0, 32:36], unit[0, 0, 36:40] = unit[0, 0, 36:40].clone(), unit[0, 0, 32:36].clone()
    x = torch.randn(6, 64)
    assert not torch.allclose(ops.quant_linear(x, packed), ops.quant_linear(x, blocks), atol=1e-3)


def test_decoder_layer_on_packed_panels_equals_it_on_blocks():
    case = layer_case([7], [7], bias=True, seed=6)
    for name, fmt in {"qkv_weight": "Q8_0", "gate_up_weight": "Q4_1", "o_weight": "Q4_0"}.items():
        case[name] = finite_blocks(fmt, case[name].shape[0], case[name].shape[1] // 32, seed=7)
    packed = {k: pack_panels(v) if k in ("qkv_weight", "gate_up_weight", "o_weight") else v for k, v in case.items()}
    fresh = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in case.items()}
    assert_bit_equal(ops.decoder_layer(**{k: v.clone() if isinstance(v, torch.Tensor) else v
                                          for k, v in packed.items()}), ops.decoder_layer(**fresh))
