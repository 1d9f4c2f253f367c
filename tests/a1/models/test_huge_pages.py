"""Huge-page CPU memory: pack_parameters moves every parameter into one arena with values unchanged;
huge_page_zeros backs the engine's KV cache."""
from __future__ import annotations

import sys

import pytest
import torch

from a1.models import load_model
from a1.models.huge_pages import huge_page_zeros, huge_pages_supported, pack_parameters


class TiedPair(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.embed = torch.nn.Parameter(torch.randn(50, 8, generator=g), requires_grad=False)
        self.odd = torch.nn.Parameter(torch.randn(3, generator=g).to(torch.bfloat16), requires_grad=False)
        self.proj = torch.nn.Linear(8, 5)
        self.head = self.embed  # tied: one Parameter under two names


def vm_flags_of_mapping(address: int) -> list[str]:
    """The VmFlags of the /proc/self/smaps mapping that contains address."""
    inside = False
    with open("/proc/self/smaps") as handle:
        for line in handle:
            first = line.split()[0]
            if "-" in first and ":" not in first:
                start, end = (int(part, 16) for part in first.split("-"))
                inside = start <= address < end
            elif inside and line.startswith("VmFlags:"):
                return line.split()[1:]
    raise AssertionError(f"no mapping contains {address:#x}")


def test_pack_keeps_values_and_parameter_objects():
    module = TiedPair()
    before = {name: param.detach().clone() for name, param in module.named_parameters()}
    objects = [module.embed, module.odd, module.proj.weight, module.proj.bias]
    info = pack_parameters(module)
    assert info.num_parameters == 4  # the tied weight once
    assert [module.embed, module.odd, module.proj.weight, module.proj.bias] == objects
    assert module.head is module.embed
    for name, param in module.named_parameters():
        assert torch.equal(param, before[name]) and param.dtype == before[name].dtype and param.is_contiguous()
    assert info.address % (2 << 20) == 0
    storage = {param.untyped_storage().data_ptr() for param in module.parameters()}
    assert len(storage) == 1  # one buffer
    for param in module.parameters():
        assert param.data_ptr() % 64 == 0 and info.address <= param.data_ptr() < info.address + info.nbytes
    x = torch.randn(2, 8)
    torch.testing.assert_close(module.proj(x), x @ before["proj.weight"].t() + before["proj.bias"])


@pytest.mark.skipif(not huge_pages_supported(), reason="no transparent huge pages on this machine")
def test_pack_advises_huge_pages():
    module = TiedPair()
    info = pack_parameters(module)
    assert info.huge_pages_advised
    assert "hg" in vm_flags_of_mapping(info.address)  # MADV_HUGEPAGE took effect on the mapping


def test_pack_rejects_non_cpu_parameters():
    module = torch.nn.Linear(4, 4, device="meta")
    with pytest.raises(ValueError, match="CPU parameters"):
        pack_parameters(module)


def test_load_model_packs_the_weights(tiny_checkpoint):
    _, directory = tiny_checkpoint("qwen2")
    model = load_model(directory).model
    storages = {param.untyped_storage().data_ptr() for param in model.parameters()}
    assert len(storages) == 1


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.int64])
def test_huge_page_zeros(dtype):
    zeros = huge_page_zeros((3, 5, 7), dtype)
    assert zeros.shape == (3, 5, 7) and zeros.dtype == dtype and zeros.is_contiguous()
    assert zeros.data_ptr() % (2 << 20) == 0
    assert torch.equal(zeros, torch.zeros(3, 5, 7, dtype=dtype))
    zeros[1, 2, 3] = 4  # writable, and the mapping outlives the views of it
    view = zeros[1]
    del zeros
    assert view[2, 3] == 4 and view.sum() == 4


def test_engine_kv_cache_is_in_huge_pages(tiny_checkpoint):
    from a1.engine.model_runner import ModelRunner

    _, directory = tiny_checkpoint("llama")
    runner = ModelRunner(load_model(directory).model, num_blocks=8, block_size=4, eos_token_ids=[0])
    k_cache, v_cache = runner.kv_caches[0]
    assert k_cache.shape == (8, 4, 2, 16) and torch.count_nonzero(k_cache) == 0
    assert k_cache.untyped_storage().data_ptr() % (2 << 20) == 0 and v_cache.data_ptr() > k_cache.data_ptr()
    if huge_pages_supported():
        assert "hg" in vm_flags_of_mapping(k_cache.data_ptr())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/smaps")
def test_pack_without_transparent_huge_pages(monkeypatch):
    """Where the kernel has no THP (or Python no MADV_HUGEPAGE) the arena is plain pages: same values."""
    import a1.models.huge_pages as huge_pages

    monkeypatch.setattr(huge_pages, "huge_pages_supported", lambda: False)
    module = TiedPair()
    before = {name: param.detach().clone() for name, param in module.named_parameters()}
    info = huge_pages.pack_parameters(module)
    assert not info.huge_pages_advised and "hg" not in vm_flags_of_mapping(info.address)
    for name, param in module.named_parameters():
        assert torch.equal(param, before[name])
