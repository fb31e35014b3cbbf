#!/usr/bin/env python3
"""Benchmark (not a test): what an exporting user feels, with and without ptekit.install().

Every run is a fresh process that builds a model and exports it the way the executorch
1.5.1 documentation does (torch.export -> to_edge_transform_and_lower -> to_executorch ->
save / bundled-program serialize + write). Runs alternate reference and ptekit
(A B A B ...); the medians are reported. Cases:

  mlp        a float32 MLP of about SIZE MiB of weights (8 square Linear layers), .pte
  ptd        the same with its weights in a .ptd file (external_constants=True): .pte + .ptd
  xnnpack    the same lowered to XNNPACK, .pte
  bundled    the same as a bundled program (.bpte) with 3 test cases, written the
             reference's way (serialize_from_bundled_program_to_flatbuffer -> bytes -> write)
  bundled-stream  the same; the ptekit run writes it with ptekit.write_bundled_program
             (streamed), the reference run as in `bundled`
  transformer  a 24-layer small transformer (many values, tiny weights), .pte

Per run: wall time of the export (from torch.export to the file written), peak RSS,
peak RSS minus the RSS once the model is built (imports plus parameters; the peak is
reset at that point through /proc/self/clear_refs; for the bundled cases the test cases
are computed before it), the artifact's size, and, for
ptekit runs, the time and RSS that `import ptekit` + `install()` cost. The artifacts of
the two modes are compared byte for byte (sha256). CPU time (all threads) is reported
next to wall time: on a shared machine it moves less with the load. Time ratios are the
median of the per-pair ratios (ptekit / reference); the load average is printed with them.

Usage (reference venv with ptekit installed):
    "$PTEKIT_PYTHON" scripts/bench-export.py                    # 512 MiB, 1 pair per case
    "$PTEKIT_PYTHON" scripts/bench-export.py --quick            # 32 MiB, for a quick look
    "$PTEKIT_PYTHON" scripts/bench-export.py --size-mib 128 --repeat 3 --cases mlp,bundled
    ... --json                                                  # machine-readable
"""

import argparse
import hashlib
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

from bench_interleave import proc_status, reset_peak

ROOT = pathlib.Path(__file__).resolve().parents[1]
CASES = ("mlp", "ptd", "xnnpack", "bundled", "bundled-stream", "transformer")
MIB = 1 << 20


def child(case, mode, size_mib, out_path):
    t_process = time.perf_counter()
    result = {"case": case, "mode": mode}
    if mode == "ptekit":
        rss0 = proc_status("VmRSS")
        t0, c0 = time.perf_counter(), time.process_time()
        import ptekit

        t1, c1, rss1 = time.perf_counter(), time.process_time(), proc_status("VmRSS")
        before = set(sys.modules)
        ptekit.install()
        t2, c2 = time.perf_counter(), time.process_time()
        result["install_new_modules"] = sorted(set(sys.modules) - before)
        result["import_s"], result["import_cpu_s"] = t1 - t0, c1 - c0
        result["import_rss"] = rss1 - rss0
        result["install_s"], result["install_cpu_s"] = t2 - t1, c2 - c1
        result["install_rss"] = proc_status("VmRSS") - rss1
        before = set(sys.modules)
    import torch

    sys.path.insert(0, str(ROOT / "scripts"))
    from make_fixtures import LiteBlock, Mlp, Transformer  # noqa: E402
    from executorch.exir import EdgeCompileConfig, ExecutorchBackendConfig, to_edge_transform_and_lower

    if mode == "ptekit":
        result["ptekit_modules"] = sorted(m for m in set(sys.modules) - before if m.startswith("ptekit"))
    torch.manual_seed(7)
    if case == "transformer":
        model = Transformer(layers=24, dim=32, heads=4, block=LiteBlock)
        inputs = (torch.randint(0, 64, (1, 8)),)
    else:
        # 8 square layers of width W: 8 * W * W * 4 bytes = size_mib MiB.
        width = max(64, int((size_mib * MIB / 32) ** 0.5) // 64 * 64)
        model = Mlp(dims=(width,) * 9)
        inputs = (torch.randn(1, width),)
    model.eval()
    if case in ("bundled", "bundled-stream"):
        # The test cases' expected outputs come from running the model: part of building
        # it, not of the export (the first forward pass alone takes ~33 MiB of RSS for
        # torch's own buffers, whatever the export does).
        from executorch.devtools.bundled_program.config import MethodTestCase, MethodTestSuite

        cases = []
        for i in range(3):
            x = (torch.randn(*inputs[0].shape),)
            with torch.no_grad():
                cases.append(MethodTestCase(inputs=x, expected_outputs=(model(*x),)))
    rss_built = proc_status("VmRSS")
    result["peak_reset"] = reset_peak()
    t0, c0 = time.perf_counter(), time.process_time()
    partitioner = []
    if case == "xnnpack":
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

        partitioner = [XnnpackPartitioner()]
    ep = torch.export.export(model, inputs, strict=False)
    edge = to_edge_transform_and_lower(
        ep, partitioner=partitioner, compile_config=EdgeCompileConfig(_check_ir_validity=False)
    )
    config = ExecutorchBackendConfig(external_constants=case == "ptd")
    manager = edge.to_executorch(config)
    if case in ("bundled", "bundled-stream"):
        from executorch.devtools import BundledProgram
        from executorch.devtools.bundled_program.serialize import (
            serialize_from_bundled_program_to_flatbuffer,
        )

        bundled = BundledProgram(manager, [MethodTestSuite(method_name="forward", test_cases=cases)])
        if case == "bundled-stream" and mode == "ptekit":
            ptekit.write_bundled_program(out_path, bundled)
        else:
            data = serialize_from_bundled_program_to_flatbuffer(bundled)
            with open(out_path, "wb") as f:
                f.write(data)
            del data
    else:
        manager.save(out_path)
        if case == "ptd":
            manager.write_tensor_data_to_file(os.path.dirname(out_path))
    result["export_s"] = time.perf_counter() - t0
    result["export_cpu_s"] = time.process_time() - c0
    result["peak_rss"] = proc_status("VmHWM")
    result["rss_built"] = rss_built
    result["process_s"] = time.perf_counter() - t_process
    folder = os.path.dirname(out_path)
    result["size"] = sum(os.path.getsize(os.path.join(folder, n)) for n in os.listdir(folder))
    print(json.dumps(result))


def run_one(case, mode, size_mib, out_path):
    """Runs one export in a fresh process; the files it writes (the artifact, and for
    `ptd` the .ptd next to it) go to a folder of their own, hashed together, removed."""
    folder = out_path + ".d"
    os.mkdir(folder)
    # The same name in both modes: the names are hashed with the contents.
    out_path = os.path.join(folder, "model" + os.path.splitext(out_path)[1])
    env = dict(os.environ)
    proc = subprocess.run(
        [sys.executable, __file__, "--child", case, mode, str(size_mib), out_path],
        capture_output=True,
        text=True,
        env=env,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{case}/{mode} failed:\n{proc.stderr[-3000:]}")
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    h = hashlib.sha256()
    for name in sorted(os.listdir(folder)):
        h.update(name.encode() + b"\0")
        with open(os.path.join(folder, name), "rb") as f:
            while chunk := f.read(8 * MIB):
                h.update(chunk)
        os.remove(os.path.join(folder, name))
    os.rmdir(folder)
    r["sha256"] = h.hexdigest()
    return r


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        case, mode, size, out = sys.argv[2:6]
        child(case, mode, float(size), out)
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mib", type=float, default=512.0, help="MLP weights in MiB (default 512)")
    ap.add_argument("--quick", action="store_true", help="--size-mib 32")
    ap.add_argument("--repeat", type=int, default=1, help="reference/ptekit pairs per case")
    ap.add_argument("--cases", default=",".join(CASES), help=f"comma-separated subset of {CASES}")
    ap.add_argument("--json", action="store_true", help="print the runs and medians as JSON")
    ap.add_argument("--json-out", metavar="PATH", help="also write the JSON to PATH")
    args = ap.parse_args()
    size = 32.0 if args.quick else args.size_mib
    cases = [c for c in args.cases.split(",") if c]
    for c in cases:
        if c not in CASES:
            ap.error(f"unknown case {c!r}")
    runs = []
    load = {"start": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="ptekit-bench-") as tmp:
        for case in cases:
            ext = ".bpte" if case.startswith("bundled") else ".pte"
            for i in range(args.repeat):
                for mode in ("reference", "ptekit"):
                    r = run_one(case, mode, size, os.path.join(tmp, f"{case}-{mode}{ext}"))
                    r["pair"] = i
                    r["load1"] = os.getloadavg()[0]
                    runs.append(r)
                    if not args.json:
                        print(
                            f"  {case:<14} {mode:<9} export {r['export_s']:7.2f} s "
                            f"(cpu {r['export_cpu_s']:7.2f} s)  "
                            f"peak above built {(r['peak_rss'] - r['rss_built']) / MIB:8.1f} MiB  "
                            f"artifact {r['size'] / MIB:8.1f} MiB  load {r['load1']:.1f}",
                            file=sys.stderr,
                            flush=True,
                        )
    load["end"] = os.getloadavg()
    summary = [_summarize(case, [r for r in runs if r["case"] == case]) for case in cases]
    pk_runs = [r for r in runs if r["mode"] == "ptekit"]
    install = {
        key: statistics.median(r[key] for r in pk_runs)
        for key in ("import_s", "import_cpu_s", "import_rss", "install_s", "install_cpu_s", "install_rss")
    }
    install["install_new_modules"] = sorted({m for r in pk_runs for m in r["install_new_modules"]})
    report = {"size_mib": size, "repeat": args.repeat, "load": load, "install": install,
              "summary": summary, "runs": runs}
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(report, f, indent=1)
    if args.json:
        print(json.dumps(report, indent=1))
        return
    print(
        f"MLP weights {size:g} MiB, {args.repeat} interleaved pair(s) per case (reference, ptekit, ...), "
        f"medians; load average {load['start'][0]:.1f} at start, {load['end'][0]:.1f} at end "
        f"({os.cpu_count()} CPUs)"
    )
    print(
        f"{'case':<15}{'artifact':>10}  {'export s ref / ptekit':>22} {'ratio':>6} {'cpu ratio':>9}  "
        f"{'peak above built, x artifact: ref / ptekit':>44}  {'identical':>9}"
    )
    for row in summary:
        ref, pk = row["reference"], row["ptekit"]
        print(
            f"{row['case']:<15}{pk['size_mib']:>8.1f}Mi  "
            f"{ref['export_s']:>11.2f} /{pk['export_s']:>8.2f} {row['time_ratio']:>5.2f}x {row['cpu_ratio']:>8.2f}x  "
            f"{ref['above_built_mib']:>9.1f} Mi {ref['above_built_x_artifact']:5.2f}x /"
            f"{pk['above_built_mib']:>8.1f} Mi {pk['above_built_x_artifact']:5.2f}x  "
            f"{'yes' if row['identical'] else 'NO':>9}"
        )
    print(
        f"import ptekit: median {install['import_s'] * 1e3:.1f} ms (cpu {install['import_cpu_s'] * 1e3:.1f} ms), "
        f"{install['import_rss'] / MIB:.2f} MiB RSS; install(): {install['install_s'] * 1e3:.2f} ms "
        f"(cpu {install['install_cpu_s'] * 1e3:.2f} ms), {install['install_rss'] / MIB:.3f} MiB RSS, "
        f"modules it imported: {install['install_new_modules'] or 'none'}"
    )
    print("ratios: ptekit / reference, the median of the per-pair ratios (below 1: ptekit faster)")


def _summarize(case, rs):
    """Medians per mode and the median of the per-pair time ratios of one case."""
    row = {"case": case, "identical": len({r["sha256"] for r in rs}) == 1}
    for mode in ("reference", "ptekit"):
        mine = [r for r in rs if r["mode"] == mode]
        med = lambda k: statistics.median(r[k] for r in mine)  # noqa: E731
        above = statistics.median(r["peak_rss"] - r["rss_built"] for r in mine)
        row[mode] = {
            "export_s": med("export_s"),
            "export_cpu_s": med("export_cpu_s"),
            "peak_rss_mib": med("peak_rss") / MIB,
            "above_built_mib": above / MIB,
            "above_built_x_artifact": above / med("size"),
            "size_mib": med("size") / MIB,
            "peak_reset": all(r["peak_reset"] for r in mine),
        }
    pairs = {}
    for r in rs:
        pairs.setdefault(r["pair"], {})[r["mode"]] = r
    for key, name in (("export_s", "time_ratio"), ("export_cpu_s", "cpu_ratio")):
        row[name] = statistics.median(p["ptekit"][key] / p["reference"][key] for p in pairs.values())
    return row


if __name__ == "__main__":
    main()
