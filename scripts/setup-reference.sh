#!/usr/bin/env bash
# Creates (once) the reference environment: a virtual environment with executorch 1.5.1,
# torch and the Python flatbuffers package, pinned in scripts/reference-requirements.txt.
# Idempotent: a venv whose stamp matches the requirements file is reused.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
req="$PTEKIT_ROOT/scripts/reference-requirements.txt"
stamp="$PTEKIT_VENV/.ptekit-stamp"
want="$(sha256sum "$req" | cut -d' ' -f1)"
if [ -x "$PTEKIT_PYTHON" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "reference environment ready: $PTEKIT_VENV"
  exit 0
fi
echo "creating the reference environment in $PTEKIT_VENV (executorch 1.5.1 + torch, a few minutes)..."
mkdir -p "$PTEKIT_CACHE_DIR"
python3 -m venv "$PTEKIT_VENV"
"$PTEKIT_VENV/bin/pip" install -q --upgrade pip
"$PTEKIT_VENV/bin/pip" install -q -r "$req"
"$PTEKIT_PYTHON" -c "import executorch, flatbuffers, torch; print('executorch ok, torch', torch.__version__)"
echo "$want" > "$stamp"
