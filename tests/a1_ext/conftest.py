"""Fixtures shared by the op tests."""
import pytest

ISAS = ["native", "avx2", "baseline"]


@pytest.fixture(params=ISAS)
def isa(request, monkeypatch):
    """Caps the CPU kernels' instruction set (A1_CPU_ISA), so each ISA path runs on this machine."""
    if request.param != "native":
        monkeypatch.setenv("A1_CPU_ISA", request.param)
    return request.param
