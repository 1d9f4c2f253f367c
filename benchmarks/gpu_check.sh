#!/usr/bin/env bash
# The whole CUDA check in one command on a GPU machine, within 8 minutes on one H200:
#   1. build a1_ext._C with its CUDA kernels (cmake + ninja, TORCH_CUDA_ARCH_LIST default 9.0),
#   2. run the op tests, CUDA ones included (tests/a1_ext, without the CPU emulation of the kernels;
#      the GGUF block formats' dequantize and quant_linear among them), then a model with GGUF block
#      weights on the GPU against the same model on the CPU (tests/a1/models/test_gguf_quantized.py),
#   3. run the kernel microbenchmarks (benchmarks/bench_cuda_kernels.py),
# and write $OUT/summary.md (OUT defaults to ./gpu_check_out) with every step's status and time,
# plus build.log, pytest.log, bench_cuda.md/.json and env.txt. The summary is written even when
# a step fails or times out; the exit status is non-zero then.
#
#   bash benchmarks/gpu_check.sh            # from anywhere; uses the repository it lives in
#
# Python: $PYTHON if set, else the first of .venv/bin/python and python3 whose torch sees a GPU
# (GPU images usually ship a CUDA torch; the build uses that torch's headers). Only if none has
# one, it creates .venv and `pip install`s torch, which needs network access: GPU machines of
# this project have none, so there it reports the missing CUDA torch instead.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="${OUT:-$ROOT/gpu_check_out}"
mkdir -p "$OUT"
ARCHS="${TORCH_CUDA_ARCH_LIST:-9.0}"
JOBS="${MAX_JOBS:-$(nproc)}"
START=$SECONDS
STEPS=()
FAILED=0

record() {  # name status seconds
  STEPS+=("| $1 | $2 | $3 s |")
  [[ "$2" == ok ]] || FAILED=1
}

# run_step NAME TIMEOUT LOG CMD...: runs with a time limit, never aborts the script.
run_step() {
  local name="$1" limit="$2" log="$3" t0=$SECONDS rc=0
  shift 3
  echo "== $name (limit ${limit}s)"
  timeout --kill-after=10 "$limit" "$@" >>"$log" 2>&1 || rc=$?
  if [[ $rc -eq 0 ]]; then record "$name" ok $((SECONDS - t0))
  elif [[ $rc -eq 124 || $rc -eq 137 ]]; then record "$name" "TIMEOUT after ${limit}s" $((SECONDS - t0))
  else record "$name" "FAILED (exit $rc)" $((SECONDS - t0)); fi
  tail -n 5 "$log" || true
  return $rc
}

write_summary() {
  {
    echo "# a1 GPU check"
    echo
    echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ); commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "- device: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo 'nvidia-smi unavailable')"
    echo "- python: ${PY:-none}; torch: ${TORCH_INFO:-unknown}; archs: $ARCHS; total: $((SECONDS - START)) s"
    echo
    echo "| step | status | time |"
    echo "|---|---|---|"
    printf '%s\n' "${STEPS[@]}"
    if [[ -f "$OUT/pytest.log" ]]; then
      echo
      echo "## Tests"
      echo '```'
      grep -E "passed|failed|error|SKIPPED|FAILED|ERROR" "$OUT/pytest.log" | tail -n 40 || true
      echo '```'
    fi
    if [[ -f "$OUT/bench_cuda.md" ]]; then
      echo
      sed 's/^# /## /' "$OUT/bench_cuda.md"
    fi
  } >"$OUT/summary.md"
  echo "gpu_check: wrote $OUT/summary.md"
}
trap write_summary EXIT

# ---------------------------------------------------------------------------------- python + torch
has_cuda_torch() { "$1" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' >/dev/null 2>&1; }
PY="${PYTHON:-}"
if [[ -z "$PY" ]]; then
  for candidate in .venv/bin/python python3; do
    if command -v "$candidate" >/dev/null 2>&1 && has_cuda_torch "$candidate"; then PY="$candidate"; break; fi
  done
fi
if [[ -z "$PY" ]]; then
  echo "gpu_check: no python with a CUDA torch; creating .venv (needs network)" | tee -a "$OUT/env.txt"
  if run_step "create .venv + pip install torch" 240 "$OUT/env.txt" \
      sh -c 'python3 -m venv .venv && .venv/bin/pip install -q torch numpy pytest cmake ninja pybind11'; then
    PY=.venv/bin/python
  fi
fi
if [[ -z "$PY" ]] || ! has_cuda_torch "$PY"; then
  record "find a CUDA torch" "FAILED: no python whose torch sees a GPU" 0
  exit 1
fi
TORCH_INFO="$("$PY" -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda)')"
{ nvidia-smi || true; echo; echo "python: $PY ($TORCH_INFO)"; command -v nvcc && nvcc --version | tail -n 1; } >>"$OUT/env.txt" 2>&1

# ---------------------------------------------------------------------------------- 1. build
export NVCC_BIN="$(command -v nvcc || echo "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc")"
export BUILD_DIR="$ROOT/build/gpu_check" PY_EXE="$("$PY" -c 'import sys; print(sys.executable)')" ARCHS JOBS ROOT
if ! run_step "build (A1_CUDA=1, archs $ARCHS)" 240 "$OUT/build.log" bash -c '
    CUDACXX="$NVCC_BIN" cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DPython_EXECUTABLE="$PY_EXE" -DA1_CUDA=1 -DTORCH_CUDA_ARCH_LIST="$ARCHS" -DA1_OUTPUT_DIR="$ROOT/a1_ext" &&
    cmake --build "$BUILD_DIR" --target _C -j "$JOBS"'; then
  record "tests" "skipped: build failed" 0
  record "benchmarks" "skipped: build failed" 0
  exit 1
fi

export PYTHONPATH="$ROOT:$ROOT/python${PYTHONPATH:+:$PYTHONPATH}"
# ---------------------------------------------------------------------------------- 2. tests
run_step "tests (tests/a1_ext, CUDA included)" 130 "$OUT/pytest.log" \
  "$PY" -m pytest tests/a1_ext -q -rs -p no:cacheprovider --ignore=tests/a1_ext/test_cuda_emulated.py || true
run_step "quantized model on CUDA (tests/a1/models/test_gguf_quantized.py -k cuda)" 60 "$OUT/pytest.log" \
  "$PY" -m pytest tests/a1/models/test_gguf_quantized.py -q -rs -p no:cacheprovider -k cuda || true

# ---------------------------------------------------------------------------------- 3. benchmarks
run_step "CUDA kernel microbenchmarks" 80 "$OUT/bench.log" \
  "$PY" benchmarks/bench_cuda_kernels.py --out-dir "$OUT" || true

exit $FAILED
