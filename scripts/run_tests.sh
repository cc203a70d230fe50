#!/usr/bin/env bash
# Run the whole test suite (unit tests, doctests, Trainer runs, DDP tests) and ruff.
# pytest exits 5 when it collected no test: that is a failure here, not a pass.
set -uo pipefail
PY="${1:-.venv/bin/python}"
"$PY" -m ruff check lightning_recipe tests examples benchmarks || exit 1
"$PY" -m pytest -q
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "run_tests: pytest collected no tests; failing" >&2
  exit 1
fi
exit "$rc"
