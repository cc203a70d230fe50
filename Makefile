# The commands of the README: `make demo`, `make tensorboard`, `make test`, `make screenshots`.
# Both create/reuse the virtual environment in .venv (see scripts/setup_venv.sh;
# TORCH_SPEC / TORCH_INDEX_URL choose the torch build).
VENV ?= .venv
PY := $(VENV)/bin/python
LOGDIR ?= lightning_logs
PORT ?= 6006

.PHONY: venv demo tensorboard screenshots test test-fast test-browser lint bench clean

venv:
	@VENV=$(VENV) bash scripts/setup_venv.sh

demo: venv
	@$(PY) examples/digits.py --logdir $(LOGDIR)

# TensorBoard from the venv: nothing to activate. `make tensorboard LOGDIR=other_logs PORT=6007`
tensorboard: venv
	@$(VENV)/bin/tensorboard --logdir $(LOGDIR) --port $(PORT) --bind_all

# Re-run the demo into a fresh folder, photograph TensorBoard with headless Chromium into
# docs/images/tensorboard_*.png, and refresh the README's sample report (scripts/screenshots.py).
screenshots: venv
	@$(PY) scripts/screenshots.py

test: venv
	@bash scripts/run_tests.sh $(PY)

test-fast: venv
	@$(PY) -m pytest -m "not slow" -q

test-browser: venv
	@$(PY) -m pytest -m browser -q tests/test_browser.py

lint: venv
	@$(PY) -m ruff check lightning_recipe tests examples benchmarks
	@$(PY) -m ruff format --check lightning_recipe tests examples benchmarks

bench: venv
	@$(PY) benchmarks/target_stats_scan.py

clean:
	rm -rf $(VENV) lightning_logs .pytest_cache
