#!/usr/bin/env bash
# Benchmarks of issue "reader and writer": ptekit against the reference, in one run.
#
#   scripts/bench-pte.sh            # makes the inputs (reference exporter) if missing
#
# 1. inspect of a 24-layer transformer (~3,100 values): `ptekit inspect --json` (whole
#    process) and in-process decode (cargo bench), against the reference's
#    deserialize_pte_binary in-process;
# 2. rewrite of a 384 MiB weights-heavy program against `cp` of the same file, with the
#    peak RSS of each (GNU time).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/env.sh
scripts/setup-reference.sh >/dev/null
out=bench-out
mkdir -p "$out"
[ -f "$out/transformer24.pte" ] || "$PTEKIT_PYTHON" scripts/make_fixtures.py "$out" --bench --only transformer24
[ -f "$out/weights384m.pte" ] || "$PTEKIT_PYTHON" scripts/make_fixtures.py "$out" --bench --only weights384m
cargo build --release -q -p ptekit-cli
bin="${CARGO_TARGET_DIR:-target}/release/ptekit"

t24="$out/transformer24.pte"
big="$out/weights384m.pte"
echo "inputs: $t24 ($(stat -c %s "$t24") bytes), $big ($(stat -c %s "$big") bytes)"

# --- 1. inspect vs reference deserialize
ref=$("$PTEKIT_PYTHON" scripts/bench_reference.py "$t24" --repeat 5 2>/dev/null | tail -1)
ref_s=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['deserialize_s'])" "$ref")
n=50
start=$(date +%s%N)
for _ in $(seq $n); do "$bin" inspect --json "$t24" >/dev/null; done
end=$(date +%s%N)
ours_s=$(python3 -c "print(($end-$start)/1e9/$n)")
inproc=$(cargo bench -q -p ptekit-format --bench decode -- "$(realpath "$t24")" 2>/dev/null | tail -1)
python3 - "$ref_s" "$ours_s" "$inproc" <<'PY'
import json, sys
ref, ours, inproc = float(sys.argv[1]), float(sys.argv[2]), json.loads(sys.argv[3])
print(f"inspect transformer24: reference deserialize_pte_binary {ref*1e3:.1f} ms (in-process)")
print(f"  ptekit inspect --json (whole process) {ours*1e3:.2f} ms  -> {ref/ours:.0f}x faster")
print(f"  ptekit decode in-process {inproc['decode_s']*1e6:.0f} us -> {ref/inproc['decode_s']:.0f}x faster")
PY

# --- 2. rewrite vs cp, with peak RSS
sync
cat "$big" >/dev/null   # warm the page cache for both
best() { # best-of-3 wall seconds and max RSS KiB of a command
  local b=999999 rss=0
  for _ in 1 2 3; do
    rm -f "$out/copy.pte"
    local line
    line=$( { /usr/bin/time -f "%e %M" "$@" >/dev/null; } 2>&1 | tail -1)
    local t=${line% *} m=${line#* }
    b=$(python3 -c "print(min($b,$t))"); rss=$m
  done
  echo "$b $rss"
}
read cp_s cp_rss < <(best cp "$big" "$out/copy.pte")
read rw_s rw_rss < <(best "$bin" rewrite "$big" "$out/copy.pte")
cmp "$big" "$out/copy.pte" && echo "rewrite output byte-identical"
read cps_s cps_rss < <(best sh -c "cp '$big' '$out/copy.pte' && sync '$out/copy.pte'")
read rws_s rws_rss < <(best "$bin" rewrite --sync "$big" "$out/copy.pte")
python3 - "$cp_s" "$cp_rss" "$rw_s" "$rw_rss" "$cps_s" "$rws_s" "$rws_rss" <<'PY'
import sys
cp, cprss, rw, rwrss, cps, rws, rwsrss = map(float, sys.argv[1:])
print(f"rewrite weights384m (best of 3, warm page cache):")
print(f"  cp                    {cp:.3f} s (peak RSS {cprss/1024:.0f} MiB)")
print(f"  ptekit rewrite        {rw:.3f} s = {rw/max(cp,0.001):.2f}x cp (peak RSS {rwrss/1024:.0f} MiB)")
print(f"  cp + sync             {cps:.3f} s")
print(f"  ptekit rewrite --sync {rws:.3f} s = {rws/max(cps,0.001):.2f}x cp+sync (peak RSS {rwsrss/1024:.0f} MiB)")
PY
rm -f "$out/copy.pte"
