#!/usr/bin/env bash
# Create or reuse the project's virtual environment and install what the project needs.
#
# Torch is installed first and on its own, so that the rest of the install never pulls a
# multi-GB CUDA build on a CPU-only machine:
#   1. a torch already installed in the venv is kept;
#   2. TORCH_SPEC (and optionally TORCH_INDEX_URL) override what is installed, e.g.
#        TORCH_SPEC="torch==2.13.0" or
#        TORCH_SPEC="torch" TORCH_INDEX_URL="https://download.pytorch.org/whl/cpu";
#   3. otherwise a torch wheel found locally (pip's find-links, e.g. /opt/wheels) is preferred;
#   4. otherwise torch comes from the package index as usual.
set -euo pipefail
VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
STAMP="$VENV/.lightning-recipe-installed"

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating virtual environment in $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check -q)

if [ -f "$STAMP" ] && [ "$STAMP" -nt pyproject.toml ] && "$PY" -c "import torch, lightning_recipe" 2>/dev/null; then
  exit 0
fi

if "$PY" -c "import torch" 2>/dev/null; then
  echo "[setup] keeping installed torch $("$PY" -c 'import torch; print(torch.__version__)')"
elif [ -n "${TORCH_SPEC:-}" ]; then
  echo "[setup] installing $TORCH_SPEC (TORCH_SPEC)"
  if [ -n "${TORCH_INDEX_URL:-}" ]; then
    "${PIP[@]}" install "$TORCH_SPEC" --index-url "$TORCH_INDEX_URL"
  else
    "${PIP[@]}" install "$TORCH_SPEC"
  fi
elif "${PIP[@]}" install --no-index "torch>=2.3" 2>/dev/null; then
  echo "[setup] installed torch $("$PY" -c 'import torch; print(torch.__version__)') from a local wheel"
else
  echo "[setup] installing torch from the package index (set TORCH_SPEC/TORCH_INDEX_URL for a CPU build)"
  "${PIP[@]}" install "torch>=2.3"
fi

echo "[setup] installing lightning-recipe and its dev dependencies"
"${PIP[@]}" install -e ".[dev]"
touch "$STAMP"
