#!/usr/bin/env python3
"""Reference driver for ptekit's bundled-program and FlatTensor tests (executorch 1.5.1).

Usage: bundled_reference.py MODE IN.json OUT_DIR

Modes:
  export    fresh exports with the reference exporter; for each model writes NAME.pte,
            the test values as NAME.METHOD.CASE.in.npz / .out.npz, the reference's
            bundled program NAME.bpte (BundledProgram + serialize_from_bundled_program_to_
            flatbuffer) and NAME.view.json (deserialize_from_flatbuffer_to_bundled_program).
            Also writes external.pte + external.ptd (external constants) and its view.
  bundled   IN.json lists bundled programs in schema form; writes case{i}.bpte packed
            by _bundled_program_schema_to_flatbuffer and, for each file in
            IN.json["decode"], its reference view (decode{i}.view.json).
  ptd       IN.json lists payloads; writes case{i}.ptd from FlatTensorSerializer(config)
            .serialize and for IN.json["decode"] files the reference deserialize view.
"""

import json
import os
import sys

import numpy as np
import torch


def bp_view(bp):
    """A JSON view of a bp_schema.BundledProgram (the reference's reading)."""

    def value(v):
        val = v.val
        kind = type(val).__name__
        if kind == "Tensor":
            return {
                "kind": kind,
                "scalar_type": int(val.scalar_type),
                "sizes": list(val.sizes),
                "data": bytes(val.data).hex(),
                "dim_order": list(val.dim_order),
            }
        if kind == "Int":
            return {"kind": kind, "value": int(val.int_val)}
        if kind == "Bool":
            return {"kind": kind, "value": bool(val.bool_val)}
        if kind == "Double":
            d = val.double_val
            return {"kind": kind, "value": float(d) if not isinstance(d, str) else d}
        return {"kind": kind}

    return {
        "version": bp.version,
        "program_len": len(bytes(bp.program)),
        "suites": [
            {
                "method_name": s.method_name,
                "cases": [
                    {
                        "inputs": [value(v) for v in c.inputs],
                        "expected_outputs": [value(v) for v in c.expected_outputs],
                    }
                    for c in s.test_cases
                ],
            }
            for s in bp.method_test_suites
        ],
    }


class Mlp(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.l1 = torch.nn.Linear(6, 12)
        self.l2 = torch.nn.Linear(12, 3)

    def forward(self, x):
        return self.l2(torch.relu(self.l1(x)))

    def scaled(self, x, s):
        return self.forward(x) * s


class IntBool(torch.nn.Module):
    """int64 and bool tensor inputs; float and int64 outputs."""

    def forward(self, idx, mask, x):
        y = torch.where(mask, x, -x)
        return y * 2.0, idx + 3


class Bytes(torch.nn.Module):
    """uint8 / int32 / float64 tensors."""

    def forward(self, a, b, c):
        return a + 1, b * 2, c.sum(dim=0)


class _Method(torch.nn.Module):
    def __init__(self, model, fn):
        super().__init__()
        self.model = model
        self.fn = fn

    def forward(self, *args):
        return getattr(self.model, self.fn)(*args)


def export(model, methods, external=False):
    from executorch.exir import EdgeCompileConfig, ExecutorchBackendConfig, to_edge_transform_and_lower

    model.eval()
    programs = {}
    for name, args in methods.items():
        m = model if name == "forward" else _Method(model, name)
        programs[name] = torch.export.export(m, args, strict=False)
    edge = to_edge_transform_and_lower(programs, compile_config=EdgeCompileConfig(_check_ir_validity=False))
    return edge.to_executorch(ExecutorchBackendConfig(external_constants=external))


def mode_export(spec, out):
    from executorch.devtools.bundled_program.config import MethodTestCase, MethodTestSuite
    from executorch.devtools.bundled_program.core import BundledProgram
    from executorch.devtools.bundled_program.serialize import (
        deserialize_from_flatbuffer_to_bundled_program,
        serialize_from_bundled_program_to_flatbuffer,
    )

    torch.manual_seed(spec.get("seed", 0))
    g = torch.Generator().manual_seed(spec.get("seed", 0))

    def mlp_case():
        return (torch.randn(2, 6, generator=g),)

    models = {
        "mlp2": (Mlp(), {"forward": lambda: (torch.randn(2, 6, generator=g),),
                         "scaled": lambda: (torch.randn(2, 6, generator=g), torch.randn(1, generator=g))}),
        "intbool": (IntBool(), {"forward": lambda: (
            torch.randint(-5, 5, (4,), generator=g, dtype=torch.int64),
            torch.rand(2, 4, generator=g) > 0.5,
            torch.randn(2, 4, generator=g),
        )}),
        "bytes": (Bytes(), {"forward": lambda: (
            torch.randint(0, 200, (3, 2), generator=g, dtype=torch.uint8),
            torch.randint(-100, 100, (5,), generator=g, dtype=torch.int32),
            torch.randn(4, 3, generator=g, dtype=torch.float64),
        )}),
    }
    for name, (model, methods) in models.items():
        example = {m: make() for m, make in methods.items()}
        manager = export(model, example)
        with open(os.path.join(out, name + ".pte"), "wb") as f:
            f.write(manager.buffer)
        suites = []
        # Methods in reverse order: the reference sorts suites by name.
        for m in sorted(methods, reverse=True):
            cases = []
            for i in range(spec.get("cases", 3)):
                inputs = methods[m]()
                fn = model if m == "forward" else getattr(model, m)
                with torch.no_grad():
                    outs = fn(*inputs)
                if isinstance(outs, torch.Tensor):
                    outs = (outs,)
                outs = [o.contiguous() for o in outs]
                cases.append(MethodTestCase(inputs=list(inputs), expected_outputs=outs))
                np.savez(os.path.join(out, f"{name}.{m}.{i}.in.npz"),
                         **{f"in{j}": t.numpy() for j, t in enumerate(inputs)})
                np.savez(os.path.join(out, f"{name}.{m}.{i}.out.npz"),
                         **{f"out{j}": t.numpy() for j, t in enumerate(outs)})
            suites.append(MethodTestSuite(method_name=m, test_cases=cases))
        bp = BundledProgram(manager, suites)
        data = serialize_from_bundled_program_to_flatbuffer(bp)
        with open(os.path.join(out, name + ".bpte"), "wb") as f:
            f.write(data)
        view = bp_view(deserialize_from_flatbuffer_to_bundled_program(data))
        with open(os.path.join(out, name + ".view.json"), "w") as f:
            json.dump(view, f)

    # External constants: a .pte plus its .ptd written by FlatTensorSerializer.
    manager = export(Mlp(), {"forward": (torch.randn(2, 6),)}, external=True)
    with open(os.path.join(out, "external.pte"), "wb") as f:
        f.write(manager.buffer)
    d = os.path.join(out, "ext")
    os.makedirs(d, exist_ok=True)
    manager.write_tensor_data_to_file(d)
    ptds = sorted(p for p in os.listdir(d) if p.endswith(".ptd"))
    with open(os.path.join(out, "external.ptds.json"), "w") as f:
        json.dump([os.path.join(d, p) for p in ptds], f)
    for p in ptds:
        with open(os.path.join(d, p), "rb") as f:
            blob = f.read()
        with open(os.path.join(d, p + ".view.json"), "w") as f:
            json.dump(ptd_view(blob), f)


def bp_from_json(j):
    from executorch.devtools.bundled_program import schema as s

    def value(v):
        k = v["kind"]
        if k == "Tensor":
            return s.Value(val=s.Tensor(scalar_type=v["scalar_type"], sizes=v["sizes"],
                                        data=bytes.fromhex(v["data"]), dim_order=v["dim_order"]))
        if k == "Int":
            return s.Value(val=s.Int(int_val=v["value"]))
        if k == "Bool":
            return s.Value(val=s.Bool(bool_val=v["value"]))
        if k == "Double":
            x = v["value"]
            return s.Value(val=s.Double(double_val=float(x)))
        raise ValueError(k)

    return s.BundledProgram(
        version=j["version"],
        method_test_suites=[
            s.BundledMethodTestSuite(
                method_name=suite["method_name"],
                test_cases=[
                    s.BundledMethodTestCase(inputs=[value(v) for v in c["inputs"]],
                                            expected_outputs=[value(v) for v in c["expected_outputs"]])
                    for c in suite["cases"]
                ],
            )
            for suite in j["suites"]
        ],
        program=bytes.fromhex(j["program"]),
    )


def mode_bundled(spec, out):
    from executorch.devtools.bundled_program.serialize import (
        _bundled_program_schema_to_flatbuffer,
        deserialize_from_flatbuffer_to_bundled_program,
    )

    for i, case in enumerate(spec["cases"]):
        with open(os.path.join(out, f"case{i}.bpte"), "wb") as f:
            f.write(_bundled_program_schema_to_flatbuffer(bp_from_json(case)))
    for i, path in enumerate(spec.get("decode", [])):
        with open(path, "rb") as f:
            data = f.read()
        try:
            view = bp_view(deserialize_from_flatbuffer_to_bundled_program(data))
        except Exception as e:  # noqa: BLE001 - report, the test decides
            view = {"error": repr(e)}
        with open(os.path.join(out, f"decode{i}.view.json"), "w") as f:
            json.dump(view, f)


def ptd_view(blob):
    from executorch.exir._serialize._cord import Cord
    from executorch.extension.flat_tensor.serialize.serialize import FlatTensorSerializer

    payload = FlatTensorSerializer().deserialize(Cord(blob))
    return {
        "buffers": [bytes(b).hex() for b in payload.buffers],
        "named_data": [
            {
                "key": k,
                "buffer_index": e.buffer_index,
                "tensor_layout": None if e.tensor_layout is None else {
                    "scalar_type": int(e.tensor_layout.scalar_type),
                    "sizes": list(e.tensor_layout.sizes),
                    "dim_order": list(e.tensor_layout.dim_order),
                },
            }
            for k, e in payload.named_data.items()
        ],
    }


def mode_ptd(spec, out):
    from executorch.exir._serialize.data_serializer import DataEntry, DataPayload
    from executorch.exir.scalar_type import ScalarType
    from executorch.exir.tensor_layout import TensorLayout
    from executorch.extension.flat_tensor.serialize.serialize import FlatTensorConfig, FlatTensorSerializer

    for i, case in enumerate(spec["cases"]):
        named = {}
        for e in case["named_data"]:
            tl = e["tensor_layout"]
            named[e["key"]] = DataEntry(
                buffer_index=e["buffer_index"],
                alignment=e["alignment"],
                tensor_layout=None if tl is None else TensorLayout(
                    scalar_type=ScalarType(tl["scalar_type"]), sizes=tl["sizes"], dim_order=tl["dim_order"]),
            )
        payload = DataPayload(buffers=[bytes.fromhex(b) for b in case["buffers"]], named_data=named)
        ser = FlatTensorSerializer(FlatTensorConfig(segment_alignment=case["segment_alignment"]))
        with open(os.path.join(out, f"case{i}.ptd"), "wb") as f:
            f.write(bytes(ser.serialize(payload)))
    for i, path in enumerate(spec.get("decode", [])):
        with open(path, "rb") as f:
            blob = f.read()
        try:
            view = ptd_view(blob)
        except Exception as e:  # noqa: BLE001
            view = {"error": repr(e)}
        with open(os.path.join(out, f"decode{i}.view.json"), "w") as f:
            json.dump(view, f)


def main():
    mode, spec_path, out = sys.argv[1:4]
    with open(spec_path) as f:
        spec = json.load(f)
    {"export": mode_export, "bundled": mode_bundled, "ptd": mode_ptd}[mode](spec, out)


if __name__ == "__main__":
    main()
