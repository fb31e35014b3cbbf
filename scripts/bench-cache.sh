#!/usr/bin/env bash
# Benchmark of the packed-weight cache with the real XNNPACK (not a test).
# Builds examples/xnnpack_warm_start in release, then runs it RUNS times each:
#   none  - XNNPACK without a cache provider
#   cold  - cache on a fresh file (packs into the file; msync + fdatasync)
#   cold-nosync - same without the flushes (crash-safe, not power-loss-safe)
#   warm  - cache file from a cold run (maps instead of packing)
# and prints median create_ms, the ratios, and the resident memory growth
# over runtime creation + one inference (RssAnon vs RssFile from
# /proc/self/status, measured inside the example).
# Usage: scripts/bench-cache.sh [RUNS] [extra example args, e.g. --layers 16]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-7}"; shift || true
EXTRA=("$@")
LIB="$(scripts/fetch-xnnpack.sh)"
TARGET="${CARGO_TARGET_DIR:-target}"
cargo build --release -p ptekit-cache --example xnnpack_warm_start >&2
EX="$TARGET/release/examples/xnnpack_warm_start"
OUT="${BENCH_OUT:-bench-out}"
mkdir -p "$OUT"
CACHE="$OUT/bench.pwc"
RES="$OUT/results.jsonl"
: > "$RES"

run() { # label, args...
  local label="$1"; shift
  "$EX" --xnnpack-lib "$LIB" "${EXTRA[@]}" --json "$@" | sed "s/^/{\"mode\":\"$label\",\"r\":/; s/\$/}/" >> "$RES"
}

for i in $(seq "$RUNS"); do
  run none
  rm -f "$CACHE"; run cold --cache "$CACHE"
  rm -f "$CACHE"; run cold-nosync --cache "$CACHE" --no-sync
done
rm -f "$CACHE"; "$EX" --xnnpack-lib "$LIB" "${EXTRA[@]}" --cache "$CACHE" --json > /dev/null
for i in $(seq "$RUNS"); do
  run warm --cache "$CACHE"
done

echo "command: $0 $RUNS ${EXTRA[*]}"
echo "host: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
python3 - "$RES" "$CACHE" <<'PY'
import json, sys, statistics as st, subprocess
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {}
for r in rows:
    by.setdefault(r["mode"], []).append(r["r"])
shas = {r["r"]["output_sha256"] for r in rows}
med = lambda xs: st.median(xs)
print(f"{'mode':<12} {'runs':>4} {'create_ms(med)':>15} {'min':>8} {'max':>8} {'anon_delta_KiB':>15} {'file_delta_KiB':>15} {'hits':>5} {'misses':>6}")
m = {}
for mode in ["none", "cold", "cold-nosync", "warm"]:
    xs = by.get(mode, [])
    if not xs: continue
    c = [x["create_ms"] for x in xs]
    m[mode] = med(c)
    anon = med([x["memory"]["rss_anon_delta_kb"] for x in xs])
    fil = med([x["memory"]["rss_file_delta_kb"] for x in xs])
    cache = xs[0]["cache"] or {}
    print(f"{mode:<12} {len(xs):>4} {med(c):>15.2f} {min(c):>8.2f} {max(c):>8.2f} {anon:>15.0f} {fil:>15.0f} {cache.get('hits','-'):>5} {cache.get('misses','-'):>6}")
print()
if "warm" in m and "cold" in m:
    print(f"warm/cold          = {m['warm']/m['cold']:.3f}   (target <= 0.2)")
if "warm" in m and "cold-nosync" in m:
    print(f"warm/cold-nosync   = {m['warm']/m['cold-nosync']:.3f}")
if "warm" in m and "none" in m:
    print(f"warm/no-cache      = {m['warm']/m['none']:.3f}")
print(f"output_sha256 identical across all {len(rows)} runs: {len(shas) == 1} ({next(iter(shas))[:16]}...)")
w = by.get("warm", [{}])[0].get("cache") or {}
print(f"warm file_bytes={w.get('file_bytes')} bytes_mapped={w.get('bytes_mapped')} heap_fallbacks={w.get('heap_fallbacks')}")
PY
# Reference design comparison: XPWC maps every entry separately and rounds
# each to whole pages; this file uses one mapping and 128-byte alignment.
python3 - "$CACHE" <<'PY'
import struct, sys
b = open(sys.argv[1], "rb").read()
slot_count, = struct.unpack_from("<I", b, 16)
index_off, = struct.unpack_from("<Q", b, 24)
sizes = []
for i in range(slot_count):
    o = index_off + 256 * i
    s = b[o:o + 256]
    if len(s) < 256 or not any(s): break
    if s[4] == 1: sizes.append(struct.unpack_from("<Q", s, 24)[0])
pg = sum((n + 4095) // 4096 * 4096 - n for n in sizes)
al = sum((n + 127) // 128 * 128 - n for n in sizes)
print(f"entries={len(sizes)} packed_bytes={sum(sizes)}")
print(f"XPWC design (one mmap per entry, page-rounded): {len(sizes)} mappings, {pg} bytes of page padding")
print(f"ptekit (one shared window, 128-byte aligned):   1 mapping, {al} bytes of padding")
PY
