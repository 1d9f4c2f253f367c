// Placeholder until QuantileBuffer lands: the pybind11 module that makes _C importable.
#include <pybind11/pybind11.h>

PYBIND11_MODULE(_C, m) { m.doc() = "a1_ext compiled library"; }
