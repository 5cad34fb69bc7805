# Two commands do all the set-up on a fresh clone:
#   make train   creates .venv if missing, installs, runs the learned stage-1 recipe beside popular and co-click on MovieLens-100K, prints the table (the sweep's results.md)
#   make test    creates .venv if missing, installs, runs the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
SWEEP := outputs/main/$(shell date +%Y-%m-%d_%H-%M-%S)

.PHONY: install train test bench

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	touch $@

install: $(VENV)/.installed

train: install
	$(PY) train.py experiment=flagship hydra.sweep.dir=$(SWEEP)

test: install
	$(PY) -m pytest -q

bench: install
	$(PY) benchmarks/graph_build.py
