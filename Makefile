# cellcounter: `make run` opens the app, `make test` runs the tests. Each sets up what it needs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: run test bench package selftest-package sysdeps venv clean lock

LOCK := requirements.lock
# Each pytest worker is its own process: a native crash (a GL driver's segfault) fails the test it hit and a new
# worker carries on with the rest, instead of taking the whole run down.
TEST_WORKERS ?= 2

$(STAMP): pyproject.toml $(LOCK)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c $(LOCK) -e '.[dev]'
	@touch $(STAMP)

# Re-resolve every dependency from pyproject.toml in a scratch venv and write the versions to requirements.lock
# (on purpose only: commit the new lock with the tests that passed on it). See docs/install.md.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade pip
	.lock-venv/bin/python -m pip install --quiet -e '.[dev,package]'
	.lock-venv/bin/python scripts/freeze_lock.py > $(LOCK).new && mv $(LOCK).new $(LOCK)
	rm -rf .lock-venv

venv: $(STAMP)

sysdeps:
	@bash scripts/sysdeps.sh

run: $(STAMP) sysdeps
	@bash scripts/run-app.sh $(PY)

test: $(STAMP) sysdeps
	@if [ -n "$$DISPLAY" ] || ! command -v xvfb-run >/dev/null 2>&1; then \
		$(PY) -m pytest -n $(TEST_WORKERS) --max-worker-restart 20 $(PYTEST_ARGS); \
	else \
		xvfb-run -a -s "-screen 0 1600x1000x24" $(PY) -m pytest -n $(TEST_WORKERS) --max-worker-restart 20 $(PYTEST_ARGS); \
	fi

bench: $(STAMP) sysdeps
	@for b in bench/bench_*.py; do echo "== $$b"; \
		if [ -n "$$DISPLAY" ] || ! command -v xvfb-run >/dev/null 2>&1; then $(PY) $$b || exit 1; \
		else xvfb-run -a -s "-screen 0 1600x1000x24" $(PY) $$b || exit 1; fi; done

# FLAVOUR=full (torch, CUDA where present: fine-tuning and GPU inference) or count (no torch, no CUDA: predict,
# correct, count, export through OpenVINO / ONNX Runtime). docs/install.md says which to pick.
FLAVOUR ?= full

package: $(STAMP) sysdeps
	$(PY) -m pip install --quiet -c $(LOCK) -e '.[dev,package]'
	@if [ "$(FLAVOUR)" = count ]; then $(PY) scripts/stage_resources.py build/count-resources; fi
	CELLCOUNTER_FLAVOUR=$(FLAVOUR) $(PY) -m PyInstaller --noconfirm --log-level WARN --workpath build/pyi-$(FLAVOUR) \
		pyinstaller.spec
	$(PY) scripts/archive.py $(FLAVOUR)

# The built app must start and predict offline with an empty HOME (what CI checks after the tests).
selftest-package:
	@bash scripts/selftest-package.sh $(FLAVOUR)

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
