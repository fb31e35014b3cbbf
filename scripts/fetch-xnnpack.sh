#!/usr/bin/env bash
# Puts the XNNPACK shared libraries of the ExecuTorch 1.5.1 wheel into
# $PTEKIT_XNNPACK_LIB (default $HOME/.cache/ptekit/xnnpack-lib) and prints
# that folder. Does nothing but print it when the files are already there.
# Needs python3 with pip and unzip (or python3's zipfile); no torch.
set -euo pipefail

DEST="${PTEKIT_XNNPACK_LIB:-$HOME/.cache/ptekit/xnnpack-lib}"
VERSION="${PTEKIT_EXECUTORCH_VERSION:-1.5.1}"
LIBS=(libexecutorch.so libexecutorch_threadpool.so libexecutorch_backend_xnnpack.so)

complete() {
  for l in "${LIBS[@]}"; do
    [[ -f "$DEST/$l" ]] || return 1
  done
}

if complete; then
  echo "$DEST"
  exit 0
fi

PY="${PTEKIT_PYTHON:-python3}"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

echo "fetching executorch==$VERSION wheel (XNNPACK libraries) ..." >&2
"$PY" -m pip download --quiet --no-deps --only-binary=:all: \
  "executorch==$VERSION" -d "$TMP" >&2
WHEEL="$(ls "$TMP"/executorch-*.whl 2>/dev/null | head -n1)"
if [[ -z "$WHEEL" ]]; then
  echo "error: pip download produced no executorch wheel in $TMP" >&2
  exit 1
fi

mkdir -p "$DEST.partial"
"$PY" - "$WHEEL" "$DEST.partial" <<'PYEOF'
import sys, zipfile, os
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    for n in z.namelist():
        if n.startswith("executorch/lib/") and n.endswith(".so") and n.count("/") == 2:
            data = z.read(n)
            out = os.path.join(dest, os.path.basename(n))
            with open(out + ".tmp", "wb") as f:
                f.write(data)
            os.chmod(out + ".tmp", 0o755)
            os.replace(out + ".tmp", out)
PYEOF
mkdir -p "$DEST"
for f in "$DEST.partial"/*.so; do
  mv -f "$f" "$DEST/"
done
rmdir "$DEST.partial" 2>/dev/null || true

if ! complete; then
  echo "error: the wheel did not contain ${LIBS[*]} under executorch/lib/" >&2
  exit 1
fi
echo "$DEST"
