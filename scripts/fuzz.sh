#!/usr/bin/env bash
# Runs a cargo-fuzz target, seeded from the corpus and the project's fixtures.
#   scripts/fuzz.sh [TARGET] [SECONDS]     (default: read_pte, 120 s)
# New crashing inputs land in fuzz/artifacts/TARGET/; copy each into
# crates/ptekit-format/tests/fuzz_regressions/ so `cargo test` replays it forever.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/env.sh
target="${1:-read_pte}"
seconds="${2:-120}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz
seeds="fuzz/corpus/$target"
mkdir -p "$seeds"
case "$target" in
  read_pte) exts="pte" ;;
  read_bundled) exts="bpte" ;;
  read_ptd) exts="ptd" ;;
  write_pte) exts="pte" ;;
  read_npz) exts="npz" ;;
  read_cache_index | read_xnnpack) exts="" ;;
  *) exts="pte bpte ptd" ;;
esac
for ext in $exts; do
  for f in "$PTEKIT_CORPUS"/*."$ext" tests/fixtures/*."$ext"; do
    [ -f "$f" ] && cp -n "$f" "$seeds/" || true
  done
done
if [ "$target" = read_xnnpack ] && [ -z "$(ls -A "$seeds")" ]; then
  # Seed with every XNNPACK payload of the corpus and the fixtures (needs the bindings
  # installed in the reference venv: scripts/test does that).
  "$PTEKIT_PYTHON" - "$seeds" "$PTEKIT_CORPUS"/*.pte tests/fixtures/*.pte <<'PY'
import hashlib, pathlib, sys
import ptekit
out = pathlib.Path(sys.argv[1])
for path in sys.argv[2:]:
    pte = ptekit.deserialize_pte_binary(pathlib.Path(path).read_bytes())
    for plan in pte.program.execution_plan:
        for d in plan.delegates:
            if d.id == "XnnpackBackend":
                blob = bytes(pte.program.backend_delegate_data[d.processed.index].data)
                (out / hashlib.sha1(blob).hexdigest()).write_bytes(blob)
PY
fi
if [ "$target" = read_cache_index ] && [ -z "$(ls -A "$seeds")" ]; then
  # Seed with real cache files: a small warm-start run writes one.
  cargo build --release -q -p ptekit-cache --example xnnpack_warm_start
  lib="$(scripts/fetch-xnnpack.sh)"
  for seed in 1 2; do
    target/release/examples/xnnpack_warm_start --xnnpack-lib "$lib" --cache "$seeds/seed.cache" \
      --layers 2 --width 64 --weights-seed "$seed" --json >/dev/null
  done
fi
cd fuzz
cargo +nightly fuzz run "$target" "corpus/$target" -- -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=300000
