# Two commands do all set-up on a fresh machine that has Python 3.10+ (3.11 tested):
#   make demo   install, generate the synthetic corpus, train, evaluate, print the WER table
#   make test   install with the dev extra and run the whole test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
RUN_DIR ?= logs/synth_grid
EXPERIMENT ?= synth_grid
PYTEST_ARGS ?=
# glibc returns every large freed block to the kernel by default, so each training step
# page-faults its activations in again; keeping them mapped makes CPU steps much faster.
export GLIBC_TUNABLES ?= glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=4294967296

.PHONY: demo test test-fast install install-dev clean-demo

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# Resumable: re-running continues from $(RUN_DIR)/checkpoints/last.ckpt if a run was cut off.
demo: $(VENV)/.installed
	$(PY) -m avsr.train +experiment=$(EXPERIMENT) hydra.run.dir=$(RUN_DIR) ckpt_path=last

test: $(VENV)/.installed-dev
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: $(VENV)/.installed-dev
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

clean-demo:
	rm -rf $(RUN_DIR)
