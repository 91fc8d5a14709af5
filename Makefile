# Every target creates .venv on first use and installs seqjax into it.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Real datasets are read from here (never copied into the repo); override with SEQJAX_DATA_DIR.
SEQJAX_DATA_DIR ?= $(if $(wildcard ../shared/data),$(abspath ../shared/data),)
export SEQJAX_DATA_DIR
export KERAS_BACKEND := jax
PYTEST_ARGS ?=
# One script + config per experiment (experiments/<name>.py, experiments/configs/<name>.py);
# results in experiments/results/<name>/. SMOKE=1 runs the same code on tiny data.
EXPERIMENTS := imdb-course longrange charlm seq2seq ner mr imdb-best

.PHONY: install test test-fast lint demo bench bench-train clean results-table $(EXPERIMENTS)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,torch,data,plots]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile -m "not slow" $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check seqjax tests experiments

demo: $(STAMP)
	$(PY) experiments/demo.py

$(VENV)/.bench: $(STAMP)
	$(PY) -m pip install --quiet -e ".[bench]"
	touch $@

bench: $(VENV)/.bench
	$(PY) experiments/bench.py

$(EXPERIMENTS): $(STAMP)
	$(PY) experiments/$(subst -,_,$@).py

results-table: $(STAMP)
	$(PY) experiments/results_table.py

# The course's IMDB models, seqjax fit against Keras 3 on JAX; SMOKE=1: synthetic data, 1 epoch.
bench-train: $(STAMP)
	SMOKE=$(SMOKE) $(PY) experiments/bench_train.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
