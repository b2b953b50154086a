# cellcounter: `make run` opens the app, `make test` runs the tests. Each sets up what it needs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: run test bench package selftest-package sysdeps venv clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

sysdeps:
	@bash scripts/sysdeps.sh

run: $(STAMP) sysdeps
	@bash scripts/run-app.sh $(PY)

test: $(STAMP) sysdeps
	@if [ -n "$$DISPLAY" ] || ! command -v xvfb-run >/dev/null 2>&1; then \
		$(PY) -m pytest $(PYTEST_ARGS); \
	else \
		xvfb-run -a -s "-screen 0 1600x1000x24" $(PY) -m pytest $(PYTEST_ARGS); \
	fi

bench: $(STAMP) sysdeps
	@for b in bench/bench_*.py; do echo "== $$b"; \
		if [ -n "$$DISPLAY" ] || ! command -v xvfb-run >/dev/null 2>&1; then $(PY) $$b || exit 1; \
		else xvfb-run -a -s "-screen 0 1600x1000x24" $(PY) $$b || exit 1; fi; done

package: $(STAMP) sysdeps
	$(PY) -m pip install --quiet -e '.[dev,package]'
	$(PY) -m PyInstaller --noconfirm --log-level WARN pyinstaller.spec
	$(PY) scripts/archive.py

# The built app must start and predict offline with an empty HOME (what CI checks after the tests).
selftest-package:
	@bash scripts/selftest-package.sh

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
