# Sourced by the scripts: where the reference environment lives.
: "${PTEKIT_CACHE_DIR:=$HOME/.cache/ptekit}"
: "${PTEKIT_VENV:=$PTEKIT_CACHE_DIR/venv-et151}"
: "${PTEKIT_PYTHON:=$PTEKIT_VENV/bin/python}"
: "${PTEKIT_XNNPACK_LIB:=$PTEKIT_CACHE_DIR/xnnpack-lib}"
PTEKIT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
: "${PTEKIT_CORPUS:=$PTEKIT_ROOT/../shared/corpus}"
export PTEKIT_CACHE_DIR PTEKIT_VENV PTEKIT_PYTHON PTEKIT_XNNPACK_LIB PTEKIT_ROOT PTEKIT_CORPUS
