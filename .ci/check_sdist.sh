#!/usr/bin/env bash
# The sdist is complete and installable: `python -m build` makes the sdist, then a wheel FROM THAT
# SDIST (a fresh CMake build of a1_ext in its unpacked copy, not this tree's build/), installs the
# wheel with --no-deps into a throwaway directory, and smoke-tests it from there: import a1_ext and
# a1 (asserting they load from the wheel, not from this tree's editable install), run an op, check
# the bundled data and the `a1` console script. Run by .ci/run and `make check-sdist`; a fresh
# compile of the extension: 1-3 min on 2 cores (MAX_JOBS=2), 1 min when they are idle.
#
# --no-isolation: builds against .venv's torch (and its setuptools, cmake, ninja). An isolated
# build would install the pinned torch==2.13.0 from PyPI, which on Linux is the CUDA build (GBs).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
# Absolute, since the smoke test runs elsewhere; not through realpath, which would leave the venv.
[[ "$PY" == */* ]] && PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")"
export MAX_JOBS="${MAX_JOBS:-2}"
"$PY" -c 'import build' 2>/dev/null ||
  { echo "check_sdist: '$PY' lacks the 'build' package: $PY -m pip install build" >&2; exit 2; }

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
START=$SECONDS

# Build from a copy of the checkout's files (tracked and untracked, not ignored), so no stale
# build state leaks in: setuptools merges an old a1.egg-info/SOURCES.txt into the sdist's manifest.
mkdir "$WORK/src"
git ls-files -z --cached --others --exclude-standard |
  tar -c --null --ignore-failed-read -T - -f - 2>/dev/null | tar -x -C "$WORK/src" -f -
# Without --sdist/--wheel, build makes the sdist and then the wheel from the unpacked sdist.
"$PY" -m build --no-isolation --outdir "$WORK/dist" "$WORK/src"
SDIST=("$WORK"/dist/a1-*.tar.gz)
WHEEL=("$WORK"/dist/a1-*.whl)
echo "check_sdist: built $(basename "${SDIST[0]}") and $(basename "${WHEEL[0]}") in $((SECONDS - START)) s"

# What each archive must (not) hold.
"$PY" - "${SDIST[0]}" "${WHEEL[0]}" <<'PY'
import sys, tarfile, zipfile

sdist = {n.split("/", 1)[1] for n in tarfile.open(sys.argv[1]).getnames() if "/" in n}
for need in ["CMakeLists.txt", "setup.py", "pyproject.toml", "README.md", "cmake/sources.cmake",
             "cmake/torch.cmake", "cmake/cuda.cmake", "csrc/module.cpp", "csrc/ops.cpp",
             "a1_ext/__init__.py", "python/a1/cli.py", "python/a1/data/files/gsm8k.jsonl"]:
    assert need in sdist, f"sdist lacks {need}"
wheel = zipfile.ZipFile(sys.argv[2]).namelist()
assert any(n.startswith("a1_ext/_C.") and n.endswith(".so") for n in wheel), "wheel lacks a1_ext/_C*.so"
assert "a1/data/files/gsm8k.jsonl" in wheel, "wheel lacks the bundled datasets"
leaked = [n for n in wheel if "_quantile_drivers" in n or n.startswith(("tests/", "csrc/"))]
assert not leaked, f"wheel ships test drivers or sources: {leaked}"
print(f"check_sdist: sdist has {len(sdist)} files, wheel {len(wheel)}")
PY

SITE="$WORK/site"
"$PY" -m pip install --quiet --no-deps --no-compile --target "$SITE" "${WHEEL[0]}"
cd "$WORK"  # away from the source tree, so nothing resolves against it
PYTHONPATH="$SITE" "$PY" - "$SITE" <<'PY'
import pathlib, sys

import torch

import a1
import a1_ext
from a1.data.datasets import dataset_path
from a1_ext import _C, ops

site = pathlib.Path(sys.argv[1]).resolve()
for module in (a1, a1_ext, _C):
    path = pathlib.Path(module.__file__).resolve()
    assert site in path.parents, f"{module.__name__} came from {path}, not from the installed wheel"
logits, ids = torch.randn(3, 11), torch.tensor([1, 2, 3])
token_logprob, step_nll = ops.step_score(logits, ids, torch.tensor([0, 1, 3], dtype=torch.int32))
expected = torch.log_softmax(logits, -1).gather(1, ids[:, None]).squeeze(1)
torch.testing.assert_close(token_logprob, expected)
buffer = a1_ext.QuantileBuffer(capacity=4)
buffer.extend([0.1, 0.2])
assert buffer.p_value(0.15) == 2 / 3
assert not [n for n in dir(_C) if "push" in n or "rank" in n], f"test drivers in _C: {dir(_C)}"
assert dataset_path("gsm8k").is_file() and site in dataset_path("gsm8k").resolve().parents
print("check_sdist: the wheel's a1_ext and a1 import and run")
PY
PYTHONPATH="$SITE" "$SITE/bin/a1" --help >/dev/null  # the console script's target module exists
echo "check_sdist: passed in $((SECONDS - START)) s"
