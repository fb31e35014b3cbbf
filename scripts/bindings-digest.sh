#!/usr/bin/env bash
# Prints a digest of every source the Python bindings are built from; scripts/test and
# scripts/setup-notorch-venv.sh rebuild the bindings when it changes.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
find bindings/python crates/ptekit-format crates/ptekit-flatbuffers crates/ptekit-cache crates/ptekit-xnnpack-preload \
    -type f \( -name '*.rs' -o -name '*.toml' -o -name '*.py' -o -name '*.pyi' -o -name py.typed \) \
    -not -path '*/target/*' -print0 | sort -z | xargs -0 sha256sum | cat - Cargo.toml Cargo.lock \
    | sha256sum | cut -d' ' -f1
