"""Reference driver for ptekit-flatbuffers' differential tests.

Reads one JSON build program per line on stdin, runs it with the real Python
`flatbuffers.Builder` (and ExecuTorch's `_create_aligned_byte_vector`, extracted from the
installed executorch sources without importing torch), and prints one line per program:
the hex of `Builder.Output()`, or `ERR <message>`.

A program is a JSON list of ops; ops that create something append its offset to a
result list that later ops refer to by index (-1 means the offset 0):
  ["so", num_fields]                    StartObject
  ["add", ty, slot, x, default]         Prepend<Ty>Slot (floats given as bit patterns)
  ["addf32d", slot, x, default]         PrependFloat32Slot with f64 values (bit patterns)
  ["addoff", slot, ref]                 PrependUOffsetTRelativeSlot(slot, off, 0)
  ["eo"]                                EndObject                      -> result
  ["str", s]                            CreateString                   -> result
  ["svec"|"svecm", ty, [x...]]          StartVector(sz, n, sz) + Prepend<Ty> last..first
                                        + EndVector                    -> result
  ["abytes", hex, alignment]            _create_aligned_byte_vector    -> result
  ["ovec", [ref...]]                    StartVector(4, n, 4) + PrependUOffsetTRelative
                                        last..first + EndVector        -> result
  ["finish", ref, identifier_hex|null]  Finish
"""

import ast
import json
import os
import struct
import sys

import flatbuffers


def _load_executorch_functions():
    """Compiles the real `_create_aligned_byte_vector` and `_is_valid_alignment` from the
    installed executorch sources (importing the modules would import torch)."""
    import importlib.util

    spec = importlib.util.find_spec("executorch")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("executorch is not installed in the reference environment")
    base = os.path.join(list(spec.submodule_search_locations)[0], "exir", "_serialize")
    namespace = {}
    for file_name, func_name in (
        ("_flatbuffer.py", "_is_valid_alignment"),
        ("_flatbuffer_program.py", "_create_aligned_byte_vector"),
    ):
        path = os.path.join(base, file_name)
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), filename=path)
        funcs = [
            n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == func_name
        ]
        if len(funcs) != 1:
            raise RuntimeError(f"{func_name} not found in {path}")
        module = ast.Module(body=funcs, type_ignores=[])
        exec(compile(module, path, "exec"), {"Any": object, **namespace}, namespace)
    return namespace["_create_aligned_byte_vector"]


create_aligned_byte_vector = _load_executorch_functions()

NAMES = {
    "bool": "Bool",
    "u8": "Uint8",
    "i8": "Int8",
    "u16": "Uint16",
    "i16": "Int16",
    "u32": "Uint32",
    "i32": "Int32",
    "u64": "Uint64",
    "i64": "Int64",
    "f32": "Float32",
    "f64": "Float64",
}
SIZES = {
    "bool": 1,
    "u8": 1,
    "i8": 1,
    "u16": 2,
    "i16": 2,
    "u32": 4,
    "i32": 4,
    "u64": 8,
    "i64": 8,
    "f32": 4,
    "f64": 8,
}


def value(ty, x):
    if ty == "bool":
        return bool(x)
    if ty == "f32":
        return struct.unpack("<f", struct.pack("<I", x))[0]
    if ty == "f64":
        return struct.unpack("<d", struct.pack("<Q", x))[0]
    return x


def run(ops):
    b = flatbuffers.Builder()
    results = []

    def ref(i):
        return 0 if i < 0 else results[i]

    for op in ops:
        kind = op[0]
        if kind == "so":
            b.StartObject(op[1])
        elif kind == "add":
            _, ty, slot, x, d = op
            getattr(b, "Prepend" + NAMES[ty] + "Slot")(slot, value(ty, x), value(ty, d))
        elif kind == "addf32d":
            _, slot, x, d = op
            b.PrependFloat32Slot(slot, value("f64", x), value("f64", d))
        elif kind == "addoff":
            b.PrependUOffsetTRelativeSlot(op[1], ref(op[2]), 0)
        elif kind == "eo":
            results.append(b.EndObject())
        elif kind == "str":
            results.append(b.CreateString(op[1]))
        elif kind in ("svec", "svecm"):
            _, ty, xs = op
            b.StartVector(SIZES[ty], len(xs), SIZES[ty])
            prepend = getattr(b, "Prepend" + NAMES[ty])
            for x in reversed(xs):
                prepend(value(ty, x))
            results.append(b.EndVector())
        elif kind == "abytes":
            results.append(create_aligned_byte_vector(b, bytes.fromhex(op[1]), op[2]))
        elif kind == "ovec":
            refs = op[1]
            b.StartVector(4, len(refs), 4)
            for r in reversed(refs):
                b.PrependUOffsetTRelative(ref(r))
            results.append(b.EndVector())
        elif kind == "finish":
            ident = None if op[2] is None else bytes.fromhex(op[2])
            b.Finish(ref(op[1]), ident)
        else:
            raise ValueError(f"unknown op {kind!r}")
    return bytes(b.Output()).hex()


def main():
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            out = run(json.loads(line))
        except Exception as e:  # reported to the Rust side, which fails the test
            out = "ERR " + type(e).__name__ + ": " + str(e).replace("\n", " ")
        sys.stdout.write(out + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
