# Two commands do all the set-up from a fresh clone:
#   make run    -> creates .venv, installs decodelab, opens the app on the bundled demo model
#   make test   -> the same set-up, then the test suite
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: run test setup clean bench

run: $(STAMP)
	$(VENV)/bin/decodelab $(ARGS)

test: $(STAMP) $(VENV)/.llamacpp
	$(VENV)/bin/python -m pytest -q $(ARGS)

bench: $(STAMP)
	$(VENV)/bin/decodelab bench $(ARGS)

setup: $(STAMP)

# CPU torch first: it lies on this machine's disk, while a plain "torch" pulls a multi-GB CUDA build.
# On a GPU box, install the CUDA torch you want into .venv before running make.
$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -c "import torch" 2>/dev/null || $(VENV)/bin/python -m pip install --quiet torch==2.13.0
	$(VENV)/bin/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

# The llama.cpp server the remote-backend tests talk to; only the tests need it.
$(VENV)/.llamacpp: $(STAMP)
	$(VENV)/bin/python -m pip install --quiet -e ".[llamacpp]"
	touch $(VENV)/.llamacpp

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .hypothesis
