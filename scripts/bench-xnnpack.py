#!/usr/bin/env python3
"""Benchmark (not a test): XNNPACK payload serialization, ptekit against the reference
(executorch 1.5.1's `convert_to_flatbuffer`: json.dumps + a `flatc` process per call).

Usage (reference venv with the bindings installed):
    "$PTEKIT_PYTHON" scripts/bench-xnnpack.py [--rounds N] [--skip-export] [--out DIR]

Parts, each measured interleaved (reference, ptekit, reference, ptekit, ...), medians:
1. `convert_to_flatbuffer` per partition on every XNNPACK payload of the corpus and the
   fixtures (graphs read back with ptekit.xnnpack.deserialize_xnnpack_binary);
2. the same on a synthetic partition of 10,000 FullyConnected nodes (30,000 values,
   20,001 constant entries), as in the note's measurement;
3. the whole XNNPACK lowering (`to_edge_transform_and_lower` + `to_executorch` +
   `.buffer`) of a 24-layer transformer (dim 64, 4 heads) without and with
   `ptekit.install()`: flatc spawns, seconds inside convert_to_flatbuffer, total;
   writes OUT/transformer24_xnnpack.pte;
4. `ptekit inspect` (text and --json) of that 100+ partition program, whole process.
"""

import argparse
import os
import pathlib
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))


def corpus_graphs():
    import ptekit
    import ptekit.xnnpack as px

    corpus = pathlib.Path(os.environ.get("PTEKIT_CORPUS", ROOT.parent / "shared" / "corpus"))
    graphs = []
    for path in sorted(corpus.glob("*.pte")) + sorted((ROOT / "tests" / "fixtures").glob("*.pte")):
        pte = ptekit.deserialize_pte_binary(path.read_bytes())
        inline = pte.program.backend_delegate_data
        for plan in pte.program.execution_plan:
            for d in plan.delegates:
                if d.id == "XnnpackBackend":
                    graphs.append((path.name, px.deserialize_xnnpack_binary(bytes(inline[d.processed.index].data))))
    return graphs


def synthetic_graph(nodes=10_000):
    from executorch.backends.xnnpack.serialization import xnnpack_graph_schema as S

    values, xnodes = [], []
    consts = [S.ConstantDataOffset(offset=0, size=0)]

    def tensor(i, cidx=0, flags=0, ext=2**32 - 1):
        return S.XValue(xvalue_union=S.XNNTensorValue(datatype=S.XNNDatatype.xnn_datatype_fp32, num_dims=2, dims=[1, 64], constant_buffer_idx=cidx, external_id=ext, flags=flags, id_out=i))

    values.append(tensor(0, flags=1, ext=0))
    prev = 0
    for n in range(nodes):
        w = len(values)
        consts.append(S.ConstantDataOffset(offset=2**64 - 1, size=16384, named_key=f"{n:064x}"))
        values.append(tensor(w, cidx=len(consts) - 1))
        consts.append(S.ConstantDataOffset(offset=2**64 - 1, size=256, named_key=f"b{n:063x}"))
        values.append(tensor(w + 1, cidx=len(consts) - 1))
        out = w + 2
        last = n == nodes - 1
        values.append(tensor(out, flags=2 if last else 0, ext=1 if last else 2**32 - 1))
        xnodes.append(S.XNode(xnode_union=S.XNNFullyConnected(input1_id=prev, filter_id=w, bias_id=w + 1, output_id=out, flags=0), debug_handle=n, output_min_max=S.OutputMinMax(output_min=0, output_max="+inf") if n % 2 else None))
        prev = out
    return S.XNNGraph(version="0", xnodes=xnodes, xvalues=values, num_externs=2, input_ids=[0], output_ids=[prev], constant_data=consts)


def interleaved(fa, fb, rounds):
    ta, tb = [], []
    for _ in range(rounds):
        for f, t in ((fa, ta), (fb, tb)):
            t0 = time.perf_counter()
            f()
            t.append(time.perf_counter() - t0)
    return statistics.median(ta), statistics.median(tb)


def bench_convert(rounds):
    import ptekit.xnnpack as px
    from executorch.backends.xnnpack.serialization import xnnpack_graph_serialize as ref

    reference = ref.convert_to_flatbuffer
    assert not px.installed()
    graphs = corpus_graphs()
    ratios = []
    tot_a = tot_b = 0.0
    for name, g in graphs:
        assert reference(g) == px.convert_to_flatbuffer(g)
        a, b = interleaved(lambda: reference(g), lambda: px.convert_to_flatbuffer(g), rounds)
        ratios.append(a / b)
        tot_a += a
        tot_b += b
    print(f"1. convert_to_flatbuffer, {len(graphs)} corpus/fixture partitions, median of {rounds} interleaved rounds each:")
    print(f"   reference total {tot_a * 1e3:.1f} ms, ptekit total {tot_b * 1e3:.3f} ms, ratio {tot_a / tot_b:.0f}x; per partition ratio min {min(ratios):.0f}x median {statistics.median(ratios):.0f}x")
    g = synthetic_graph()
    r = max(2, rounds // 10)
    fb = px.convert_to_flatbuffer(g)
    assert reference(g) == fb
    a, b = interleaved(lambda: reference(g), lambda: px.convert_to_flatbuffer(g), r)
    print(f"2. synthetic 10,000-node partition ({len(fb):,} bytes), median of {r} interleaved rounds:")
    print(f"   reference {a:.2f} s, ptekit {b * 1e3:.1f} ms, ratio {a / b:.0f}x")


def lower_once(install):
    import torch
    import ptekit
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.backends.xnnpack.serialization import xnnpack_graph_serialize as ser
    from executorch.exir import EdgeCompileConfig, to_edge_transform_and_lower
    import make_fixtures as mf

    (ptekit.install if install else ptekit.uninstall)()
    spawns = [0]
    real_run = subprocess.run

    def counting_run(args, *a, **k):
        if args and "flatc" in os.path.basename(str(args[0])):
            spawns[0] += 1
        return real_run(args, *a, **k)

    inner = ser.convert_to_flatbuffer
    spent = [0.0]

    def timed(g):
        t0 = time.perf_counter()
        try:
            return inner(g)
        finally:
            spent[0] += time.perf_counter() - t0

    subprocess.run = counting_run
    ser.convert_to_flatbuffer = timed
    try:
        torch.manual_seed(0)
        model = mf.Transformer(layers=24, dim=64, heads=4, vocab=64).eval()
        t0 = time.perf_counter()
        ep = torch.export.export(model, (torch.randint(0, 64, (1, 16)),), strict=False)
        edge = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()], compile_config=EdgeCompileConfig(_check_ir_validity=False))
        buf = edge.to_executorch().buffer
        total = time.perf_counter() - t0
    finally:
        subprocess.run = real_run
        ser.convert_to_flatbuffer = inner
        ptekit.uninstall()
    return total, spent[0], spawns[0], buf


def bench_lowering(rounds, out):
    rows = {False: [], True: []}
    bufs = {}
    for _ in range(rounds):
        for install in (False, True):
            total, spent, spawns, buf = lower_once(install)
            rows[install].append((total, spent, spawns))
            bufs[install] = buf
    assert bufs[False] == bufs[True], "install() changed the .pte bytes"
    print(f"3. 24-layer transformer XNNPACK lowering + to_executorch + .buffer, {rounds} interleaved rounds (medians):")
    for install in (False, True):
        r = rows[install]
        print(f"   {'with ptekit.install()' if install else 'reference            '}: total {statistics.median(x[0] for x in r):.1f} s, "
              f"convert_to_flatbuffer {statistics.median(x[1] for x in r):.3f} s, flatc spawns {r[0][2]}")
    out.mkdir(parents=True, exist_ok=True)
    path = out / "transformer24_xnnpack.pte"
    path.write_bytes(bufs[True])
    print(f"   identical .pte bytes ({len(bufs[True]):,}), written to {path}")
    return path


def bench_inspect(path, rounds):
    exe = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release" / "ptekit"
    out = subprocess.run([str(exe), "inspect", "--json", str(path)], capture_output=True, check=True, text=True).stdout
    import json

    n = sum(1 for p in json.loads(out)["execution_plans"] for d in p["delegates"] if "xnnpack" in d)
    for args in (["inspect"], ["inspect", "--json"], ["verify"]):
        times = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            subprocess.run([str(exe), *args, str(path)], capture_output=True, check=True)
            times.append(time.perf_counter() - t0)
        print(f"4. ptekit {' '.join(args)} of {path.name} ({n} XNNPACK delegates), whole process, median of {rounds}: {statistics.median(times) * 1e3:.1f} ms")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--lower-rounds", type=int, default=2)
    ap.add_argument("--skip-export", action="store_true")
    ap.add_argument("--out", type=pathlib.Path, default=ROOT / "bench-out")
    ap.add_argument("--pte", type=pathlib.Path, help="program for part 4 (default: the one part 3 writes)")
    args = ap.parse_args()
    bench_convert(args.rounds)
    path = args.pte
    if not args.skip_export:
        path = bench_lowering(args.lower_rounds, args.out)
    if path is None:
        path = args.out / "transformer24_xnnpack.pte"
    if path.exists():
        bench_inspect(path, args.rounds)


if __name__ == "__main__":
    main()
