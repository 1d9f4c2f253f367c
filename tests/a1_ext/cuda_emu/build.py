"""Build the project's CUDA kernels for the CPU emulator (runtime.h) and load them with ctypes.

Each csrc/**/*.cu is copied with two textual rewrites that g++ needs (the launch syntax and the
dynamic shared array), then compiled with g++ together with entry.cpp into one shared library,
cached under build/cuda_emu/<hash of the sources>/. Needs g++ with C++20 and the CUDA toolkit's
headers (cuda_runtime.h, cuda_fp16.h, cuda_bf16.h), found next to nvcc; no GPU and no torch.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[3]
EMU_DIR = Path(__file__).resolve().parent
CSRC = ROOT / "csrc"


def cuda_include_dir() -> Optional[Path]:
    """The toolkit's include directory as nvcc resolves it (nvcc may be a wrapper), else None."""
    nvcc = os.environ.get("NVCC") or shutil.which("nvcc")
    candidates = []
    if nvcc:
        try:
            dry = subprocess.run([nvcc, "--dryrun", "-x", "cu", "-c", "/dev/null", "-o", "/dev/null"],
                                 capture_output=True, text=True, timeout=60).stderr
            match = re.search(r'INCLUDES="-I([^"]+)"', dry)
            if match:
                candidates.append(Path(match.group(1).strip()))
        except (OSError, subprocess.SubprocessError):
            pass
    for home in (os.environ.get("CUDA_HOME"), "/usr/local/cuda"):
        if home:
            candidates.append(Path(home) / "include")
    return next((c for c in candidates if (c / "cuda_runtime.h").exists()), None)


def _rewrite(source: str) -> str:
    source = re.sub(r"extern __shared__ (\w+) (\w+)\[\];", r"\1* \2 = ::a1emu::dynamic_smem<\1>();", source)
    source = source.replace("<<<", " / ::a1emu::Cfg(")
    return re.sub(r">>>\s*\(", ") % ::a1emu::pack(", source)


def _sources() -> list[Path]:
    return sorted(CSRC.rglob("*.cu"))


def _digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for path in paths:
        h.update(str(path).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def build(jobs: int = 2) -> Path:
    """Compile (or reuse) the emulated kernels; returns the path of the shared library."""
    include = cuda_include_dir()
    if include is None:
        raise RuntimeError("CUDA toolkit headers not found (need nvcc on PATH or CUDA_HOME)")
    cu_files = _sources()
    headers = sorted(CSRC.rglob("*.cuh")) + sorted(CSRC.rglob("*.h")) + sorted(EMU_DIR.glob("*.[hc]*"))
    out_dir = ROOT / "build" / "cuda_emu" / _digest(cu_files + headers)
    library = out_dir / "liba1_cuda_emu.so"
    if library.exists():
        return library
    out_dir.mkdir(parents=True, exist_ok=True)
    # -fno-strict-aliasing: the kernels pun through uint4 like all CUDA code; nvcc allows it.
    flags = ["-std=c++20", "-O2", "-fno-strict-aliasing", "-fPIC", "-pthread", "-w", "-include", str(EMU_DIR / "runtime.h"),
             "-I", str(EMU_DIR), "-I", str(CSRC), "-isystem", str(include)]
    units = []
    for cu in cu_files:
        unit = out_dir / (cu.relative_to(CSRC).as_posix().replace("/", "_") + ".cpp")
        unit.write_text(_rewrite(cu.read_text()))
        units.append(unit)
    units.append(EMU_DIR / "entry.cpp")
    procs, objects = [], []
    for unit in units:  # `jobs` compilers at a time
        obj = out_dir / (unit.name + ".o")
        objects.append(obj)
        procs.append(subprocess.Popen(["g++", *flags, "-c", str(unit), "-o", str(obj)], stderr=subprocess.PIPE, text=True))
        if len([p for p in procs if p.poll() is None]) >= jobs:
            procs[-jobs].wait()
    errors = [p.communicate()[1] for p in procs if p.wait() != 0]
    if errors:
        raise RuntimeError("emulator build failed:\n" + "\n".join(errors))
    subprocess.run(["g++", "-shared", "-pthread", *map(str, objects), "-o", str(library)], check=True)
    return library


_P, _I32, _I64, _F32 = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64, ctypes.c_float
_SIGNATURES = {  # entry.cpp's C functions
    "emu_reshape_and_cache": [_P, _P, _I32, _P, _P, _P, _P, _I32, _I64, _I64, _I64, _P, _I64, _I64, _I64, _I64],
    "emu_copy_blocks": [_P, _I64, _I64, _I64, _I64, _P, _I64],
    "emu_paged_attention": [_P, _P, _I32, _P, _P, _P, _P, _P, _P, _F32],
    "emu_rms_norm": [_P, _I64, _P, _I64, _P, _P, _I64, _I32, _I64, _I64, _F32],
    "emu_silu_and_mul": [_P, _I64, _P, _I64, _I32, _I64, _I64],
    "emu_rotary_embedding": [_P, _I32, _P, _P, _P, _I64, _I64, _I64],
    "emu_step_score": [_P, _I32, _I64, _I64, _I64, _F32, _P, _P, _I64, _P, _P],
    "emu_linear_step_score": [_P, _P, _I32, _I64, _I64, _I64, _I64, _I64, _F32, _I64, _P, _P, _I64, _P, _P],
    "emu_sample": [_P, _I32, _I64, _I64, _I64, _P, _P, _P, _P, _P, _P, _P],
    "emu_sampling_probs": [_P, _I32, _I64, _I64, _I64, _P, _P, _P, _P, _P],
    "emu_dequantize": [_P, _I64, _I64, _I64, _I32, _P, _I64, _I64, _P],
    "emu_round_activations": [_P, _I64, _I64, _I64, _P],
    "emu_quant_gemv": [_P, _I64, _I64, _I64, _I32, _P, _I64, _I64, _P, _P],
    "emu_speculative_verify": [_P, _I32, _I64, _P, _P, _P, _I32, _I64, _I64, _I64, _I64, _P, _P, _P, _P, _P, _P,
                               _I64, _P, _P],
}


def load(jobs: int = 2) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(build(jobs)))
    for name, argtypes in _SIGNATURES.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = argtypes, ctypes.c_int
    lib.emu_paged_attention_splits.argtypes = [_I64, _I64, _I64]
    lib.emu_paged_attention_splits.restype = _I64
    lib.emu_quant_gemv_max_tokens.argtypes = []
    lib.emu_quant_gemv_max_tokens.restype = _I64
    return lib
