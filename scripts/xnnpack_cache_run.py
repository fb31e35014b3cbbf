#!/usr/bin/env python3
"""Loads a .pte with the reference runtime (executorch.runtime), runs one
method and prints a JSON line: output SHA-256, load/execute times, RSS growth,
and the ptekit cache counters when the preload library is active.

    [LD_PRELOAD=.../libptekit_xnnpack.so PTEKIT_XNNPACK_CACHE=FILE] \
        python scripts/xnnpack_cache_run.py MODEL.pte [--method forward] [--inputs X.npz]
    python scripts/xnnpack_cache_run.py MODEL.pte --enable FILE   # Python path
    python scripts/xnnpack_cache_run.py MODEL.pte --xpwc FILE --xpwc-shim xpwc_shim.so
        # the reference runtime's own XPWC cache (load options added by the shim,
        # see scripts/xpwc_shim.cpp)

Inputs come from `--inputs` (`in0, in1, ...`) or are made from a fixed seed
from the method's input metadata. Used by the tests and the benchmark.
"""
import argparse
import ctypes
import hashlib
import json
import os
import sys
import time


def rss():
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("RssAnon", "RssFile", "VmLck"):
                out[k] = int(v.split()[0])
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("pte")
    ap.add_argument("--method", default="forward")
    ap.add_argument("--inputs")
    ap.add_argument("--enable", help="turn the cache on through ptekit.runtime")
    ap.add_argument("--xpwc", help="turn the reference runtime's own XPWC cache on (file)")
    ap.add_argument("--xpwc-shim", help="the load-option shim built from scripts/xpwc_shim.cpp")
    ap.add_argument("--no-flush", action="store_true",
                    help="exit without waiting for ptekit's background commit first (exit waits instead)")
    a = ap.parse_args()
    shim = None
    if a.xpwc:
        # Global scope before the ExecuTorch extension loads, so that its
        # Program::load_method calls bind to the shim's definition.
        shim = ctypes.CDLL(a.xpwc_shim, mode=os.RTLD_GLOBAL | os.RTLD_NOW)
        shim.ptekit_xpwc_shim_wrapped_loads.restype = ctypes.c_ulong
        os.environ["PTEKIT_XPWC_PATH"] = a.xpwc
    if a.enable:
        import ptekit.runtime

        ptekit.runtime.enable_xnnpack_cache(a.enable)
    import numpy as np
    import torch
    from et_runtime import import_runtime

    # Importing the runtime loads its backends (XNNPACK's calls xnn_initialize).
    tr = time.perf_counter()
    Runtime = import_runtime().Runtime
    rt = Runtime.get()
    runtime_ms = (time.perf_counter() - tr) * 1e3
    before = rss()
    t0 = time.perf_counter()
    program = rt.load_program(a.pte)
    tp = time.perf_counter()
    method = program.load_method(a.method)
    t_end = time.perf_counter()
    locked = rss()["VmLck"] - before["VmLck"]
    load_ms = (t_end - t0) * 1e3
    method_ms = (t_end - tp) * 1e3
    meta = method.metadata
    if a.inputs:
        d = np.load(a.inputs)
        inputs = [torch.from_numpy(d[f"in{i}"]) for i in range(meta.num_inputs())]
    else:
        g = torch.Generator().manual_seed(1234)
        inputs = []
        for i in range(meta.num_inputs()):
            tm = meta.input_tensor_meta(i)
            inputs.append(torch.rand(tuple(tm.sizes()), generator=g) * 2 - 1)
    t1 = time.perf_counter()
    outs = method.execute(inputs)
    exec_ms = (time.perf_counter() - t1) * 1e3
    after = rss()
    h = hashlib.sha256()
    for o in outs:
        h.update(o.detach().contiguous().numpy().tobytes())
    res = {
        "runtime_ms": runtime_ms,
        "sha256": h.hexdigest(),
        "load_ms": load_ms,
        "method_ms": method_ms,
        "execute_ms": exec_ms,
        "rss_anon_kib": after["RssAnon"] - before["RssAnon"],
        "rss_file_kib": after["RssFile"] - before["RssFile"],
        "vmlck_after_load_kib": locked,
        "first": [float(x) for x in outs[0].flatten()[:4]],
    }
    if shim is not None:
        res["xpwc_wrapped_loads"] = shim.ptekit_xpwc_shim_wrapped_loads()
        res["xpwc_file_bytes"] = os.path.getsize(a.xpwc) if os.path.exists(a.xpwc) else 0
        print(json.dumps(res))
        return 0
    try:
        import ptekit.runtime

        # The cold load returned before its packs were committed: wait for
        # the background writer (after every measurement above) so that the
        # counters are final, and measure memory again once the committed
        # file pages replaced the packing memory.
        if not a.no_flush:
            t2 = time.perf_counter()
            ptekit.runtime.xnnpack_cache_flush()
            res["flush_ms"] = (time.perf_counter() - t2) * 1e3
            late = rss()
            res["rss_anon_committed_kib"] = late["RssAnon"] - before["RssAnon"]
        res["cache"] = ptekit.runtime.xnnpack_cache_stats()
    except Exception as e:  # noqa: BLE001 - reported, not fatal
        res["cache_error"] = str(e)
    print(json.dumps(res))


if __name__ == "__main__":
    sys.exit(main())
