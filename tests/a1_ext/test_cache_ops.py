"""a1::reshape_and_cache and a1::copy_blocks on CPU against their twins (a1_ext/reference.py).

Caches are views with a block stride (K and V interleaved in one tensor) as an engine allocates
them; new rows come strided out of a fused QKV tensor; misuse must name the argument.
"""
import pytest
import torch

from a1_ext import ops, reference

DTYPES = [torch.float32, torch.bfloat16, torch.float16]


def kv_caches(num_blocks, block_size, num_kv_heads, head_dim, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    kv = torch.randn(num_blocks, 2, block_size, num_kv_heads, head_dim, generator=g).to(dtype)
    return kv[:, 0], kv[:, 1]


def strided_rows(num_tokens, num_kv_heads, head_dim, dtype, seed=1):
    """key and value as slices of a fused [T, Hq + 2 Hkv, D] projection (not contiguous)."""
    g = torch.Generator().manual_seed(seed)
    qkv = torch.randn(num_tokens, 3 * num_kv_heads, head_dim, generator=g).to(dtype)
    return qkv[:, num_kv_heads : 2 * num_kv_heads], qkv[:, 2 * num_kv_heads :]


def clones(*tensors):
    return [t.clone() for t in tensors]


# ----------------------------------------------------------------------------- reshape_and_cache
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("head_dim", [64, 80, 128])
@pytest.mark.parametrize("block_size", [1, 16])
def test_reshape_and_cache_matches_twin(dtype, head_dim, block_size):
    num_blocks, num_kv_heads, num_tokens = 20, 2, 11
    k_cache, v_cache = kv_caches(num_blocks, block_size, num_kv_heads, head_dim, dtype)
    key, value = strided_rows(num_tokens, num_kv_heads, head_dim, dtype)
    assert not key.is_contiguous()
    g = torch.Generator().manual_seed(head_dim + block_size)
    slots = torch.randperm(num_blocks * block_size, generator=g)[:num_tokens]
    slots[[2, 7]] = -1  # padding tokens are skipped
    k_expected, v_expected = clones(k_cache, v_cache)
    reference.reshape_and_cache(key, value, k_expected, v_expected, slots)
    ops.reshape_and_cache(key, value, k_cache, v_cache, slots)
    assert torch.equal(k_cache, k_expected) and torch.equal(v_cache, v_expected)  # a copy is exact


def test_reshape_and_cache_head_dim_strided_rows():
    k_cache, v_cache = kv_caches(4, 4, 2, 8, torch.float32)
    key = torch.randn(3, 8, 2).transpose(1, 2)  # head_dim not contiguous
    value = torch.randn(3, 2, 8)
    slots = torch.tensor([5, 0, 15])
    k_expected, v_expected = clones(k_cache, v_cache)
    reference.reshape_and_cache(key, value, k_expected, v_expected, slots)
    ops.reshape_and_cache(key, value, k_cache, v_cache, slots)
    assert torch.equal(k_cache, k_expected) and torch.equal(v_cache, v_expected)


def test_reshape_and_cache_large_batch_in_parallel():
    k_cache, v_cache = kv_caches(300, 16, 8, 128, torch.float32)
    key, value = strided_rows(4000, 8, 128, torch.float32)
    slots = torch.randperm(300 * 16)[:4000]
    k_expected, v_expected = clones(k_cache, v_cache)
    reference.reshape_and_cache(key, value, k_expected, v_expected, slots)
    ops.reshape_and_cache(key, value, k_cache, v_cache, slots)
    assert torch.equal(k_cache, k_expected) and torch.equal(v_cache, v_expected)


def test_reshape_and_cache_opcheck():
    k_cache, v_cache = kv_caches(3, 4, 2, 8, torch.float32)
    key, value = strided_rows(5, 2, 8, torch.float32)
    slots = torch.tensor([3, -1, 0, 11, 6])
    torch.library.opcheck(torch.ops.a1.reshape_and_cache.default, (key, value, k_cache, v_cache, slots))


def reshape_args():
    k_cache, v_cache = kv_caches(3, 4, 2, 8, torch.float32)
    key, value = strided_rows(2, 2, 8, torch.float32)
    return [key, value, k_cache, v_cache, torch.tensor([1, 5])]


@pytest.mark.parametrize(
    "index,value,match",
    [
        (4, torch.tensor([1, 12]), r"slot_mapping\[1\]=12 is out of range"),
        (4, torch.tensor([1, 5], dtype=torch.int32), "slot_mapping must be Long"),
        (4, torch.tensor([1, 5, 6]), "slot_mapping.size"),
        (0, lambda a: a[0].half(), "key dtype Half must equal k_cache dtype Float"),
        (1, lambda a: a[1][:, :1], "value shape"),
        (1, lambda a: a[1][:1], "value.size"),
        (2, lambda a: a[2].transpose(2, 3), "k_cache must have contiguous"),
        (3, lambda a: a[3][:2], "v_cache shape"),
        (2, lambda a: a[2].int(), "k_cache must be float32"),
    ],
)
def test_reshape_and_cache_errors(index, value, match):
    args = reshape_args()
    args[index] = value(args) if callable(value) else value
    with pytest.raises(RuntimeError, match=match):
        ops.reshape_and_cache(*args)


# ----------------------------------------------------------------------------- copy_blocks
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("block_size", [1, 16])
def test_copy_blocks_matches_twin(dtype, block_size):
    layers = [kv_caches(10, block_size, 2, 80, dtype, seed=layer) for layer in range(3)]
    k_caches, v_caches = [k for k, _ in layers], [v for _, v in layers]
    mapping = torch.tensor([[0, 5], [3, 9], [0, 1], [8, 2]])
    k_expected, v_expected = clones(*k_caches), clones(*v_caches)
    reference.copy_blocks(k_expected, v_expected, mapping)
    ops.copy_blocks(k_caches, v_caches, mapping)
    for got, expected in zip(k_caches + v_caches, k_expected + v_expected):
        assert torch.equal(got, expected)


def test_copy_blocks_many_pairs_in_parallel():
    layers = [kv_caches(600, 16, 8, 128, torch.float32, seed=layer) for layer in range(2)]
    k_caches, v_caches = [k for k, _ in layers], [v for _, v in layers]
    order = torch.randperm(600)
    mapping = torch.stack([order[:300], order[300:]], dim=1)
    k_expected, v_expected = clones(*k_caches), clones(*v_caches)
    reference.copy_blocks(k_expected, v_expected, mapping)
    ops.copy_blocks(k_caches, v_caches, mapping)
    for got, expected in zip(k_caches + v_caches, k_expected + v_expected):
        assert torch.equal(got, expected)


def test_copy_blocks_empty_mapping_is_a_no_op():
    k_cache, v_cache = kv_caches(4, 4, 2, 8, torch.float32)
    before = clones(k_cache, v_cache)
    ops.copy_blocks([k_cache], [v_cache], torch.empty(0, 2, dtype=torch.int64))
    assert torch.equal(k_cache, before[0]) and torch.equal(v_cache, before[1])


def test_copy_blocks_opcheck():
    k0, v0 = kv_caches(5, 4, 2, 8, torch.float32)
    k1, v1 = kv_caches(5, 4, 2, 8, torch.float32, seed=3)
    mapping = torch.tensor([[1, 3], [1, 4]])
    torch.library.opcheck(torch.ops.a1.copy_blocks.default, ([k0, k1], [v0, v1], mapping))


@pytest.mark.parametrize(
    "mapping,match",
    [
        (torch.tensor([[0, 6]]), r"block_mapping\[0, 1\]=6 is out of range"),
        (torch.tensor([[-1, 2]]), r"block_mapping\[0, 0\]=-1 is out of range"),
        (torch.tensor([[0, 2], [1, 2]]), r"block_mapping\[1, 1\]=2 is a destination twice"),
        (torch.tensor([[0, 2], [2, 3]]), r"block_mapping\[0, 1\]=2 is also a source"),
        (torch.tensor([[0, 2]], dtype=torch.int32), "block_mapping must be Long"),
        (torch.tensor([0, 2]), "block_mapping must be 2-D"),
        (torch.tensor([[0, 2, 3]]), r"block_mapping must be \[num_pairs, 2\]"),
    ],
)
def test_copy_blocks_mapping_errors(mapping, match):
    k_cache, v_cache = kv_caches(6, 4, 2, 8, torch.float32)
    with pytest.raises(RuntimeError, match=match):
        ops.copy_blocks([k_cache], [v_cache], mapping)


def test_copy_blocks_list_lengths_differ():
    k_cache, v_cache = kv_caches(6, 4, 2, 8, torch.float32)
    with pytest.raises(RuntimeError, match="v_caches has 2 caches, k_caches has 1"):
        ops.copy_blocks([k_cache], [v_cache, v_cache], torch.tensor([[0, 1]]))


def test_copy_blocks_ids_checked_against_smallest_cache():
    k_cache, v_cache = kv_caches(6, 4, 2, 8, torch.float32)
    with pytest.raises(RuntimeError, match=r"block_mapping\[0, 1\]=4 is out of range for caches of 4 blocks"):
        ops.copy_blocks([k_cache], [v_cache[:4]], torch.tensor([[0, 4]]))
