# The README's two commands: `make demo` (train the embedded default) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# A CPU build of torch first where there is no GPU: a bare `torch` requirement would pull
# a multi-GB CUDA build. GPU machines get the default build (torch is not capped).
TORCH_CPU := torch==2.13.0

.PHONY: setup demo test test-slow bench results clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then \
		echo "GPU found: installing the default torch build"; \
	else \
		echo "no GPU: installing the CPU build of torch"; \
		$(PY) -m pip install -q $(TORCH_CPU) || $(PY) -m pip install -q torch --index-url https://download.pytorch.org/whl/cpu; \
	fi
	$(PY) -m pip install -q -e ".[test]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(VENV)/bin/paperrl gspo

# The fast suite (under ~10 minutes on 2 cores); test-slow trains and verifies every recipe (CI runs both).
test: setup
	$(PY) -m pytest tests -q -p no:cacheprovider -n 2 --dist loadfile -m "not slow"

test-slow: setup
	$(PY) -m pytest tests -q -p no:cacheprovider -n 2 --dist load -m slow

bench: setup
	$(PY) bench/run.py

# Every number the README quotes: the demo over 3 seeds, verify, start-up ratios -> results/RESULTS.md
results: setup
	$(PY) bench/results.py

clean:
	rm -rf $(VENV) runs build dist *.egg-info
