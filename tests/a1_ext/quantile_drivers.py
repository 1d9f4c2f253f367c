"""QuantileBuffer's C++ test drivers: the pybind11 module _quantile_drivers
(csrc/quantile/quantile_test_drivers.cpp), built next to this file by `make build`
(A1_TEST_DRIVERS=1 python setup.py build_ext --inplace) and never part of a wheel.

Importing this fails loudly when the module is missing, rather than skipping the tests that use it.
"""
try:
    from _quantile_drivers import conformal_rank, fuzz_push, push_benchmark
except ImportError as err:
    raise ImportError(
        "tests/a1_ext/_quantile_drivers is not built (or not for this Python): run `make build`, or "
        f"`A1_TEST_DRIVERS=1 python setup.py build_ext --inplace` from the repository root ({err})"
    ) from err

__all__ = ["conformal_rank", "fuzz_push", "push_benchmark"]
