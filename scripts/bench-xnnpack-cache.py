#!/usr/bin/env python3
"""Benchmark (not a test): packed-weight caches in the real ExecuTorch 1.5.1
runtime (the wheel's Python runtime), one fresh process per measurement.

    python scripts/make_cache_models.py bench-out --bench --only mlp_fp32_big dyn_int8_big transformer_fp32_big
    python scripts/bench-xnnpack-cache.py bench-out/mlp_fp32_big.pte ... [--runs 5] [--json OUT]
        [--python-path] [--modes none ptekit-cold ptekit-warm ptekit-warm-nodefer xpwc-cold xpwc-warm]
        [--unprivileged]

Modes, interleaved per round (none, ptekit cold, ptekit warm, xpwc cold, xpwc
warm, none, ...), a new cache file per round:
  none        the runtime without any cache
  ptekit-*    LD_PRELOAD=libptekit_xnnpack.so PTEKIT_XNNPACK_CACHE=FILE; with
              --python-path ptekit.runtime.enable_xnnpack_cache(FILE) instead
              (the bindings installed for this interpreter)
  ptekit-warm-nodefer  ptekit-warm with PTEKIT_MLOCK_DEFER=0 (every weight
              mlocked as without ptekit), on the same file (not a default mode)
  xpwc-*      the reference runtime's own file-backed cache (XPWC), turned on
              through its per-load XnnpackBackend options weight_cache_enabled
              and packed_cache_path by scripts/xpwc_shim.cpp (built here with
              g++ against the wheel's headers and libexecutorch.so)
With --unprivileged every child (all modes) runs as a normal desktop user's
process would: `prlimit --memlock=8388608:8388608 setpriv --inh-caps=-ipc_lock
--bounding-set=-ipc_lock --` (no CAP_IPC_LOCK, an 8 MiB RLIMIT_MEMLOCK: the
loader's mlock of a large range fails at once, and ptekit does not defer it).
The script itself must run as root for setpriv to drop the capability.
Columns (medians): load_method ms, first execute ms, the two together (per
process, then the median), the whole child process (wall seconds from start to
exit: interpreter start, imports, load, execute, and for ptekit the wait for
its background commit), RssAnon / RssFile growth
over load + first execute (MiB), RssAnon growth once ptekit's background
commit is done (its packs are then file pages; "-" for other modes), cache file
size (MiB). Every mode's outputs
must be bit-identical to `none`, except where the reference cache gives wrong
outputs (reported, not hidden).
"""
import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
RUN = ROOT / "scripts" / "xnnpack_cache_run.py"
SHIM_SRC = ROOT / "scripts" / "xpwc_shim.cpp"
TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release"
MODES = ["none", "ptekit-cold", "ptekit-warm", "xpwc-cold", "xpwc-warm"]


def executorch_dir():
    """site-packages/executorch of the interpreter running the benchmark."""
    out = subprocess.run(
        [sys.executable, "-c", "import executorch; print(list(executorch.__path__)[0])"],
        capture_output=True, text=True, check=True,
    )
    return pathlib.Path(out.stdout.strip())


def build_shim():
    et = executorch_dir()
    lib = et / "lib"
    out = TARGET / "xpwc_shim.so"
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        os.environ.get("CXX", "g++"), "-O2", "-std=c++17", "-shared", "-fPIC",
        # The wheel ships c10 headers without their generated cmake_macros.h.
        "-DC10_USING_CUSTOM_GENERATED_MACROS",
        "-I", str(et / "include"),
        "-I", str(et / "include" / "executorch" / "runtime" / "core" / "portable_type" / "c10"),
        str(SHIM_SRC),
        "-L", str(lib), "-lexecutorch", f"-Wl,-rpath,{lib}", "-o", str(out),
    ]
    subprocess.run(cmd, check=True)
    return out


UNPRIVILEGED = ["prlimit", "--memlock=8388608:8388608",
                "setpriv", "--inh-caps=-ipc_lock", "--bounding-set=-ipc_lock", "--"]


def once(model, mode, cache, shim, python_path=False, unprivileged=False):
    env = dict(os.environ)
    for k in ("LD_PRELOAD", "PTEKIT_XNNPACK_CACHE", "PTEKIT_XPWC_PATH", "PTEKIT_MLOCK_DEFER"):
        env.pop(k, None)
    args = [sys.executable, str(RUN), str(model)]
    if mode.endswith("-nodefer"):
        env["PTEKIT_MLOCK_DEFER"] = "0"
    if mode.startswith("ptekit") and python_path:
        args += ["--enable", str(cache)]
    elif mode.startswith("ptekit"):
        env["LD_PRELOAD"] = str(TARGET / "libptekit_xnnpack.so")
        env["PTEKIT_XNNPACK_CACHE"] = str(cache)
    elif mode.startswith("xpwc"):
        args += ["--xpwc", str(cache), "--xpwc-shim", str(shim)]
    if unprivileged:
        args = UNPRIVILEGED + args
    t0 = time.perf_counter()
    p = subprocess.run(args, capture_output=True, text=True, env=env)
    process_s = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{model} {mode}: exit {p.returncode}\n{p.stderr[-3000:]}")
    r = json.loads(p.stdout.strip().splitlines()[-1])
    r["process_s"] = process_s
    r["load_execute_ms"] = r["method_ms"] + r["execute_ms"]
    r["file_bytes"] = cache.stat().st_size if cache is not None and cache.exists() else 0
    if mode.startswith("xpwc") and r.get("xpwc_wrapped_loads", 0) < 1:
        raise SystemExit(f"{model} {mode}: the shim did not see Program::load_method")
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="+")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--modes", nargs="*", default=MODES)
    ap.add_argument("--json", help="write every measurement here")
    ap.add_argument("--python-path", action="store_true",
                    help="ptekit modes through ptekit.runtime.enable_xnnpack_cache, not LD_PRELOAD")
    ap.add_argument("--unprivileged", action="store_true",
                    help="children without CAP_IPC_LOCK and with an 8 MiB RLIMIT_MEMLOCK (needs root)")
    a = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "ptekit-xnnpack-preload"], cwd=ROOT, check=True)
    shim = build_shim() if any(m.startswith("xpwc") for m in a.modes) else None
    cols = ["method_ms", "execute_ms", "load_execute_ms", "process_s", "rss_anon_kib",
            "rss_file_kib", "file_bytes"]
    load0 = f"{os.getloadavg()[0]:.2f}"
    rows = []
    everything = {}
    for model in a.models:
        name = pathlib.Path(model).stem
        res = {m: [] for m in a.modes}
        with tempfile.TemporaryDirectory(dir=os.environ.get("PTEKIT_BENCH_TMP")) as d:
            for i in range(a.runs):
                files = {"ptekit": pathlib.Path(d) / f"p{i}.pwc", "xpwc": pathlib.Path(d) / f"x{i}.xpwc"}
                for mode in a.modes:
                    kind = mode.split("-")[0]
                    r = once(model, mode, files.get(kind), shim, a.python_path, a.unprivileged)
                    res[mode].append(r)
                    ml = r.get("cache", {}).get("mlock")
                    ml = f", mlock skipped {ml.get('skipped')} deferred {ml.get('deferred')}" if ml else ""
                    print(f"# {name} round {i} {mode}: method {r['method_ms']:.1f} ms, "
                          f"execute {r['execute_ms']:.1f} ms, process {r['process_s']:.2f} s{ml}",
                          file=sys.stderr, flush=True)
                for f in files.values():
                    if f.exists():
                        f.unlink()
        everything[name] = res
        base = {r["sha256"] for r in res.get("none", [])}
        none_ms = statistics.median(r["method_ms"] for r in res["none"]) if "none" in res else None
        for mode, rs in res.items():
            med = {c: statistics.median(r[c] for r in rs) for c in cols}
            late = [r["rss_anon_committed_kib"] for r in rs if "rss_anon_committed_kib" in r]
            late = f"{statistics.median(late) / 1024:.1f}" if mode.startswith("ptekit") and late else "-"
            same = "yes" if not base or {r["sha256"] for r in rs} == base else "NO"
            ratio = f"{med['method_ms'] / none_ms:.2f}" if none_ms else "-"
            rows.append(
                f"| {name} | {mode} | {med['method_ms']:.1f} | {ratio} | {med['execute_ms']:.1f} | "
                f"{med['load_execute_ms']:.1f} | {med['process_s']:.2f} | "
                f"{med['rss_anon_kib'] / 1024:.1f} | {late} | {med['rss_file_kib'] / 1024:.1f} | "
                f"{med['file_bytes'] / 2**20:.1f} | {same} |"
            )
    print("| model | mode | load_method ms | × none | first execute ms | load + execute ms | process s "
          "| RssAnon MiB | RssAnon after commit MiB | RssFile MiB | file MiB | outputs = none |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    print(f"load average before / after: {load0} / {os.getloadavg()[0]:.2f} (1 min)")
    print("ptekit modes through: " + ("ptekit.runtime.enable_xnnpack_cache" if a.python_path else "LD_PRELOAD"))
    print("children: " + (" ".join(UNPRIVILEGED[:-1]) if a.unprivileged else "as the caller (" + ("root" if os.geteuid() == 0 else "not root") + ")"))
    for r in rows:
        print(r)
    print()
    print("load_method ms, min-max over the rounds:")
    for name, res in everything.items():
        spread = ", ".join(
            f"{mode} {min(r['method_ms'] for r in rs):.1f}-{max(r['method_ms'] for r in rs):.1f}"
            for mode, rs in res.items()
        )
        print(f"  {name}: {spread}")
    # Work done when the backend is loaded (ptekit: the first pass over the
    # loaded objects on the Python path, counted in mlock_route.scan_ms) is
    # outside load_method: this span holds it (and the runtime's import).
    print("import_runtime() + Runtime.get() + load_program + load_method ms, medians"
          " [ptekit: mlock_route.scan_ms]:")
    for name, res in everything.items():
        spans = []
        for mode, rs in res.items():
            span = f"{mode} {statistics.median(r['runtime_ms'] + r['load_ms'] for r in rs):.1f}"
            scans = [r["cache"]["mlock_route"]["scan_ms"] for r in rs
                     if "scan_ms" in r.get("cache", {}).get("mlock_route", {})]
            if scans:
                span += f" [{statistics.median(scans):.2f}]"
            spans.append(span)
        print(f"  {name}: {', '.join(spans)}")
    if a.json:
        pathlib.Path(a.json).write_text(json.dumps(everything, indent=1))


if __name__ == "__main__":
    main()
