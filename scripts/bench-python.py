#!/usr/bin/env python3
"""Benchmark (not a test): the Python package `ptekit` against the reference serializer
(executorch 1.5.1) in one process.

Usage (with the reference venv, after installing the bindings):
    "$PTEKIT_PYTHON" scripts/bench-python.py [FILE.pte] [--repeat N] [--json]

Default FILE: bench-out/transformer24.pte (make it with
`scripts/make_fixtures.py bench-out --bench --only transformer24`).

Prints best-of-N wall times for deserialize (file bytes -> PTEFile) and serialize
(PTEFile -> bytes, `extract_delegate_segments=True` like `to_executorch`), the ratios
reference / ptekit, and the peak extra memory of ptekit's serialize measured with
tracemalloc (Python allocations, including the result's flatbuffer, which PyO3 does not
report to tracemalloc) and as the RSS high-water delta of a fresh child process.
"""

import argparse
import gc
import json
import os
import pathlib
import subprocess
import sys
import time
import tracemalloc

ROOT = pathlib.Path(__file__).resolve().parents[1]


def best(fn, repeat):
    times = []
    result = None
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
        del result
        result = None
    result = fn()
    return min(times), result


def _vm_hwm_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def _reset_hwm():
    # Writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0).
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


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
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
open("/proc/self/clear_refs", "w").write("5")
before = rss()
out = ptekit.serialize_pte_binary(pte, extract_delegate_segments=True)
n = len(out)
peak = hwm()
print(json.dumps({{"rss_before_kib": before, "rss_peak_kib": peak, "len": n, "flatbuffer": out.flatbuffer_size}}))
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if res.returncode != 0:
        return {"error": res.stderr[-400:]}
    return json.loads(res.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("file", nargs="?", default=str(ROOT / "bench-out" / "transformer24.pte"))
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument(
        "--memory-file",
        default=str(ROOT / "bench-out" / "weights384m.pte"),
        help="a weight-heavy file for the serialize memory check (skipped if missing)",
    )
    args = ap.parse_args()

    import ptekit
    from executorch.exir._serialize._program import deserialize_pte_binary, serialize_pte_binary

    data = pathlib.Path(args.file).read_bytes()
    opts = dict(extract_delegate_segments=True)

    ref_de, pte = best(lambda: deserialize_pte_binary(data), max(2, args.repeat // 2))
    pk_de, pte2 = best(lambda: ptekit.deserialize_pte_binary(data), args.repeat)
    assert pte2 == pte, "ptekit.deserialize_pte_binary differs from the reference"
    ref_se, cord = best(lambda: serialize_pte_binary(pte, **opts), max(2, args.repeat // 2))
    pk_se, out = best(lambda: ptekit.serialize_pte_binary(pte, **opts), args.repeat)
    identical = bytes(out) == bytes(cord)
    # End to end: serialize and materialize the bytes, like `.buffer` does.
    ref_se_b, _ = best(lambda: bytes(serialize_pte_binary(pte, **opts)), max(2, args.repeat // 2))
    pk_se_b, _ = best(lambda: bytes(ptekit.serialize_pte_binary(pte, **opts)), args.repeat)

    gc.collect()
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    out = ptekit.serialize_pte_binary(pte, **opts)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    flatbuffer = out.flatbuffer_size
    weights = len(out) - flatbuffer
    child = rss_child(args.file)
    heavy = rss_child(args.memory_file) if os.path.exists(args.memory_file) else None

    result = {
        "file": args.file,
        "bytes": len(data),
        "deserialize": {"reference_s": ref_de, "ptekit_s": pk_de, "ratio": ref_de / pk_de},
        "serialize": {"reference_s": ref_se, "ptekit_s": pk_se, "ratio": ref_se / pk_se},
        "serialize_and_bytes": {
            "reference_s": ref_se_b,
            "ptekit_s": pk_se_b,
            "ratio": ref_se_b / pk_se_b,
        },
        "serialize_identical": identical,
        "serialize_memory": {
            "flatbuffer_bytes": flatbuffer,
            "non_flatbuffer_bytes": weights,
            "tracemalloc_peak_extra_bytes": peak - base,
            "rss_child": child,
            "rss_child_memory_file": heavy,
        },
    }
    if args.json:
        print(json.dumps(result))
        return
    mib = 1 << 20
    print(f"file: {args.file} ({len(data)} bytes)")
    for key in ("deserialize", "serialize", "serialize_and_bytes"):
        r = result[key]
        print(
            f"{key:20s} reference {r['reference_s'] * 1e3:9.2f} ms   ptekit {r['ptekit_s'] * 1e3:8.2f} ms"
            f"   ratio {r['ratio']:6.1f}x"
        )
    print(f"serialize bytes identical to the reference: {identical}")
    print(f"flatbuffer part: {flatbuffer / mib:.2f} MiB; segments: {weights / mib:.2f} MiB")
    print(
        "serialize peak extra memory on the Python heap (tracemalloc; Rust allocations "
        f"are not traced): {(peak - base) / mib:.2f} MiB"
    )
    if "rss_peak_kib" in child:
        extra = (child["rss_peak_kib"] - child["rss_before_kib"]) / 1024
        budget = flatbuffer / mib + 16
        print(
            f"serialize peak extra RSS (fresh process): {extra:.2f} MiB "
            f"(budget: flatbuffer + 16 MiB = {budget:.2f} MiB)"
        )
    else:
        print(f"RSS measurement failed: {child}")
    if heavy and "rss_peak_kib" in heavy:
        extra = (heavy["rss_peak_kib"] - heavy["rss_before_kib"]) / 1024
        print(
            f"{args.memory_file}: {heavy['len'] / mib:.1f} MiB file, flatbuffer "
            f"{heavy['flatbuffer'] / mib:.2f} MiB; serialize peak extra RSS {extra:.2f} MiB "
            f"(budget {heavy['flatbuffer'] / mib + 16:.2f} MiB)"
        )


if __name__ == "__main__":
    main()
