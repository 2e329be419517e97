# Two commands do all set-up on a fresh machine that has Python 3.10+ (3.11 tested):
#   make demo   install, generate the synthetic corpus, train, evaluate, print the WER table
#   make test   install with the dev extra and run the whole test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
RUN_DIR ?= logs/synth_grid
EXPERIMENT ?= synth_grid
# both cores (pytest-xdist), one test file per worker so file- and session-scoped fixtures
# are built once per worker
PYTEST_ARGS ?= -n 2 --dist loadfile
# Every install resolves from the lock, so a release published tomorrow changes nothing here.
# requirements/lock.txt: the whole environment of pyproject.toml's dependencies + the dev, ssl
# and prepare extras, for every platform and Python >= 3.10 (uv's universal resolution); `make lock` remakes it.
# requirements/no-deps.txt: packages installed without their dependency lists (ESPnet).
LOCK := requirements/lock.txt
NO_DEPS := requirements/no-deps.txt
PIP_VERSION := 26.3
UV_VERSION := 0.13.9
LOCK_EXTRAS := --extra dev --extra ssl --extra prepare
# glibc returns every large freed block to the kernel by default, so each training step
# page-faults its activations in again; keeping them mapped makes CPU steps much faster.
export GLIBC_TUNABLES ?= glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=4294967296

.PHONY: demo test test-fast install install-dev lock clean-demo

# A changed lock rebuilds the environment from scratch: pip never removes a package that the
# new lock dropped, and a leftover (an old protobuf user, say) is an environment that is not
# the lock.
define fresh_venv
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet pip==$(PIP_VERSION)
endef

$(VENV)/.installed: pyproject.toml $(LOCK)
	$(fresh_venv)
	$(PY) -m pip install --quiet -c $(LOCK) -e .
	touch $@

# pip check runs before ESPnet goes in: ESPnet is installed without its (large) dependency
# list, because the parts we compare against import with our own dependencies alone.
$(VENV)/.installed-dev: pyproject.toml $(LOCK) $(NO_DEPS)
	$(fresh_venv)
	$(PY) -m pip install --quiet -c $(LOCK) -e ".[dev,ssl,prepare]"
	$(PY) -m pip check
	$(PY) -m pip install --quiet --no-deps -r $(NO_DEPS)
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

# Re-resolve the lock from pyproject.toml (PyPI's newest releases that satisfy it). To upgrade one
# package only: make lock LOCK_ARGS="--upgrade-package NAME"; without LOCK_ARGS, existing pins are
# kept wherever pyproject.toml still allows them.
LOCK_ARGS ?=
lock:
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet uv==$(UV_VERSION)
	.lock-venv/bin/uv pip compile pyproject.toml $(LOCK_EXTRAS) --universal \
		--python-version 3.10 --custom-compile-command "make lock" $(LOCK_ARGS) -o $(LOCK)

clean-demo:
	rm -rf $(RUN_DIR)
