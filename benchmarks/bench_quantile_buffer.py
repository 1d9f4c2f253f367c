"""QuantileBuffer microbenchmarks. Targets: >= 10M pushes/s single-threaded, p_value <= 10 us at
n = 4096 (including the Python call).

    pytest benchmarks/bench_quantile_buffer.py --benchmark-enable

Push rates are timed inside C++ (`push_benchmark` of the test drivers, tests/a1_ext/quantile_drivers.py:
the loop only) and reported in extra_info; the benchmark's own time per round also includes
allocating the fresh buffer.
"""
import statistics
import sys
import time
from pathlib import Path

import pytest
import torch

from a1_ext import QuantileBuffer, _C

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "a1_ext"))
from quantile_drivers import fuzz_push, push_benchmark  # noqa: E402  (built by `make build`, not shipped)

N_PUSH = 1_000_000
N_QUERY = 4096


def _rate_of(benchmark, run, count: int, key: str) -> None:
    """Benchmarks run() (which returns seconds for `count` operations) and records the rate."""
    seconds = []
    benchmark.pedantic(lambda: seconds.append(run()), rounds=15, warmup_rounds=2)
    median = statistics.median(seconds)
    benchmark.extra_info[key] = count / median
    benchmark.extra_info["seconds_median"] = median


@pytest.mark.parametrize("window", [0, 4096], ids=["unbounded", "window4096"])
def test_push_single_thread(benchmark, window):
    _rate_of(benchmark, lambda: push_benchmark(N_PUSH, window), N_PUSH, "pushes_per_s")
    if window == 0 and benchmark.enabled:
        assert benchmark.extra_info["pushes_per_s"] >= 10e6


@pytest.mark.parametrize("threads", [2, 4])
def test_push_contended(benchmark, threads):
    per_thread = N_PUSH // threads

    def run() -> float:
        buffer = _C.QuantileBuffer(per_thread * threads, 0)
        return fuzz_push(buffer, threads, per_thread, 0)[1]

    _rate_of(benchmark, run, per_thread * threads, "pushes_per_s")


def test_extend_from_tensor(benchmark):
    scores = torch.rand(N_PUSH, dtype=torch.float64)

    def run() -> float:
        buffer = QuantileBuffer(capacity=N_PUSH)
        start = time.perf_counter()
        buffer.extend(scores)
        return time.perf_counter() - start

    _rate_of(benchmark, run, N_PUSH, "scores_per_s")


def _filled(window=None) -> QuantileBuffer:
    buffer = QuantileBuffer(capacity=N_QUERY, window=window)
    buffer.extend(torch.rand(N_QUERY + (N_QUERY // 2 if window else 0), dtype=torch.float64))
    return buffer


@pytest.mark.parametrize("window", [None, N_QUERY], ids=["unbounded", "window4096"])
def test_p_value_n4096(benchmark, window):
    buffer = _filled(window)
    benchmark(buffer.p_value, 0.5)
    if benchmark.enabled:
        median = benchmark.stats.stats.median
        benchmark.extra_info["us_per_call_median"] = median * 1e6
        assert window or median <= 10e-6


def test_p_value_smoothed_n4096(benchmark):
    buffer, generator = _filled(), torch.Generator().manual_seed(0)
    benchmark(lambda: buffer.p_value(0.5, smoothed=True, generator=generator))
    if benchmark.enabled:
        benchmark.extra_info["us_per_call_median"] = benchmark.stats.stats.median * 1e6


def test_threshold_n4096(benchmark):
    buffer = _filled()
    benchmark(buffer.threshold, 0.1)
    if benchmark.enabled:
        benchmark.extra_info["us_per_call_median"] = benchmark.stats.stats.median * 1e6
