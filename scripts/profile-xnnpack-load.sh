#!/usr/bin/env bash
# Profile of one `load_method` (or the first `execute`) in the reference
# Python runtime, with perf recording only around that call (not a test).
#
#   scripts/profile-xnnpack-load.sh OUT.data MODEL.pte [load|execute] [-- perf record options]
#   perf report -i OUT.data --no-children --sort dso,sym
#
# The caches are chosen like scripts/xnnpack_cache_run.py does:
#   LD_PRELOAD=target/release/libptekit_xnnpack.so PTEKIT_XNNPACK_CACHE=FILE scripts/profile-xnnpack-load.sh ...
#   PTEKIT_XPWC_PATH=FILE PTEKIT_XPWC_SHIM=target/release/xpwc_shim.so scripts/profile-xnnpack-load.sh ...
# (xpwc_shim.so is built by scripts/bench-xnnpack-cache.py). Default perf
# options: -F 49999 --call-graph dwarf,16384.
set -euo pipefail
out=$1 model=$2 what=${3:-load}
shift $(( $# < 3 ? $# : 3 ))
[ "${1:-}" = "--" ] && shift
opts=("$@")
[ ${#opts[@]} -eq 0 ] && opts=(-F 49999 --call-graph dwarf,16384)
here=$(cd "$(dirname "$0")" && pwd)
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
mkfifo "$d/ctl" "$d/ack"
cat > "$d/child.py" <<'PY'
import ctypes, os, sys, time
sys.path.insert(0, os.environ["PROFILE_SCRIPTS"])
if os.environ.get("PTEKIT_XPWC_SHIM"):
    ctypes.CDLL(os.environ["PTEKIT_XPWC_SHIM"], mode=os.RTLD_GLOBAL | os.RTLD_NOW)
import torch
from et_runtime import import_runtime

def perf(cmd):
    with open(os.environ["PROFILE_CTL"], "w") as f:
        f.write(cmd + "\n")
    with open(os.environ["PROFILE_ACK"]) as f:
        f.read(5)

what = os.environ["PROFILE_WHAT"]
program = import_runtime().Runtime.get().load_program(sys.argv[1])
if what == "load":
    perf("enable")
t0 = time.perf_counter()
method = program.load_method("forward")
t1 = time.perf_counter()
if what == "load":
    perf("disable")
meta = method.metadata
g = torch.Generator().manual_seed(1234)
inputs = [torch.rand(tuple(meta.input_tensor_meta(i).sizes()), generator=g) * 2 - 1
          for i in range(meta.num_inputs())]
if what == "execute":
    perf("enable")
t2 = time.perf_counter()
method.execute(inputs)
t3 = time.perf_counter()
if what == "execute":
    perf("disable")
print(f"load_method {1e3 * (t1 - t0):.2f} ms, first execute {1e3 * (t3 - t2):.2f} ms", file=sys.stderr)
PY
PROFILE_SCRIPTS=$here PROFILE_CTL=$d/ctl PROFILE_ACK=$d/ack PROFILE_WHAT=$what \
    perf record "${opts[@]}" --delay=-1 --control="fifo:$d/ctl,$d/ack" -o "$out" \
    "${PYTHON:-python}" "$d/child.py" "$model"
