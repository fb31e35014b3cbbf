#!/usr/bin/env python3
"""Benchmark (not a test): the XNNPACK packed-weight cache in the real
ExecuTorch runtime, one fresh process per measurement, interleaved
(none, cold, warm, none, cold, warm, ...), medians reported.

    python scripts/make_cache_models.py bench-out --bench
    python scripts/bench-xnnpack-cache.py bench-out/mlp_fp32_big.pte bench-out/dyn_int8_big.pte [--runs 5]

Modes: `none` = the runtime without a cache; `cold` = LD_PRELOAD
libptekit_xnnpack.so with a new cache file; `warm` = the same file again.
Columns: load_method ms (program + method load), first execute ms,
RssAnon / RssFile growth over the load and first execute (KiB), cache file
size. The reference runtime's own XPWC cache is not measured here (it needs a
C++ load-option wrapper); README quotes the issue's figures for it.
"""
import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
RUN = ROOT / "scripts" / "xnnpack_cache_run.py"
TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release"


def once(model, cache=None):
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    env.pop("PTEKIT_XNNPACK_CACHE", None)
    if cache is not None:
        env["LD_PRELOAD"] = str(TARGET / "libptekit_xnnpack.so")
        env["PTEKIT_XNNPACK_CACHE"] = str(cache)
    p = subprocess.run([sys.executable, str(RUN), str(model)], capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise SystemExit(p.stderr[-2000:])
    return json.loads(p.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="+")
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "ptekit-xnnpack-preload"], cwd=ROOT, check=True)
    cols = ["load_ms", "execute_ms", "rss_anon_kib", "rss_file_kib"]
    print("| model | mode | load_method ms | first execute ms | RssAnon KiB | RssFile KiB | file MiB |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for model in a.models:
        res = {m: [] for m in ("none", "cold", "warm")}
        sizes = []
        shas = set()
        with tempfile.TemporaryDirectory() as d:
            for i in range(a.runs):
                cache = pathlib.Path(d) / f"c{i}.pwc"
                for mode in ("none", "cold", "warm"):
                    r = once(model, None if mode == "none" else cache)
                    res[mode].append(r)
                    shas.add(r["sha256"])
                sizes.append(cache.stat().st_size)
                cache.unlink()
        assert len(shas) == 1, f"{model}: outputs differ between modes"
        name = pathlib.Path(model).stem
        for mode, rs in res.items():
            med = {c: statistics.median(r[c] for r in rs) for c in cols}
            size = f"{statistics.median(sizes) / 2**20:.1f}" if mode != "none" else "-"
            print(f"| {name} | {mode} | {med['load_ms']:.1f} | {med['execute_ms']:.1f} | "
                  f"{med['rss_anon_kib']:.0f} | {med['rss_file_kib']:.0f} | {size} |", flush=True)


if __name__ == "__main__":
    main()
