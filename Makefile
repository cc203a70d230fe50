# The two commands of the README: `make demo` and `make test`.
# Both create/reuse the virtual environment in .venv (see scripts/setup_venv.sh;
# TORCH_SPEC / TORCH_INDEX_URL choose the torch build).
VENV ?= .venv
PY := $(VENV)/bin/python
LOGDIR ?= lightning_logs

.PHONY: venv demo test test-fast lint bench clean

venv:
	@VENV=$(VENV) bash scripts/setup_venv.sh

demo: venv
	@$(PY) examples/digits.py --logdir $(LOGDIR)

test: venv
	@bash scripts/run_tests.sh $(PY)

test-fast: venv
	@$(PY) -m pytest -m "not slow" -q

lint: venv
	@$(PY) -m ruff check lightning_recipe tests examples benchmarks
	@$(PY) -m ruff format --check lightning_recipe tests examples benchmarks

bench: venv
	@$(PY) benchmarks/target_stats_scan.py

clean:
	rm -rf $(VENV) lightning_logs .pytest_cache
