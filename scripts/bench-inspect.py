#!/usr/bin/env python3
"""`ptekit inspect --top N` against the reference's deserialize, whole process each.

Usage (from the repository root, after `cargo build --release -p ptekit-cli`):

    "$PTEKIT_PYTHON" scripts/bench-inspect.py [--runs 11] [--top 10] [FILE.pte ...]

Without files it uses the benchmark programs of `scripts/make_fixtures.py bench-out
--bench` that exist (transformer24, weights384m, weights64m_xnnpack, weights64m_external).

For each file the two commands run in turn, A B A B ... (one untimed warm-up of each
first), so that a machine whose speed drifts slows both alike:

  A  ptekit inspect --top N FILE > /dev/null
  B  python -c 'from executorch.exir._serialize._program import deserialize_pte_binary;
                deserialize_pte_binary(open(FILE, "rb").read())'

Each run is timed from outside (wall clock around the child, start-up included); the
report gives the median of each side and the median of the per-pair ratios B/A. Nothing
is asserted: the numbers are for the README.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = ["transformer24.pte", "weights384m.pte", "weights64m_xnnpack.pte",
         "weights64m_external.pte"]


def timed(cmd):
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="*")
    ap.add_argument("--runs", type=int, default=11)
    ap.add_argument("--top", type=int, default=10)
    ap.add_argument("--bin", default=os.path.join(
        os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "ptekit"))
    args = ap.parse_args()
    files = args.files or [p for p in (os.path.join(ROOT, "bench-out", f) for f in BENCH)
                           if os.path.exists(p)]
    if not files:
        sys.exit("no inputs: run scripts/make_fixtures.py bench-out --bench first")
    print(f"{'file':<28} {'bytes':>13} {'ptekit inspect --top':>21} {'reference':>10} {'ratio':>7}")
    for path in files:
        ours = [args.bin, "inspect", "--top", str(args.top), path]
        ref = [sys.executable, "-c",
               "import sys; from executorch.exir._serialize._program import "
               "deserialize_pte_binary; deserialize_pte_binary(open(sys.argv[1], 'rb').read())",
               path]
        timed(ours)
        timed(ref)
        a, b, ratios = [], [], []
        for _ in range(args.runs):
            ta, tb = timed(ours), timed(ref)
            a.append(ta)
            b.append(tb)
            ratios.append(tb / ta)
        print(f"{os.path.basename(path):<28} {os.path.getsize(path):>13,} "
              f"{statistics.median(a) * 1e3:>18.1f} ms {statistics.median(b):>8.2f} s "
              f"{statistics.median(ratios):>6.0f}x", flush=True)


if __name__ == "__main__":
    main()
