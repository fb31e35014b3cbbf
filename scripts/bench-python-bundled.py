#!/usr/bin/env python3
"""Benchmark (not a test): ptekit's bundled-program (`.bpte`) and tensor-data (`.ptd`)
functions against the reference (executorch 1.5.1) in one process.

Usage (with the reference venv, after installing the bindings):
    "$PTEKIT_PYTHON" scripts/bench-python-bundled.py [FILE.bpte] [--ptd FILE.ptd]
        [--repeat N] [--json]

Defaults: $PTEKIT_CORPUS/transformer_xnnpack.bpte and
$PTEKIT_CORPUS/external._default_external_constant.ptd (PTEKIT_CORPUS defaults to
../shared/corpus next to the repository).

Prints the median wall times of N interleaved runs (reference, ptekit, reference, ...)
and the ratio reference / ptekit for:
- bundled deserialize: file bytes -> schema BundledProgram
  (`deserialize_from_flatbuffer_to_bundled_program`; the reference runs `flatc --json`
  in a subprocess and parses the JSON);
- bundled serialize: schema BundledProgram -> bytes (the reference's
  `_bundled_program_schema_to_flatbuffer`, i.e. `serialize_from_bundled_program_to_flatbuffer`
  after `serialize_to_schema()`);
- ptd deserialize / serialize with `FlatTensorSerializer()`, and `bytes()` /
  `write_to_file(f)` (a file in the page cache) of the serializer's result.
Every result is checked equal (or byte-identical) to the reference's before timing.
"""

import argparse
import json
import os
import tempfile
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
CORPUS = pathlib.Path(os.environ.get("PTEKIT_CORPUS", ROOT.parent / "shared" / "corpus"))


sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from bench_interleave import interleaved, write_file  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bpte", nargs="?", default=str(CORPUS / "transformer_xnnpack.bpte"))
    ap.add_argument("--ptd", default=str(CORPUS / "external._default_external_constant.ptd"))
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()

    from executorch.devtools.bundled_program.serialize import (
        _bundled_program_schema_to_flatbuffer as ref_pack,
        deserialize_from_flatbuffer_to_bundled_program as ref_read,
    )
    from executorch.exir._serialize._cord import Cord
    from executorch.extension.flat_tensor.serialize.serialize import FlatTensorSerializer as RefFT

    import ptekit

    rows = []
    data = pathlib.Path(args.bpte).read_bytes()
    schema = ref_read(data)
    assert ptekit.deserialize_from_flatbuffer_to_bundled_program(data) == schema
    assert ptekit.serialize_from_bundled_program_to_flatbuffer(schema) == ref_pack(schema)
    rows.append(("bundled deserialize", *interleaved(lambda: ref_read(data), lambda: ptekit.deserialize_from_flatbuffer_to_bundled_program(data), args.repeat)))
    rows.append(("bundled serialize", *interleaved(lambda: ref_pack(schema), lambda: ptekit.serialize_from_bundled_program_to_flatbuffer(schema), args.repeat)))

    if args.ptd and pathlib.Path(args.ptd).exists():
        ptd = pathlib.Path(args.ptd).read_bytes()
        ref_ft, mine_ft = RefFT(), ptekit.FlatTensorSerializer()
        payload = ref_ft.deserialize(Cord(ptd))
        assert mine_ft.deserialize(ptd) == payload
        assert bytes(mine_ft.serialize(payload)) == bytes(ref_ft.serialize(payload))
        rows.append(("ptd deserialize", *interleaved(lambda: ref_ft.deserialize(Cord(ptd)), lambda: mine_ft.deserialize(ptd), args.repeat)))
        ref_out, mine_out = ref_ft.serialize(payload), mine_ft.serialize(payload)
        tmp = os.path.join(tempfile.mkdtemp(prefix="ptekit-bench-"), "out.ptd")
        rows.append(("ptd bytes(result)", *interleaved(lambda: bytes(ref_out), lambda: bytes(mine_out), args.repeat)))
        rows.append((
            "ptd write_to_file",
            *interleaved(lambda: write_file(ref_out, tmp), lambda: write_file(mine_out, tmp), args.repeat),
        ))
        rows.append(("ptd serialize", *interleaved(lambda: bytes(ref_ft.serialize(payload)), lambda: bytes(mine_ft.serialize(payload)), args.repeat)))

    if args.json:
        print(json.dumps({
            "bpte": args.bpte, "bpte_bytes": len(data), "ptd": args.ptd, "repeat": args.repeat,
            "results": [
                {"what": w, "reference_s": r, "ptekit_s": p, "ratio": r / p} for w, r, p in rows
            ],
        }, indent=1))
        return
    print(f"{args.bpte}: {len(data):,} bytes; {args.ptd}; medians of {args.repeat} interleaved runs")
    print(f"{'':22} {'reference':>12} {'ptekit':>12} {'ratio':>8}")
    for what, r, p in rows:
        print(f"{what:22} {r * 1e3:10.3f}ms {p * 1e3:10.3f}ms {r / p:7.1f}x")


if __name__ == "__main__":
    main()
