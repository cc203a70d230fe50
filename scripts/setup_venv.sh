#!/usr/bin/env bash
# Create or reuse the project's virtual environment and install what the project needs.
#
# Torch is installed first and on its own, so that the rest of the install never pulls a
# multi-GB CUDA build on a CPU-only machine:
#   1. a torch already installed in the venv is kept;
#   2. TORCH_SPEC (and optionally TORCH_INDEX_URL) override what is installed, e.g.
#        TORCH_SPEC="torch==2.13.0" or
#        TORCH_SPEC="torch" TORCH_INDEX_URL="https://download.pytorch.org/whl/cpu";
#   3. otherwise, when the Python that creates the venv has torch, the venv is created with
#      --system-site-packages so that torch is used as it is (set USE_SYSTEM_TORCH=0 to opt out);
#   4. otherwise a torch wheel for this Python found in pip's find-links folders (e.g. /opt/wheels)
#      is installed;
#   5. otherwise torch comes from the package index as usual.
set -euo pipefail
VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
STAMP="$VENV/.lightning-recipe-installed"

if [ ! -x "$VENV/bin/python" ]; then
  if [ -z "${TORCH_SPEC:-}" ] && [ "${USE_SYSTEM_TORCH:-1}" != 0 ] && "$PYTHON" -c "import torch" 2>/dev/null; then
    echo "[setup] creating virtual environment in $VENV (using the installed torch)"
    "$PYTHON" -m venv --system-site-packages "$VENV"
  else
    echo "[setup] creating virtual environment in $VENV"
    "$PYTHON" -m venv "$VENV"
  fi
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check -q)

if [ -f "$STAMP" ] && [ "$STAMP" -nt pyproject.toml ] && "$PY" -c "import torch, lightning_recipe" 2>/dev/null; then
  exit 0
fi

# The newest torch wheel for this interpreter in pip's find-links folders, if any.
local_torch_wheel() {
  local tag dirs d
  tag=$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
  dirs="${PIP_FIND_LINKS:-} $("$PY" -m pip config get global.find-links 2>/dev/null || true)"
  for d in $dirs; do
    d="${d#file://}"
    [ -d "$d" ] && ls "$d"/torch-[0-9]*-"$tag"-"$tag"-*.whl 2>/dev/null
  done | sort -V | tail -n 1
}

if "$PY" -c "import torch" 2>/dev/null; then
  echo "[setup] keeping installed torch $("$PY" -c 'import torch; print(torch.__version__)')"
elif [ -n "${TORCH_SPEC:-}" ]; then
  echo "[setup] installing $TORCH_SPEC (TORCH_SPEC)"
  if [ -n "${TORCH_INDEX_URL:-}" ]; then
    "${PIP[@]}" install "$TORCH_SPEC" --index-url "$TORCH_INDEX_URL"
  else
    "${PIP[@]}" install "$TORCH_SPEC"
  fi
elif wheel=$(local_torch_wheel) && [ -n "$wheel" ]; then
  echo "[setup] installing torch from the local wheel $wheel"
  "${PIP[@]}" install "$wheel"
else
  echo "[setup] installing torch from the package index (set TORCH_SPEC/TORCH_INDEX_URL for a CPU build)"
  "${PIP[@]}" install "torch>=2.3"
fi

echo "[setup] installing lightning-recipe and its dev dependencies"
"${PIP[@]}" install -e ".[dev]"
touch "$STAMP"
