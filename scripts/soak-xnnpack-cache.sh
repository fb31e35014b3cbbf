#!/usr/bin/env bash
# Long soak of the XNNPACK packed-weight cache in the real ExecuTorch runtime (run by
# hand, not part of scripts/test):
#   scripts/soak-xnnpack-cache.sh [KILLS]   (default 100)
# 1. KILLS cold starts through LD_PRELOAD, each killed with SIGKILL at a random moment;
#    after each kill the file has no torn record; at the end every model gives outputs
#    bit-identical to the runtime without a cache and `ptekit cache verify` passes.
# 2. Four processes at once on one file.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/env.sh
kills="${1:-100}"
cargo build --release -q -p ptekit-xnnpack-preload -p ptekit-cli
export PTEKIT_BIN="${CARGO_TARGET_DIR:-$PTEKIT_ROOT/target}/release/ptekit"
start=$(date +%s)
PTEKIT_KILLS="$kills" "$PTEKIT_PYTHON" -m pytest -q tests/python/test_xnnpack_cache.py \
  -k "sigkill or four_processes"
echo "soak: $kills kills, $(( $(date +%s) - start )) s"
