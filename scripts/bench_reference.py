#!/usr/bin/env python3
"""Times the reference serializer in-process (executorch 1.5.1), for ratios against ptekit.

Usage: bench_reference.py FILE.pte [--repeat N]
Prints one JSON object: best-of-N seconds for deserialize_pte_binary (file bytes → PTEFile)
and serialize_pte_binary (PTEFile → bytes), and the peak RSS of this process in KiB.
"""

import argparse
import json
import resource
import time


def best(fn, repeat):
    times = []
    result = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--skip-serialize", action="store_true")
    args = ap.parse_args()

    from executorch.exir._serialize._program import deserialize_pte_binary, serialize_pte_binary

    data = open(args.file, "rb").read()
    deser_s, pte = best(lambda: deserialize_pte_binary(data), args.repeat)
    out = {"file": args.file, "bytes": len(data), "deserialize_s": deser_s}
    if not args.skip_serialize:
        ser_s, cord = best(
            lambda: serialize_pte_binary(pte, extract_delegate_segments=True), args.repeat
        )
        out["serialize_s"] = ser_s
        out["serialize_identical"] = bytes(cord) == data
    out["peak_rss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps(out))


if __name__ == "__main__":
    main()
