#!/usr/bin/env bash
# Makes a virtual environment with ptekit and NumPy only (no torch, no executorch), where
# tests/python/test_notorch.py checks that ptekit's readers work without them.
#
# Usage: scripts/setup-notorch-venv.sh [VENV]    (default: ~/.cache/ptekit/venv-notorch)
#
# 1. creates VENV with the base interpreter (`python3 -m venv`, no system site packages)
#    and installs NumPy into it with pip;
# 2. builds a wheel of bindings/python with the reference venv's maturin (release) and
#    installs it with --no-deps;
# 3. prints VENV's python on the last line of stdout.
# Steps 1 and 2 are skipped when VENV already has NumPy, or a ptekit built from the same
# sources (stamp file), respectively.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/env.sh

venv="${1:-$PTEKIT_CACHE_DIR/venv-notorch}"
base_python="${PTEKIT_BASE_PYTHON:-python3}"
maturin="$PTEKIT_VENV/bin/maturin"
python="$venv/bin/python"

if ! "$python" -c "import numpy" 2>/dev/null; then
  echo "== creating $venv (numpy only)" >&2
  "$base_python" -m venv --clear "$venv" >&2
  "$python" -m pip install --quiet --disable-pip-version-check numpy >&2
fi

stamp="$venv/.ptekit-bindings.stamp"
digest="$(scripts/bindings-digest.sh)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$digest" ] || ! "$python" -c "import ptekit" 2>/dev/null; then
  if [ ! -x "$maturin" ]; then
    echo "setup-notorch-venv: no maturin at $maturin (run scripts/setup-reference.sh)" >&2
    exit 1
  fi
  wheels="$(mktemp -d)"
  trap 'rm -rf "$wheels"' EXIT
  echo "== building the ptekit wheel" >&2
  "$maturin" build --quiet --release -m bindings/python/Cargo.toml -i "$python" --out "$wheels" >&2
  "$python" -m pip install --quiet --disable-pip-version-check --no-deps --force-reinstall \
    "$wheels"/ptekit-*.whl >&2
  echo "$digest" >"$stamp"
fi
echo "$python"
