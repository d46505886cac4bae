# Everything installs from a bare machine with python3: `make demo`, `make test`, `make bench`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: venv demo test lint bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[train,device,dsp,dev]"
	rm -f $(VENV)/.installed-* && touch $@

demo: venv
	$(VENV)/bin/edgecnn demo --out demo_out

lint: venv
	$(VENV)/bin/ruff check .

test: venv lint
	$(PY) -m pytest -q

bench: venv
	$(PY) benchmarks/run_all.py

clean:
	rm -rf demo_out .pytest_cache
