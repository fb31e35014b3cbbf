#!/usr/bin/env python3
"""Benchmarks of issue 11 ("answer the questions"), measured, never asserted: ptekit
against the reference's own tools on the same input, whole process, interleaved A B A B
by `farm-bench --vs` (A = the reference, B = ptekit; the A/B median is ptekit's speed-up).

1. `ptekit diff A B` vs `python -m executorch.devtools.pte_tool.diff_pte A B`, on the
   bench transformer (transformer24.pte) and a copy with one weight byte changed;
2. `ptekit ops --yaml F` vs `python -m executorch.codegen.tools.gen_oplist
   --model_file_path F --output_path OUT`;
3. Python: `ptekit.inspect(F)` in a venv without torch (scripts/setup-notorch-venv.sh)
   vs the reference's `deserialize_pte_binary(open(F).read())`, both as `python -c` (the
   imports included: that is what a user waits for), and in one process after the imports
   (`scripts/bench_interleave.py`, medians).

Usage: scripts/bench-questions.py [--runs N] [--input FILE.pte]
Makes bench-out/transformer24.pte with the reference exporter when missing. Prints the
numbers as a Markdown table (for the README) and as JSON.
"""

import argparse
import json
import os
import pathlib
import re
import shlex
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
CACHE = pathlib.Path(os.environ.get("PTEKIT_CACHE_DIR", pathlib.Path.home() / ".cache" / "ptekit"))
REF_PYTHON = os.environ.get("PTEKIT_PYTHON", str(CACHE / "venv-et151" / "bin" / "python"))


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kw).stdout


def farm(a, b, runs):
    """`farm-bench --vs B -- A`: medians of A and B wall seconds, A/B, peaks."""
    out = sh(["farm-bench", "-n", str(runs), "--timeout", "900", "--vs", shlex.join(b), "--", *a])
    med = {}
    for line in out.splitlines():
        m = re.match(r"^(A|B|A/B) (wall s|peak MiB|wall|cpu s|cpu)\s+(\S+)\s+(\S+)\s+(\S+)", line)
        if m:
            med[f"{m.group(1)} {m.group(2)}"] = float(m.group(4))
    return {
        "reference_s": med["A wall s"],
        "ptekit_s": med["B wall s"],
        "speedup": med["A/B wall"],
        "reference_peak_mib": med["A peak MiB"],
        "ptekit_peak_mib": med["B peak MiB"],
    }


def one_weight_changed(src, dst):
    """`dst` = `src` with one byte of its first constant tensor flipped."""
    import ptekit

    s = ptekit.inspect(src)
    seg = s["segments"][s["constant_segment"]["segment_index"]]
    at = s["extended_header"]["segment_base_offset"] + seg["offset"] + 64
    data = bytearray(pathlib.Path(src).read_bytes())
    data[at] ^= 0x40
    pathlib.Path(dst).write_bytes(bytes(data))


IN_PROCESS = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from bench_interleave import interleaved
import ptekit
from executorch.exir._serialize._program import deserialize_pte_binary
data = open(sys.argv[2], "rb").read()
ref, ours = interleaved(lambda: deserialize_pte_binary(data), lambda: ptekit.inspect(data), int(sys.argv[3]))
print(json.dumps({"reference_s": ref, "ptekit_s": ours, "speedup": ref / ours}))
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="runs of each command (farm-bench -n)")
    ap.add_argument("--input", help="the program (default: bench-out/transformer24.pte)")
    args = ap.parse_args()

    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    sh(["cargo", "build", "--release", "-q", "-p", "ptekit-cli"], cwd=ROOT)
    exe = str(target / "release" / "ptekit")
    notorch = sh([str(ROOT / "scripts" / "setup-notorch-venv.sh")], cwd=ROOT).strip().splitlines()[-1]
    src = pathlib.Path(args.input) if args.input else ROOT / "bench-out" / "transformer24.pte"
    if not src.exists():
        sh([REF_PYTHON, str(ROOT / "scripts" / "make_fixtures.py"), str(src.parent), "--bench", "--only", src.stem])

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        other = os.path.join(tmp, "changed.pte")
        one_weight_changed(str(src), other)
        results["diff"] = farm(
            [REF_PYTHON, "-m", "executorch.devtools.pte_tool.diff_pte", str(src), other],
            [exe, "diff", str(src), other],
            args.runs,
        )
        results["ops --yaml"] = farm(
            [REF_PYTHON, "-m", "executorch.codegen.tools.gen_oplist", "--model_file_path", str(src),
             "--output_path", os.path.join(tmp, "selected_operators.yaml")],
            [exe, "ops", "--yaml", str(src)],
            args.runs,
        )
        results["python inspect (no torch), whole process"] = farm(
            [REF_PYTHON, "-c", "import sys; from executorch.exir._serialize._program import "
             "deserialize_pte_binary; deserialize_pte_binary(open(sys.argv[1], 'rb').read())", str(src)],
            [notorch, "-c", "import sys, ptekit; ptekit.inspect(sys.argv[1])", str(src)],
            args.runs,
        )
    results["python inspect, in process"] = json.loads(
        sh([REF_PYTHON, "-c", IN_PROCESS, str(ROOT / "scripts"), str(src), str(max(args.runs, 5))])
    )

    print(f"input: {src} ({src.stat().st_size:,} bytes); farm-bench -n {args.runs}, medians")
    print("| what | reference | ptekit | ptekit faster |")
    print("| --- | ---: | ---: | ---: |")
    for name, r in results.items():
        print(f"| {name} | {r['reference_s'] * 1e3:,.1f} ms | {r['ptekit_s'] * 1e3:,.2f} ms | {r['speedup']:,.0f}x |")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
