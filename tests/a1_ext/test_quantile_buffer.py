"""QuantileBuffer: exact order statistics and p-values, windows, errors, concurrency, TSan.

The statistical coverage simulations live in test_quantile_coverage.py.
"""
import contextlib
import math
import os
import subprocess
import sys
import threading
from fractions import Fraction

import numpy as np
import pytest
import torch

from a1_ext import QuantileBuffer, _C
from quantile_drivers import conformal_rank, fuzz_push


def exact_rank(n: int, alpha: float) -> int:
    """k = ceil((n + 1)(1 - alpha)) in exact rational arithmetic on alpha's decimal spelling."""
    return math.ceil((n + 1) * (1 - Fraction(str(alpha))))


def filled(scores, **kwargs) -> QuantileBuffer:
    buf = QuantileBuffer(capacity=max(len(scores), 1), **kwargs)
    buf.extend(scores)
    return buf


ALPHAS = [0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 0.99]


@pytest.mark.parametrize("n", [0, 1, 2, 9, 18, 19, 20, 99, 100, 257, 1000, 4096])
def test_threshold_is_exact_order_statistic(n):
    g = torch.Generator().manual_seed(n)
    for scores in (torch.randn(n, generator=g, dtype=torch.float64),
                   torch.randint(0, 7, (n,), generator=g).double()):  # continuous, and ties
        buf = filled(scores)
        for alpha in ALPHAS:
            k = exact_rank(n, alpha)
            got = buf.threshold(alpha)
            if k > n:
                assert got == math.inf, (n, alpha, k)
            else:
                assert got == torch.kthvalue(scores, k).values.item(), (n, alpha, k)
                assert got == np.sort(scores.numpy())[k - 1]


def test_conformal_rank_edge_cases():
    # (n + 1)(1 - alpha) is an integer here, and naive double arithmetic lands on either side.
    assert conformal_rank(19, 0.05) == 19  # 20 * 0.95 = 19: the max is the threshold
    assert conformal_rank(18, 0.05) == 19  # > n: nothing can be rejected yet
    assert conformal_rank(99, 0.1) == 90
    assert conformal_rank(9, 0.7) == 3  # 10 * (1 - 0.7) = 3.0000000000000004 in doubles
    assert conformal_rank(24, 0.44) == 14  # 25 * (1 - 0.44) = 14.000000000000002
    assert conformal_rank(0, 0.5) == 1
    assert filled([1.0] * 18).threshold(0.05) == math.inf
    assert filled(list(range(19))).threshold(0.05) == 18.0
    rng = np.random.default_rng(0)
    for n in rng.integers(0, 5000, 300):
        for alpha in np.round(rng.uniform(0.001, 0.999, 10), 3):
            assert conformal_rank(int(n), float(alpha)) == exact_rank(int(n), float(alpha))


def test_threshold_and_p_value_make_the_same_decision():
    rng = np.random.default_rng(1)
    for n in (5, 19, 24, 100, 333):
        scores = rng.integers(0, 20, n).astype(np.float64)  # ties on purpose
        buf = filled(scores)
        probes = np.concatenate([scores, scores + 0.5, [-1.0, 99.0]])
        for alpha in list(np.round(rng.uniform(0.01, 0.99, 20), 2)) + [1 / (n + 1), 0.3]:
            q = buf.threshold(alpha)
            for s in probes:
                assert (buf.p_value(s) <= alpha) == (s > q), (n, alpha, s, q)


def test_p_value_matches_numpy_with_ties():
    rng = np.random.default_rng(2)
    scores = rng.integers(0, 10, 500).astype(np.float64)
    buf = filled(torch.from_numpy(scores))
    n = len(scores)
    for s in np.arange(-1.0, 11.5, 0.5):
        ge, gt, eq = (scores >= s).sum(), (scores > s).sum(), (scores == s).sum()
        assert buf.p_value(s) == (1 + ge) / (n + 1)
        for u in (0.0, 0.25, 0.999, 1.0):
            assert buf.p_value(s, smoothed=True, u=u) == pytest.approx((gt + u * (1 + eq)) / (n + 1), rel=1e-15)
        p = buf.p_value(s, smoothed=True)  # u from torch's RNG
        assert gt / (n + 1) <= p <= (gt + 1 + eq) / (n + 1)
    p1 = buf.p_value(3.0, smoothed=True, generator=torch.Generator().manual_seed(7))
    p2 = buf.p_value(3.0, smoothed=True, generator=torch.Generator().manual_seed(7))
    assert p1 == p2
    empty = QuantileBuffer(4)
    assert empty.p_value(1.0) == 1.0 and empty.p_value(1.0, smoothed=True, u=0.3) == 0.3
    assert empty.threshold(0.5) == math.inf and len(empty) == 0 and empty.snapshot().numel() == 0


def test_infinite_scores_are_ordinary_values():
    buf = filled([1.0, math.inf, -math.inf, 2.0])
    assert buf.threshold(0.2) == math.inf  # k = 4: the 4th smallest is +inf
    assert buf.threshold(0.4) == 2.0
    assert buf.p_value(math.inf) == 2 / 5


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int64])
def test_extend_accepts_real_tensors_lists_and_arrays(dtype):
    values = torch.tensor([3.5, -1.0, 2.0, 8.0]).to(dtype)
    buf = QuantileBuffer(16)
    assert buf.extend(values) == 0
    assert buf.extend([1, 2.5]) == 4
    assert buf.extend(np.array([7.0])) == 6
    assert buf.push(torch.tensor(4.0)) == 7 and buf.push(np.float32(0.5)) == 8
    snap = buf.snapshot()
    assert snap.dtype == torch.float64 and len(buf) == buf.size() == 9
    torch.testing.assert_close(snap, torch.cat([values.double(), torch.tensor([1, 2.5, 7, 4, 0.5], dtype=torch.float64)]))
    assert buf.extend(torch.empty(0)) == 9 and len(buf) == 9


def test_window_keeps_the_most_recent_scores():
    buf = QuantileBuffer(capacity=10, window=4)
    for i in range(25):
        assert buf.push(float(i)) == i
        recent = np.arange(max(0, i - 3), i + 1, dtype=np.float64)
        assert buf.snapshot().tolist() == recent.tolist() and len(buf) == len(recent)
        assert buf.p_value(i - 1.5) == (1 + (recent >= i - 1.5).sum()) / (len(recent) + 1)
    assert buf.threshold(0.1) == math.inf and filled([0.0] * 9 + list(range(9)), window=9).threshold(0.1) == 8.0
    buf.extend(torch.arange(100.0, 110.0))  # a batch longer than the window keeps its tail
    assert buf.snapshot().tolist() == [106.0, 107.0, 108.0, 109.0]
    assert buf.window == 4 and QuantileBuffer(3).window is None


def test_errors_name_the_argument_and_insert_nothing():
    buf = filled([1.0, 2.0, 3.0])
    for alpha in (0, 1, -0.1, 1.5, math.nan, math.inf):
        with pytest.raises(ValueError, match=r"alpha must be in \(0, 1\)"):
            buf.threshold(alpha)
    with pytest.raises(TypeError, match="alpha must be a real number"):
        buf.threshold("0.1")
    with pytest.raises(ValueError, match="score is NaN"):
        buf.push(math.nan)
    with pytest.raises(ValueError, match="score is NaN"):
        buf.p_value(math.nan)
    for u in (-0.1, 1.5, math.nan):
        with pytest.raises(ValueError, match=r"u must be in \[0, 1\]"):
            buf.p_value(1.0, smoothed=True, u=u)
    with pytest.raises(ValueError, match="only used with smoothed=True"):
        buf.p_value(1.0, u=0.5)
    with pytest.raises(ValueError, match=r"scores\[2\] is NaN; nothing was inserted"):
        buf.extend(torch.tensor([0.0, 1.0, math.nan, 2.0]))
    with pytest.raises(ValueError, match="must be 1-D"):
        buf.extend(torch.zeros(2, 2))
    with pytest.raises(TypeError, match="real dtype"):
        buf.extend(torch.zeros(2, dtype=torch.complex64))
    with pytest.raises(TypeError, match="sequence of numbers"):
        buf.extend(["a", "b"])
    assert buf.snapshot().tolist() == [1.0, 2.0, 3.0]


def test_capacity_overflow_raises_and_keeps_the_buffer_usable():
    buf = QuantileBuffer(capacity=5)
    buf.extend([1.0, 2.0, 3.0])
    with pytest.raises(OverflowError, match="capacity=5"):
        buf.extend([4.0, 5.0, 6.0])  # all or nothing
    assert buf.extend([4.0, 5.0]) == 3 and len(buf) == 5
    with pytest.raises(OverflowError, match="capacity=5"):
        buf.push(6.0)
    assert buf.snapshot().tolist() == [1.0, 2.0, 3.0, 4.0, 5.0] and buf.threshold(0.2) == 5.0
    for bad in (dict(capacity=0), dict(capacity=-1), dict(capacity=2.5), dict(capacity=4, window=0),
                dict(capacity=4, window=5)):
        with pytest.raises(ValueError, match="capacity|window"):
            QuantileBuffer(**bad)
    with pytest.raises(ValueError, match="window must be <= capacity"):
        _C.QuantileBuffer(4, 5)  # the C++ check, behind the wrapper's


def test_huge_capacity_is_a_clear_error():
    # was TypeError "incompatible constructor arguments" (beyond size_t) from pybind11
    for bad in (dict(capacity=2**70), dict(capacity=2**63), dict(capacity=2**70, window=4)):
        with pytest.raises(ValueError, match=r"capacity must be an int in \[1, 9223372036854775807\], got \d+"):
            QuantileBuffer(**bad)
    # was MemoryError "std::bad_array_new_length": 16 * 2**62 bytes overflow size_t, so nothing is allocated
    with pytest.raises(MemoryError, match=r"QuantileBuffer\(capacity=4611686018427387904\) reserves 16 bytes per score"):
        QuantileBuffer(2**62)
    with pytest.raises(MemoryError, match=r"QuantileBuffer\(window=4611686018427387904\) .* use a smaller window"):
        QuantileBuffer(2**63 - 1, window=2**62)
    assert QuantileBuffer(2**63 - 1, window=3).capacity == 2**63 - 1  # a window reserves only its own slots


def _python_producers(buf, num_threads, per_thread):
    """Threads push distinct values (singly and in tensor batches) while a reader snapshots.
    Returns the ticket of each value and the reader's snapshots."""
    tickets = np.full(num_threads * per_thread, -1)
    done = threading.Event()
    seen = []

    def produce(t):
        base, i = t * per_thread, 0
        while i < per_thread:
            if i % 3 == 0 and i + 8 <= per_thread:
                first = buf.extend(torch.arange(base + i, base + i + 8, dtype=torch.float64))
                tickets[base + i:base + i + 8] = np.arange(first, first + 8)
                i += 8
            else:
                tickets[base + i] = buf.push(float(base + i))
                i += 1

    def read():
        while not done.is_set():
            assert 0 < buf.p_value(per_thread / 2) <= 1
            buf.threshold(0.1)
            seen.append(buf.snapshot().numpy())

    producers = [threading.Thread(target=produce, args=(t,)) for t in range(num_threads)]
    reader = threading.Thread(target=read)
    reader.start()
    for th in producers:
        th.start()
    for th in producers:
        th.join()
    done.set()
    reader.join()
    return tickets, seen


@pytest.mark.parametrize("window", [None, 2, 37])
def test_python_threads_lose_and_tear_nothing(window):
    num_threads, per_thread = 4, 5000
    total = num_threads * per_thread
    buf = QuantileBuffer(capacity=total, window=window)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often, so pushes overlap inside C++ more
    try:
        tickets, seen = _python_producers(buf, num_threads, per_thread)
    finally:
        sys.setswitchinterval(interval)
    assert sorted(tickets.tolist()) == list(range(total))  # every push got a unique ticket
    by_ticket = np.argsort(tickets).astype(np.float64)  # value pushed with each ticket
    keep = window or total
    assert buf.snapshot().numpy().tolist() == by_ticket[-keep:].tolist()
    # Every snapshot the reader took was a possible state: whole pushed values in ticket order,
    # and what a slot holds never goes back in time (ticket t evicts t - window, not the reverse).
    slot_ticket = np.full(keep, -1)
    for snap in seen:
        assert np.all(snap == np.floor(snap)) and np.all((snap >= 0) & (snap < total))
        observed = tickets[snap.astype(np.int64)]
        assert np.all(np.diff(observed) > 0)
        if window:
            assert np.all(observed >= slot_ticket[observed % window])
            slot_ticket[observed % window] = observed
    assert seen and max(len(s) for s in seen) <= keep


@pytest.mark.parametrize("window,chunk", [(0, 0), (0, 5), (100, 0), (1, 3)])
def test_cpp_threads_lose_and_tear_nothing(window, chunk):
    num_threads, per_thread = 4, 20000
    total = num_threads * per_thread
    impl = _C.QuantileBuffer(total, window)
    tickets, seconds = fuzz_push(impl, num_threads, per_thread, chunk)
    assert seconds > 0 and np.array_equal(np.sort(tickets), np.arange(total))
    by_ticket = np.argsort(tickets).astype(np.float64)
    keep = window or total
    assert np.array_equal(impl.snapshot(), by_ticket[-keep:]) and impl.size() == keep
    with pytest.raises(OverflowError) if window == 0 else contextlib.nullcontext():
        fuzz_push(impl, 2, 10, chunk)  # full unless windowed


def test_thread_sanitizer_build():
    binary = os.environ.get("A1_TSAN_BIN")
    if not binary:
        pytest.skip("A1_TSAN_BIN is unset: build with cmake -DA1_TSAN_TEST=ON and point it at "
                    "<build>/quantile_buffer_tsan (CI does)")
    result = subprocess.run([binary], capture_output=True, text=True, timeout=300)
    assert "ThreadSanitizer" not in result.stderr, result.stderr[-4000:]
    assert result.returncode == 0 and "quantile_buffer_tsan: passed" in result.stdout, result.stdout + result.stderr
