"""ptekit's packed-weight cache inside the real ExecuTorch 1.5.1 runtime.

Models: tests/fixtures/xnnpack-cache, exported by scripts/make_cache_models.py
with the reference exporter. Every run is a fresh process
(scripts/xnnpack_cache_run.py) whose outputs must be bit-identical to the same
runtime without any cache: cold, warm, after other models used the file, with
several processes on one file, after the file was corrupted, truncated or
written by another XNNPACK build — through LD_PRELOAD and through
ptekit.runtime.enable_xnnpack_cache.
"""

import json
import os
import pathlib
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT

MODELS = ROOT / "tests" / "fixtures" / "xnnpack-cache"
RUN = ROOT / "scripts" / "xnnpack_cache_run.py"
TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release"
PRELOAD = TARGET / "libptekit_xnnpack.so"
# model -> number of packed buffers (filter+bias pairs) XNNPACK looks up
NAMES = ["mlp_fp32", "dyn_int8", "static_int8", "w2w_int8", "same_bytes_fp32", "two_methods"]
LOOKUPS = {"mlp_fp32": 3, "dyn_int8": 3, "static_int8": 2, "w2w_int8": 2, "same_bytes_fp32": 2, "two_methods": 1}


@pytest.fixture(scope="session")
def preload():
    if not PRELOAD.exists():
        subprocess.run(["cargo", "build", "--release", "-p", "ptekit-xnnpack-preload"], cwd=ROOT, check=True)
    return PRELOAD


def run(model, *, cache=None, via="preload", method="forward", env=None, check=True, verify=False, extra=(),
        prefix=()):
    args = [*prefix, sys.executable, str(RUN), str(MODELS / f"{model}.pte"), "--method", method, *extra]
    e = dict(os.environ)
    e.pop("LD_PRELOAD", None)
    e.pop("PTEKIT_XNNPACK_CACHE", None)
    if cache is not None and via == "preload":
        e["LD_PRELOAD"] = str(PRELOAD)
        e["PTEKIT_XNNPACK_CACHE"] = str(cache)
        if verify:
            e["PTEKIT_XNNPACK_CACHE_VERIFY"] = "1"
    elif cache is not None:
        args += ["--enable", str(cache)]
    e.update(env or {})
    p = subprocess.run(args, capture_output=True, text=True, env=e)
    if check:
        assert p.returncode == 0, p.stderr[-3000:]
        return json.loads(p.stdout.strip().splitlines()[-1])
    return p


_uncached = {}


def uncached(model, method="forward"):
    if (model, method) not in _uncached:
        _uncached[(model, method)] = run(model, method=method)["sha256"]
    return _uncached[(model, method)]


@pytest.mark.parametrize("via", ["preload", "python"])
@pytest.mark.parametrize("model", NAMES)
def test_cold_and_warm_outputs_are_bit_identical(tmp_path, preload, model, via):
    cache = tmp_path / "w.pwc"
    n = LOOKUPS[model]
    cold = run(model, cache=cache, via=via)
    assert cold["sha256"] == uncached(model)
    c = cold["cache"]
    # Every buffer has its own key: W and 2W (same int8 bytes, scales x2) and
    # equal fp32 bytes of another shape never hit each other's entry.
    assert (c["hits"], c["misses"], c["committed"]) == (0, n, n), c
    assert c["fallbacks"] == 0 and c["ambiguous_buffers"] == 0, c
    warm = run(model, cache=cache, via=via)
    assert warm["sha256"] == cold["sha256"]
    w = warm["cache"]
    assert (w["hits"], w["misses"], w["bytes_packed"]) == (n, 0, 0), w
    assert w["bytes_mapped"] == c["bytes_packed"] > 0
    # The weights lie in the unchanged, mapped model file: the cold load
    # hashes nothing (the background writer reads them again from the file
    # and stores a memo of their keys), and the warm load takes their keys
    # from those memos.
    assert c["bytes_hashed"] == 0 and c["keys_deferred"] > 0 and c["keys_from_memo"] == 0, c
    assert c["background"]["bytes_hashed"] > 0 and c["background"]["failed"] == 0, c
    assert w["bytes_hashed"] == 0 and w["keys_from_memo"] > 0, w


def test_verify_mode_hashes_again_and_agrees(tmp_path, preload):
    cache = tmp_path / "v.pwc"
    cold = run("dyn_int8", cache=cache)
    warm = run("dyn_int8", cache=cache, verify=True)
    assert warm["sha256"] == cold["sha256"] == uncached("dyn_int8")
    w = warm["cache"]
    assert w["bytes_hashed"] >= cold["cache"]["background"]["bytes_hashed"] > 0, w
    assert (w["keys_from_memo"], w["memo_mismatches"], w["misses"]) == (0, 0, 0), w


def test_size_cap_keeps_the_most_recently_used(tmp_path, preload, ptekit):
    sizes = {}
    for m in ["mlp_fp32", "dyn_int8"]:
        sizes[m] = run(m, cache=tmp_path / f"{m}.pwc")["cache"]["bytes_packed"]
    cap = max(sizes.values())
    cache = tmp_path / "capped.pwc"
    env = {"PTEKIT_XNNPACK_CACHE_MAX_BYTES": str(cap)}
    a = run("mlp_fp32", cache=cache, env=env)
    b = run("dyn_int8", cache=cache, env=env)
    assert a["sha256"] == uncached("mlp_fp32") and b["sha256"] == uncached("dyn_int8")
    assert b["cache"]["committed"] == LOOKUPS["dyn_int8"] and b["cache"]["fallbacks"] == 0
    info = _entries(ptekit, cache)
    s = info["summary"]
    assert s["live_bytes"] == sizes["dyn_int8"] <= cap, s
    assert sum(1 for x in info["slots"] if x["kind"] == "drop") > 0
    assert ptekit("cache", "verify", cache).returncode == 0
    # The withdrawn model is packed again, right, and the other one goes.
    again = run("mlp_fp32", cache=cache, env=env)
    assert again["sha256"] == uncached("mlp_fp32")
    assert again["cache"]["misses"] == LOOKUPS["mlp_fp32"], again["cache"]
    assert _entries(ptekit, cache)["summary"]["live_bytes"] == sizes["mlp_fp32"]
    # Compaction leaves the header, the index and the live packed bytes (each
    # range on 128 bytes, packs of 64 KiB or more on a page), and the file
    # still serves the model and takes new commits.
    r = json.loads(ptekit("cache", "compact", "--json", cache).stdout)
    after = r["after"]
    assert r["before"]["dead_bytes"] > 0 and after["dead_bytes"] == 0, r
    assert after["index_region_bytes"] <= 2 * 65536, r
    placed = sum(e["data_len"] + 128 + (4096 if e["data_len"] >= 65536 else 0) for e in _live(_entries(ptekit, cache)))
    assert os.path.getsize(cache) == after["file_bytes"] <= after["index_region_bytes"] + placed, r
    warm = run("mlp_fp32", cache=cache, env=env)
    assert warm["sha256"] == uncached("mlp_fp32") and warm["cache"]["misses"] == 0, warm["cache"]
    more = run("dyn_int8", cache=cache)
    assert more["sha256"] == uncached("dyn_int8") and more["cache"]["committed"] == LOOKUPS["dyn_int8"], more["cache"]
    assert ptekit("cache", "verify", cache).returncode == 0


def test_without_the_variable_nothing_changes(tmp_path, preload):
    r = run("mlp_fp32", env={"LD_PRELOAD": str(PRELOAD)})
    assert r["sha256"] == uncached("mlp_fp32")
    assert r["cache"]["runtimes_cached"] == 0 and r["cache"]["runtimes_uncached"] > 0
    assert r["cache"]["path"] is None
    assert not list(tmp_path.iterdir())


def test_all_models_share_one_file_and_two_methods(tmp_path, preload, ptekit):
    cache = tmp_path / "all.pwc"
    for rnd in range(2):
        for m in NAMES:
            r = run(m, cache=cache)
            assert r["sha256"] == uncached(m), m
            if rnd == 1:
                assert r["cache"]["misses"] == 0, (m, r["cache"])
    for method in ["forward", "forward_twice"]:
        r = run("two_methods", cache=cache, method=method)
        assert r["sha256"] == uncached("two_methods", method), method
    r = run("two_methods", cache=cache, method="forward_twice")
    assert r["cache"]["misses"] == 0, r["cache"]
    assert ptekit("cache", "verify", cache).returncode == 0


def test_four_processes_at_once_on_one_file(tmp_path, preload, ptekit):
    cache = tmp_path / "shared.pwc"
    models = ["mlp_fp32", "dyn_int8", "mlp_fp32", "dyn_int8"]
    e = dict(os.environ, LD_PRELOAD=str(PRELOAD), PTEKIT_XNNPACK_CACHE=str(cache))
    procs = [
        subprocess.Popen(
            [sys.executable, str(RUN), str(MODELS / f"{m}.pte")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e,
        )
        for m in models
    ]
    committed = 0
    for m, p in zip(models, procs):
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
        r = json.loads(out.strip().splitlines()[-1])
        assert r["sha256"] == uncached(m)
        assert r["cache"]["fallbacks"] == 0, r["cache"]
        committed += r["cache"]["committed"]
    assert committed == LOOKUPS["mlp_fp32"] + LOOKUPS["dyn_int8"], "each key committed once"
    assert ptekit("cache", "verify", cache).returncode == 0
    for m in ["mlp_fp32", "dyn_int8"]:
        r = run(m, cache=cache)
        assert r["sha256"] == uncached(m) and r["cache"]["misses"] == 0


def _entries(ptekit, cache):
    r = ptekit("cache", "inspect", "--json", cache)
    return json.loads(r.stdout)


def _live(info):
    return [
        {"slot_offset": s["slot_offset"], "data_offset": s["offset"], "data_len": s["size"]}
        for s in info["slots"]
        if s["kind"] == "entry" and s["status"] == "live"
    ]


def _flip(path, at):
    with open(path, "r+b") as f:
        f.seek(at)
        b = f.read(1)
        f.seek(at)
        f.write(bytes([b[0] ^ 0x5A]))


def test_corrupt_and_truncated_files_between_runs(tmp_path, preload, ptekit):
    model, n = "mlp_fp32", LOOKUPS["mlp_fp32"]
    base = tmp_path / "base.pwc"
    run(model, cache=base)
    info = _entries(ptekit, base)
    live = _live(info)
    assert len(live) == n, info

    def copy(name):
        p = tmp_path / name
        p.write_bytes(base.read_bytes())
        return p

    # A flipped header byte: the file is rebuilt, outputs stay right.
    p = copy("header.pwc")
    _flip(p, 20)
    r = run(model, cache=p)
    assert r["sha256"] == uncached(model)
    assert r["cache"]["rebuilt"], r["cache"]
    assert ptekit("cache", "verify", p).returncode == 0

    # A flipped index record: that entry is re-packed, the others hit.
    p = copy("record.pwc")
    _flip(p, live[1]["slot_offset"] + 40)
    assert ptekit("cache", "verify", p, check=False).returncode == 1
    r = run(model, cache=p)
    assert r["sha256"] == uncached(model)
    assert (r["cache"]["hits"], r["cache"]["misses"]) == (n - 1, 1), r["cache"]

    # Truncated: entries past the end are never served.
    p = copy("trunc.pwc")
    last = max(e["data_offset"] for e in live)
    os.truncate(p, last + 100)
    assert ptekit("cache", "verify", p, check=False).returncode == 1
    r = run(model, cache=p)
    assert r["sha256"] == uncached(model)
    assert r["cache"]["misses"] == 1, r["cache"]
    r = run(model, cache=p)
    assert r["sha256"] == uncached(model) and r["cache"]["misses"] == 0

    # Flipped packed bytes: found by `cache verify` and by the verify mode.
    p = copy("data.pwc")
    e = live[0]
    _flip(p, e["data_offset"] + e["data_len"] // 2)
    assert ptekit("cache", "verify", p, check=False).returncode == 1
    r = run(model, cache=p, verify=True)
    assert r["sha256"] == uncached(model)
    assert r["cache"]["rejected_entries"] == 1, r["cache"]


def test_a_file_from_another_xnnpack_build_is_rebuilt(tmp_path, preload):
    # The Rust harness loads XNNPACK itself and does not name the build: its
    # files carry another environment than the runtime's.
    cache = tmp_path / "other.pwc"
    example = TARGET / "examples" / "xnnpack_warm_start"
    if not example.exists():
        subprocess.run(["cargo", "build", "--release", "-p", "ptekit-cache", "--example", "xnnpack_warm_start"],
                       cwd=ROOT, check=True)
    lib = os.environ.get("PTEKIT_XNNPACK_LIB", str(pathlib.Path.home() / ".cache/ptekit/xnnpack-lib"))
    subprocess.run([str(example), "--xnnpack-lib", lib, "--cache", str(cache), "--layers", "1",
                    "--width", "64", "--json"], check=True, capture_output=True)
    assert cache.stat().st_size > 0
    r = run("mlp_fp32", cache=cache)
    assert r["sha256"] == uncached("mlp_fp32")
    assert "another XNNPACK build" in (r["cache"]["rebuilt"] or ""), r["cache"]
    assert r["cache"]["committed"] == LOOKUPS["mlp_fp32"]
    r = run("mlp_fp32", cache=cache)
    assert r["cache"]["misses"] == 0 and not r["cache"]["rebuilt"], r["cache"]


def test_enable_after_the_backend_loaded_raises():
    code = (
        "import executorch.runtime, ptekit.runtime\n"
        "try:\n"
        "    ptekit.runtime.enable_xnnpack_cache('/nonexistent/x.pwc')\n"
        "except ptekit.runtime.XnnpackCacheError as e:\n"
        "    print('raised', e)\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "raised" in p.stdout and "already loaded" in p.stdout


def test_cold_starts_killed_with_sigkill(tmp_path, preload, ptekit):
    """A few kills here; scripts/soak-xnnpack-cache.sh runs 100."""
    cache = tmp_path / "killed.pwc"
    e = dict(os.environ, LD_PRELOAD=str(PRELOAD), PTEKIT_XNNPACK_CACHE=str(cache))
    rng = random.Random(5)
    for i in range(int(os.environ.get("PTEKIT_KILLS", "6"))):
        m = NAMES[i % len(NAMES)]
        p = subprocess.Popen([sys.executable, str(RUN), str(MODELS / f"{m}.pte")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=e)
        time.sleep(rng.uniform(0.5, 3.0))
        p.send_signal(signal.SIGKILL)
        p.wait()
        if cache.exists():
            assert ptekit("cache", "verify", cache, check=False).returncode in (0, 1)
            # Never a torn or invalid record, whatever the moment of the kill.
            info = _entries(ptekit, cache)
            assert info["summary"]["torn_slots"] == 0, info["summary"]
    for m in NAMES:
        for _ in range(2):
            r = run(m, cache=cache)
            assert r["sha256"] == uncached(m), m
    assert ptekit("cache", "verify", cache).returncode == 0


def test_background_commit_then_next_process(tmp_path, preload, ptekit):
    """The cold load returns before its packs are written; a background
    thread commits them. Exit waits for it (bounded), so a process started
    right after the first one exits finds every entry; with the wait turned
    off it finds a valid file and packs what is missing again. Outputs are
    the uncached ones every time."""
    model, n = "mlp_fp32", LOOKUPS["mlp_fp32"]
    cache = tmp_path / "bg.pwc"
    # --no-flush: nothing waits for the writer but process exit.
    a = run(model, cache=cache, extra=["--no-flush"])
    assert a["sha256"] == uncached(model)
    assert a["cache"]["finalize_ms"] < 1000 and a["cache"]["misses"] == n, a["cache"]
    b = run(model, cache=cache, extra=["--no-flush"])
    assert b["sha256"] == uncached(model)
    assert (b["cache"]["hits"], b["cache"]["misses"]) == (n, 0), b["cache"]
    assert ptekit("cache", "verify", cache).returncode == 0
    # Exit does not wait: the next process hits or re-packs, never wrong.
    dropped = tmp_path / "dropped.pwc"
    env = {"PTEKIT_XNNPACK_CACHE_EXIT_WAIT_MS": "0"}
    c = run("dyn_int8", cache=dropped, env=env, extra=["--no-flush"])
    d = run("dyn_int8", cache=dropped, env=env, extra=["--no-flush"])
    assert c["sha256"] == d["sha256"] == uncached("dyn_int8")
    assert d["cache"]["hits"] + d["cache"]["misses"] == LOOKUPS["dyn_int8"], d["cache"]
    if dropped.exists():
        assert ptekit("cache", "verify", dropped).returncode == 0


# Deferred mlock (crates/ptekit-xnnpack-preload/src/mlock.rs): ExecuTorch's
# mmap loader locks every weight range it loads; a range only cache hits
# answered is never locked, the rest is locked after runtime creation.
NO_DEFER = {"PTEKIT_MLOCK_DEFER": "0"}


def _need_deferral(r):
    """Skips when deferral is off for a reason of the machine (mlock can
    fail for its limit here, or the kernel has no PROCMAP_QUERY); any other
    reason fails."""
    m = r["cache"]["mlock"]
    if not m["on"] and (m["off_reason"] or "").startswith(("no CAP_IPC_LOCK", "PROCMAP_QUERY not supported")):
        pytest.skip(f"deferred mlock is off on this machine: {m['off_reason']}")
    assert m["on"], m


def _strace_works():
    """strace exists and may trace here (containers can forbid ptrace)."""
    if shutil.which("strace") is None:
        return False
    p = subprocess.run(["strace", "-f", "-qq", "-e", "trace=mlock", "-o", os.devnull, "true"], capture_output=True)
    return p.returncode == 0


def _mlock_calls(model, cache, tmp_path, env=None):
    """One run under strace: its result and its mlock system calls."""
    out = tmp_path / f"strace-{len(list(tmp_path.iterdir()))}.txt"
    r = run(model, cache=cache, env=env, prefix=["strace", "-f", "-qq", "-e", "trace=mlock", "-o", str(out)])
    calls = [line for line in out.read_text().splitlines() if "mlock(" in line]
    assert all(line.endswith("= 0") for line in calls), calls
    return r, len(calls)


def test_deferred_mlock_cold_locks_late_warm_skips(tmp_path, preload):
    model, n = "mlp_fp32", LOOKUPS["mlp_fp32"]
    ref = uncached(model)
    # Cold (all misses): every deferred range is locked after creation, and
    # what stays locked after the load is what stays without deferral.
    cache = tmp_path / "m.pwc"
    cold = run(model, cache=cache)
    assert cold["sha256"] == ref and cold["cache"]["misses"] == n
    _need_deferral(cold)
    m = cold["cache"]["mlock"]
    # Each layer's weight and bias are loaded (and locked) separately.
    assert m["on"] and m["deferred"] == 2 * n, m
    assert (m["skipped"], m["locked_late"], m["late_failed"], m["late_unmapped"]) == (0, 2 * n, 0, 0), m
    assert m["locked_late_bytes"] == m["deferred_bytes"] > 0, m
    # Warm (all hits): nothing of the weights is locked.
    warm = run(model, cache=cache)
    assert warm["sha256"] == ref and warm["cache"]["hits"] == n
    m = warm["cache"]["mlock"]
    assert (m["deferred"], m["skipped"], m["locked_late"]) == (2 * n, 2 * n, 0), m
    assert m["skipped_bytes"] == cold["cache"]["mlock"]["deferred_bytes"], m
    # The preloaded library interposes mlock itself: no GOT word is patched.
    assert (warm["cache"]["mlock_route"]["how"], warm["cache"]["mlock_route"]["slots"]) == ("interposed", 0)
    # Off: nothing deferred, the stats say why; what stays locked after the
    # load (the program's segments: the weights are unmapped after
    # creation) is the same with and without deferral, cold or warm.
    strace = _strace_works()
    if strace:
        off, n_all = _mlock_calls(model, cache, tmp_path, env=NO_DEFER)
    else:
        off = run(model, cache=cache, env=NO_DEFER)
    assert off["sha256"] == ref
    m = off["cache"]["mlock"]
    assert (m["on"], m["off_reason"], m["deferred"]) == (False, "PTEKIT_MLOCK_DEFER=0", 0), m
    assert cold["vmlck_after_load_kib"] == warm["vmlck_after_load_kib"] == off["vmlck_after_load_kib"] > 0
    if not strace:
        pytest.skip("no usable strace: the system calls are not checked")
    # The skipped ranges never reach the kernel; the program's own segments
    # still do.
    deferred, n_deferred = _mlock_calls(model, cache, tmp_path)
    assert deferred["sha256"] == ref
    assert n_all - n_deferred == deferred["cache"]["mlock"]["skipped"] == 2 * n
    assert n_deferred > 0


def test_deferred_mlock_mixed_hits_and_misses(tmp_path, preload, ptekit):
    # A flipped index record: one layer misses, the others hit. Its weight
    # and bias ranges are locked, the hit layers' are not.
    model, n = "mlp_fp32", LOOKUPS["mlp_fp32"]
    cache = tmp_path / "mixed.pwc"
    _need_deferral(run(model, cache=cache))
    _flip(cache, _live(_entries(ptekit, cache))[1]["slot_offset"] + 40)
    if not _strace_works():
        r = run(model, cache=cache)
    else:
        _, n_all = _mlock_calls(model, None, tmp_path)
        r, n_mixed = _mlock_calls(model, cache, tmp_path)
        assert n_all - n_mixed == r["cache"]["mlock"]["skipped"]
    assert r["sha256"] == uncached(model)
    assert (r["cache"]["hits"], r["cache"]["misses"]) == (n - 1, 1), r["cache"]
    m = r["cache"]["mlock"]
    assert (m["deferred"], m["skipped"], m["locked_late"], m["late_failed"]) == (2 * n, 2 * (n - 1), 2, 0), m


def test_deferred_mlock_off_without_ipc_lock(tmp_path, preload):
    # Without CAP_IPC_LOCK and with a finite RLIMIT_MEMLOCK a real mlock can
    # fail for its limit (a load with MmapUseMlock would then fail), so
    # nothing is deferred; the load works as without the library.
    if shutil.which("setpriv") is None or shutil.which("prlimit") is None:
        pytest.skip("no setpriv/prlimit")
    if os.geteuid() != 0:
        pytest.skip("setpriv --bounding-set needs root (CAP_SETPCAP)")
    model, n = "mlp_fp32", LOOKUPS["mlp_fp32"]
    cache = tmp_path / "u.pwc"
    run(model, cache=cache)
    drop = ["prlimit", "--memlock=65536:65536", "setpriv", "--inh-caps=-ipc_lock", "--bounding-set=-ipc_lock", "--"]
    r = run(model, cache=cache, prefix=drop)
    assert r["sha256"] == uncached(model) and r["cache"]["hits"] == n
    m = r["cache"]["mlock"]
    assert not m["on"] and m["deferred"] == 0, m
    assert m["off_reason"].startswith("no CAP_IPC_LOCK and RLIMIT_MEMLOCK is 65536 bytes"), m



def test_python_path_routes_mlock_through_the_got(tmp_path, preload):
    # ptekit.runtime.enable_xnnpack_cache makes the extension global only
    # after libc, so libexecutorch.so's mlock import binds to libc; the first
    # XNNPACK call redirects that import (its GOT word) to the deferring hook
    # (crates/ptekit-xnnpack-preload/src/got.rs). Same counts as the preload.
    model, n = "mlp_fp32", LOOKUPS["mlp_fp32"]
    ref = uncached(model)
    cache = tmp_path / "py.pwc"
    cold = run(model, cache=cache, via="python")
    assert cold["sha256"] == ref and cold["cache"]["misses"] == n
    route = cold["cache"]["mlock_route"]
    assert route["how"] == "got" and route["errors"] == [] and route["scans"] >= 1, route
    assert any(os.path.basename(o) == "libexecutorch.so" for o in route["objects"]), route
    _need_deferral(cold)
    m = cold["cache"]["mlock"]
    assert m["off_reason"] is None, m
    assert (m["deferred"], m["skipped"], m["locked_late"], m["late_failed"]) == (2 * n, 0, 2 * n, 0), m
    warm = run(model, cache=cache, via="python")
    assert warm["sha256"] == ref and warm["cache"]["hits"] == n
    m = warm["cache"]["mlock"]
    assert (m["deferred"], m["skipped"], m["locked_late"]) == (2 * n, 2 * n, 0), m
    assert m["skipped_bytes"] == cold["cache"]["mlock"]["deferred_bytes"] > 0, m
    # Deferral off: no import is touched, nothing deferred, same outputs.
    off = run(model, cache=cache, via="python", env=NO_DEFER)
    assert off["sha256"] == ref and off["cache"]["hits"] == n
    assert off["cache"]["mlock_route"]["how"] is None, off["cache"]["mlock_route"]
    m = off["cache"]["mlock"]
    assert (m["on"], m["off_reason"], m["deferred"]) == (False, "PTEKIT_MLOCK_DEFER=0", 0), m


def test_layers_differing_only_in_bias_never_share_an_entry(tmp_path, preload):
    # Dynamic int8: XNNPACK packs the bias (as a scale parameter) without
    # naming it in its cache look-up; the int8 weights and scales are equal.
    assert uncached("bias1_int8") != uncached("bias2_int8")
    cache = tmp_path / "bias.pwc"
    runs = [run(m, cache=cache) for m in ["bias1_int8", "bias2_int8", "bias2_int8"]]
    for m, r in zip(["bias1_int8", "bias2_int8", "bias2_int8"], runs):
        assert r["sha256"] == uncached(m), (m, r["cache"])
    assert (runs[2]["cache"]["hits"], runs[2]["cache"]["misses"]) == (1, 0), runs[2]["cache"]
