"""Build a1_ext._C with CMake + Ninja against the torch installed in this Python.

Environment switches:
  A1_CUDA=auto|0|1      CUDA sources: auto = when torch has CUDA and nvcc is found (default)
  TORCH_CUDA_ARCH_LIST  CUDA archs (default "8.0;9.0")
  A1_BUILD_DIR          CMake build directory (default build/<python tag>)
  A1_DEBUG=1            -O0 -g build
  MAX_JOBS              parallel compile jobs
  A1_TEST_DRIVERS=1     also build QuantileBuffer's C++ test drivers (module _quantile_drivers) into
                        tests/a1_ext/ for the tests; `make build` sets it. Never part of a wheel.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


class CMakeExtension(Extension):
    def __init__(self, name: str) -> None:
        super().__init__(name, sources=[])


def _switch(name: str, allowed: tuple[str, ...], default: str) -> str:
    value = os.environ.get(name, default).lower()
    if value not in allowed:
        raise SystemExit(f"{name} must be {', '.join(allowed[:-1])} or {allowed[-1]}, got {value!r}")
    return value


def _cuda_wanted() -> str:
    mode = _switch("A1_CUDA", ("auto", "0", "1"), "auto")
    if mode != "auto":
        return mode
    import torch

    has_nvcc = shutil.which("nvcc") is not None or os.environ.get("CUDA_HOME")
    return "1" if (torch.version.cuda and has_nvcc) else "0"


class CMakeBuild(build_ext):
    def build_extension(self, ext: Extension) -> None:
        try:
            import torch
        except ImportError as err:  # build isolation without torch, or no torch at all
            raise SystemExit(
                "a1_ext needs torch at build time: pip install torch==2.13.0, then "
                "pip install --no-build-isolation -e ."
            ) from err
        out_dir = Path(self.get_ext_fullpath(ext.name)).resolve().parent
        build_dir = Path(os.environ.get("A1_BUILD_DIR", ROOT / "build" / f"py{sys.version_info[0]}{sys.version_info[1]}"))
        build_dir.mkdir(parents=True, exist_ok=True)
        cfg = "Debug" if os.environ.get("A1_DEBUG") == "1" else "Release"
        args = [
            "cmake", "-S", str(ROOT), "-B", str(build_dir), "-G", "Ninja",
            f"-DCMAKE_BUILD_TYPE={cfg}",
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-DA1_OUTPUT_DIR={out_dir}",
            f"-DA1_CUDA={_cuda_wanted()}",
            f"-DTORCH_CUDA_ARCH_LIST={os.environ.get('TORCH_CUDA_ARCH_LIST', '8.0;9.0')}",
        ]
        # cmake and ninja from this Python's environment (pip packages) come first on PATH.
        env = dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
        subprocess.run(args, check=True, env=env)
        targets = ["_C"] + (["_quantile_drivers"] if _switch("A1_TEST_DRIVERS", ("0", "1"), "0") == "1" else [])
        build = ["cmake", "--build", str(build_dir), "--target", *targets]
        if os.environ.get("MAX_JOBS"):
            build += ["-j", os.environ["MAX_JOBS"]]
        subprocess.run(build, check=True, env=env)


def _dependencies() -> list[str]:
    """pyproject's [tool.a1] dependencies plus torch pinned to the build's release: a C++
    extension only loads into the torch it was compiled against."""
    import tomllib

    with open(ROOT / "pyproject.toml", "rb") as f:
        deps = tomllib.load(f)["tool"]["a1"]["dependencies"]
    try:
        import torch
    except ImportError:
        return ["torch>=2.13.0", *deps]
    return [f"torch=={torch.__version__.split('+')[0]}", *deps]


setup(
    install_requires=_dependencies(),
    ext_modules=[CMakeExtension("a1_ext._C")],
    cmdclass={"build_ext": CMakeBuild},
)
