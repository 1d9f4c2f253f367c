#!/usr/bin/env bash
# Compile-only check of the CUDA side, for CI machines without a GPU or a CUDA torch.
#
#   bash cmake/check_cuda_compile.sh            # from the repository root (any cwd works)
#
# 1. Every csrc/**/*.cu with nvcc -c -fmad=false for sm_80 and sm_90 (override: A1_CHECK_ARCHS="80 90"),
#    warnings as errors on both the device front end (--Werror all-warnings) and the host
#    compiler (-Xcompiler -Wall,-Wextra,-Werror). These files include only the CUDA toolkit and
#    project headers, so they need no torch at all.
# 2. Every csrc/**/*_cuda.cpp (the torch glue) with g++ -fsyntax-only -Wall -Werror against the
#    installed torch's headers. The CPU torch wheel lacks the generated header
#    c10/cuda/impl/cuda_cmake_macros.h that <c10/cuda/CUDAStream.h> includes; this script writes a
#    one-line shim for it (#define C10_CUDA_BUILD_SHARED_LIBS, what a CUDA wheel's copy says) into
#    a temporary include directory placed after torch's, so a real copy always wins. Nothing in
#    the glue needs cuBLAS/cuSPARSE, which this toolkit lacks.
#
# Environment: PYTHON (default .venv/bin/python, else python3) must import torch; NVCC (default
# nvcc on PATH, else $CUDA_HOME/bin/nvcc, else /usr/local/cuda/bin/nvcc); CXX (default g++);
# JOBS parallel compiles (default 2). Exits non-zero on the first failing step, after listing
# every failing file of that step.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
JOBS="${JOBS:-2}"
ARCHS="${A1_CHECK_ARCHS:-80 90}"
CXX="${CXX:-g++}"

if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
if [[ -z "${NVCC:-}" ]]; then
  if command -v nvcc >/dev/null 2>&1; then NVCC="$(command -v nvcc)"
  elif [[ -n "${CUDA_HOME:-}" && -x "$CUDA_HOME/bin/nvcc" ]]; then NVCC="$CUDA_HOME/bin/nvcc"
  else NVCC=/usr/local/cuda/bin/nvcc; fi
fi
[[ -x "$NVCC" ]] || { echo "check_cuda_compile: nvcc not found (set NVCC or CUDA_HOME)" >&2; exit 2; }

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
START=$SECONDS

# The toolkit's include directory, as nvcc itself resolves it (nvcc may be a wrapper script).
CUDA_INC="$("$NVCC" --dryrun -x cu -c /dev/null -o /dev/null 2>&1 | sed -n 's/^#\$ INCLUDES="-I\([^"]*\)".*/\1/p' | head -n1)"
[[ -d "$CUDA_INC" ]] || CUDA_INC="$(dirname "$(readlink -f "$NVCC")")/../include"
echo "check_cuda_compile: $("$NVCC" --version | tail -n1); archs: $ARCHS; jobs: $JOBS; python: $PYTHON"

GENCODE=()
for arch in $ARCHS; do GENCODE+=("-gencode" "arch=compute_${arch},code=sm_${arch}"); done

mapfile -t CU_FILES < <(find csrc -name '*.cu' | sort)
mapfile -t GLUE_FILES < <(find csrc -name '*_cuda.cpp' | sort)
[[ ${#CU_FILES[@]} -gt 0 ]] || { echo "check_cuda_compile: no .cu files under csrc" >&2; exit 2; }

echo "== nvcc -c: ${#CU_FILES[@]} files"
export A1_WORK="$WORK"
# -fmad=false as in cmake/cuda.cmake: no implicit FMA contraction, so the kernels round like the
# PyTorch twins (exact token agreement, not agreement up to ulp-level ties).
NVCC_FLAGS=(-c -std=c++17 -O3 -fmad=false -Icsrc "${GENCODE[@]}" --Werror all-warnings -Xcompiler -Wall,-Wextra,-Werror)
failed="$(printf '%s\n' "${CU_FILES[@]}" | xargs -P "$JOBS" -I{} sh -c \
  'f="$1"; shift; log="$A1_WORK/$(echo "$f" | tr / _).log"; "$@" "$f" -o "$log.o" >"$log" 2>&1 || { echo "FAIL $f"; cat "$log"; }' \
  _ {} "$NVCC" "${NVCC_FLAGS[@]}")"
if [[ -n "$failed" ]]; then
  echo "$failed"
  echo "check_cuda_compile: nvcc step FAILED after $((SECONDS - START)) s" >&2
  exit 1
fi
echo "   ok ($((SECONDS - START)) s)"

echo "== g++ -fsyntax-only (torch glue): ${#GLUE_FILES[@]} files"
if ! "$PYTHON" -c 'import torch' 2>/dev/null; then
  echo "check_cuda_compile: '$PYTHON' cannot import torch; set PYTHON to the project venv's python" >&2
  exit 2
fi
mapfile -t TORCH_INC < <("$PYTHON" -c 'import torch.utils.cpp_extension as c; print("\n".join(c.include_paths()))')
ABI="$("$PYTHON" -c 'import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))')"
mkdir -p "$WORK/shim/c10/cuda/impl"
[[ -f "${TORCH_INC[0]}/c10/cuda/impl/cuda_cmake_macros.h" ]] ||
  echo '#define C10_CUDA_BUILD_SHARED_LIBS' >"$WORK/shim/c10/cuda/impl/cuda_cmake_macros.h"
CXX_FLAGS=(-std=c++20 -fsyntax-only -Wall -Wextra -Werror -Wno-unused-parameter -Icsrc)
for inc in "${TORCH_INC[@]}"; do CXX_FLAGS+=(-isystem "$inc"); done
CXX_FLAGS+=(-isystem "$WORK/shim" -isystem "$CUDA_INC" "-D_GLIBCXX_USE_CXX11_ABI=$ABI" -DA1_TORCH_GLUE=1)
failed="$(printf '%s\n' "${GLUE_FILES[@]}" | xargs -P "$JOBS" -I{} sh -c \
  'f="$1"; shift; log="$A1_WORK/$(echo "$f" | tr / _).log"; "$@" "$f" >"$log" 2>&1 || { echo "FAIL $f"; cat "$log"; }' \
  _ {} "$CXX" "${CXX_FLAGS[@]}")"
if [[ -n "$failed" ]]; then
  echo "$failed"
  echo "check_cuda_compile: glue step FAILED after $((SECONDS - START)) s" >&2
  exit 1
fi
echo "   ok"
echo "check_cuda_compile: all CUDA sources compile ($((SECONDS - START)) s)"
