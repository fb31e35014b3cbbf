#!/usr/bin/env python3
"""Benchmark (not a test): the Python package `ptekit` against the reference serializer
(executorch 1.5.1) in one process.

Usage (with the reference venv, after installing the bindings):
    "$PTEKIT_PYTHON" scripts/bench-python.py [FILE.pte ...] [--repeat N] [--json]

Default files: bench-out/transformer24.pte (many values, tiny weights) and
bench-out/weights384m.pte (384 MiB of constants); make them with
`"$PTEKIT_PYTHON" scripts/make_fixtures.py bench-out --bench`.

For each file, prints the median wall times of N interleaved runs (reference, ptekit,
reference, ...) and the ratio reference / ptekit for: deserialize (file bytes ->
PTEFile), serialize (PTEFile -> result, `extract_delegate_segments=True` like
`to_executorch`), `bytes(result)`, `result.write_to_file(f)` (a file in the page cache)
and serialize + bytes (what `.buffer` does); then the peak extra RSS of ptekit's
serialize of the memory file in a fresh process.
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]


sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from bench_interleave import interleaved, write_file  # noqa: E402


def rss_child(path):
    """Peak RSS growth of ptekit.serialize_pte_binary + len() in a fresh process."""
    code = f"""
import gc, json, sys
sys.path[:0] = {sys.path!r}
import ptekit
from executorch.exir._serialize._program import deserialize_pte_binary
data = open({str(path)!r}, "rb").read()
pte = deserialize_pte_binary(data)
gc.collect()
from bench_interleave import proc_status, reset_peak
if not reset_peak():
    sys.exit("cannot reset VmHWM (/proc/self/clear_refs)")
before = proc_status("VmRSS") // 1024
out = ptekit.serialize_pte_binary(pte, extract_delegate_segments=True)
n = len(out)
peak = proc_status("VmHWM") // 1024
print(json.dumps({{"rss_before_kib": before, "rss_peak_kib": peak, "len": n, "flatbuffer": out.flatbuffer_size}}))
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if res.returncode != 0:
        return {"error": res.stderr[-400:]}
    return json.loads(res.stdout.strip().splitlines()[-1])


def time_file(path, repeat):
    """Interleaved medians for one file: deserialize, serialize, bytes(result),
    write_to_file(f) of the result, serialize + bytes."""
    from executorch.exir._serialize._program import deserialize_pte_binary, serialize_pte_binary

    import ptekit

    data = pathlib.Path(path).read_bytes()
    opts = dict(extract_delegate_segments=True)
    pte = deserialize_pte_binary(data)
    assert ptekit.deserialize_pte_binary(data) == pte, "ptekit.deserialize_pte_binary differs"
    cord = serialize_pte_binary(pte, **opts)
    out = ptekit.serialize_pte_binary(pte, **opts)
    identical = bytes(out) == bytes(cord)
    tmp = os.path.join(tempfile.mkdtemp(prefix="ptekit-bench-"), "out.pte")
    rows = {
        "deserialize": interleaved(
            lambda: deserialize_pte_binary(data), lambda: ptekit.deserialize_pte_binary(data), repeat
        ),
        "serialize": interleaved(
            lambda: serialize_pte_binary(pte, **opts),
            lambda: ptekit.serialize_pte_binary(pte, **opts),
            repeat,
        ),
        "bytes(result)": interleaved(lambda: bytes(cord), lambda: bytes(out), repeat),
        "write_to_file(f)": interleaved(
            lambda: write_file(cord, tmp), lambda: write_file(out, tmp), repeat
        ),
        "serialize+bytes": interleaved(
            lambda: bytes(serialize_pte_binary(pte, **opts)),
            lambda: bytes(ptekit.serialize_pte_binary(pte, **opts)),
            repeat,
        ),
    }
    os.remove(tmp)
    return {
        "file": str(path),
        "bytes": len(data),
        "flatbuffer_bytes": out.flatbuffer_size,
        "serialize_identical": identical,
        "results": {
            k: {"reference_s": r, "ptekit_s": p, "ratio": r / p} for k, (r, p) in rows.items()
        },
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "files",
        nargs="*",
        default=[str(ROOT / "bench-out" / "transformer24.pte"), str(ROOT / "bench-out" / "weights384m.pte")],
        help="the .pte files to time (default: bench-out/transformer24.pte and weights384m.pte)",
    )
    ap.add_argument("--repeat", type=int, default=7, help="interleaved runs per measurement")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument(
        "--memory-file",
        default=str(ROOT / "bench-out" / "weights384m.pte"),
        help="a weight-heavy file for the serialize memory check (skipped if missing)",
    )
    args = ap.parse_args()
    files = [f for f in args.files if os.path.exists(f)]
    if not files:
        raise SystemExit(f"none of {args.files} exists (see the usage in this script's docstring)")
    results = [time_file(f, args.repeat) for f in files]
    heavy = rss_child(args.memory_file) if os.path.exists(args.memory_file) else None
    if args.json:
        print(json.dumps({"repeat": args.repeat, "files": results, "serialize_memory": heavy}))
        return
    mib = 1 << 20
    print(f"medians of {args.repeat} interleaved runs (reference, ptekit, reference, ...)")
    for r in results:
        print(
            f"{r['file']} ({r['bytes'] / mib:.1f} MiB, flatbuffer {r['flatbuffer_bytes'] / mib:.2f} MiB); "
            f"serialize identical: {r['serialize_identical']}"
        )
        for key, t in r["results"].items():
            print(
                f"  {key:18s} reference {t['reference_s'] * 1e3:9.2f} ms   ptekit {t['ptekit_s'] * 1e3:9.2f} ms"
                f"   ratio {t['ratio']:6.2f}x"
            )
    if heavy and "rss_peak_kib" in heavy:
        extra = (heavy["rss_peak_kib"] - heavy["rss_before_kib"]) / 1024
        print(
            f"{args.memory_file}: serialize peak extra RSS (fresh process) {extra:.2f} MiB; "
            f"flatbuffer {heavy['flatbuffer'] / mib:.2f} MiB of a {heavy['len'] / mib:.1f} MiB file"
        )


if __name__ == "__main__":
    main()
