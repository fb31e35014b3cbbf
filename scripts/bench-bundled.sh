#!/usr/bin/env bash
# Benchmark of issue "bundled programs and tensor-data files": reading the largest
# bundled program of the corpus (transformer_xnnpack.bpte), in one process each:
#   - reference: executorch 1.5.1 `deserialize_from_flatbuffer_to_bundled_program`
#     (flatc --json + json.loads + dataclasses), best and median of 20 runs;
#   - ptekit: `decode_bundled` (verified, zero-copy), and the same plus parsing the
#     embedded program in place, best and median of 500 runs (cargo bench, release).
#
#   scripts/bench-bundled.sh [FILE.bpte]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/env.sh
scripts/setup-reference.sh >/dev/null
file="${1:-$PTEKIT_CORPUS/transformer_xnnpack.bpte}"
echo "input: $file ($(stat -c %s "$file") bytes)"

ref=$("$PTEKIT_PYTHON" - "$file" 2>/dev/null <<'PY' | tail -1
import json, statistics, sys, time
from executorch.devtools.bundled_program.serialize import deserialize_from_flatbuffer_to_bundled_program
data = open(sys.argv[1], "rb").read()
deserialize_from_flatbuffer_to_bundled_program(data)  # warm up (imports, flatc cache)
times = []
for _ in range(20):
    t = time.perf_counter()
    bp = deserialize_from_flatbuffer_to_bundled_program(data)
    times.append(time.perf_counter() - t)
print(json.dumps({"best_s": min(times), "median_s": statistics.median(times)}))
PY
)
ours=$(cargo bench -q -p ptekit-format --bench bundled -- "$file" 2>/dev/null | tail -1)
python3 - "$ref" "$ours" <<'PY'
import json, sys
ref, ours = json.loads(sys.argv[1]), json.loads(sys.argv[2])
r = ref["median_s"]
print(f"reference deserialize_from_flatbuffer_to_bundled_program: median {r*1e3:.1f} ms, best {ref['best_s']*1e3:.1f} ms")
for key, label in [("decode", "ptekit decode_bundled"), ("decode_with_program", "ptekit decode_bundled + program_file")]:
    m = ours[key + "_median_s"]
    print(f"{label}: median {m*1e6:.1f} us, best {ours[key + '_s']*1e6:.1f} us -> {r/m:.0f}x faster (median vs median)")
print(f"ptekit pack_bundled: median {ours['pack_median_s']*1e6:.1f} us")
PY
