# soundbatch: the two commands of the README, and a few more.
#   make demo   synthetic city archive -> sweep on a local Ray with the bundled model -> report
#   make test   the test suite (real local Ray, real moto S3 server, real ONNX models)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
NETNS := infra/loopback-only
DEMO := demo-out
# Keep caches (onnxruntime telemetry, numba) inside the checkout, not in ~/.cache.
export XDG_CACHE_HOME := $(CURDIR)/.cache
export NUMBA_CACHE_DIR := $(CURDIR)/.cache/numba
export RAY_AUTH_MODE ?= disabled
export RAY_DATA_DISABLE_PROGRESS_BARS := 1

.PHONY: setup demo test bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

demo: setup
	rm -rf $(DEMO)
	$(BIN)/soundbatch synth archive $(DEMO)/archive --sensors 3 --hours 0.5 --seed 1
	$(NETNS) $(BIN)/soundbatch run $(DEMO)/archive --out $(DEMO)/results --windows
	$(BIN)/soundbatch report $(DEMO)/results

test: setup
	$(NETNS) $(BIN)/python -m pytest $(PYTEST_ARGS)

bench: setup
	$(NETNS) $(BIN)/python bench/run_bench.py $(BENCH_ARGS)

clean:
	rm -rf $(DEMO) bench-out .pytest_cache .cache
