"""Differential-test helper for ptekit-format's program packer and decoder.

Reads a JSON array of cases from the file named by argv[1] and writes a JSON array of
results to argv[2]. Each case is

    {"program": <program JSON>, "tensor_alignment": int, "delegate_alignment": int,
     "ours": "<hex of the bytes ptekit packed>"}

and each result

    {"bytes": "<hex of _program_to_flatbuffer(...).data>",
     "view": <program JSON of _flatbuffer_to_program(bytes.fromhex(ours))>,
     "error": null | "<message>"}

Program JSON mirrors the Rust model: an object per table with the schema's snake_case
field names, `null` for absent fields, union values as objects with a "kind" member
naming the member table, byte vectors as hex strings, doubles as the hex of their
8 little-endian bytes (so that inf/NaN/-0.0 survive JSON), enums as integers.
"""

import enum
import json
import struct
import sys
import traceback
import typing
from dataclasses import fields, is_dataclass

from executorch.exir import schema
from executorch.exir._serialize._flatbuffer_program import (
    _flatbuffer_to_program,
    _program_to_flatbuffer,
)

UNION_MEMBERS = {
    cls.__name__: cls
    for cls in list(typing.get_args(schema.KernelTypes))
    + list(typing.get_args(schema.InstructionArguments))
}
_HINTS = {}


def hints(cls):
    h = _HINTS.get(cls)
    if h is None:
        h = typing.get_type_hints(cls)
        _HINTS[cls] = h
    return h


def unhex_double(s):
    return struct.unpack("<d", bytes.fromhex(s))[0]


def hex_double(x):
    if isinstance(x, str):  # schema.Double keeps infinities as "inf" / "-inf"
        x = float(x)
    return struct.pack("<d", x).hex()


def from_json(tp, v):
    if v is None:
        return None
    origin = typing.get_origin(tp)
    if origin is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if all(is_dataclass(a) for a in args) and len(args) > 1:
            return dataclass_from_json(UNION_MEMBERS[v["kind"]], v)
        return from_json(args[0], v)
    if origin is list:
        (item,) = typing.get_args(tp)
        return [from_json(item, x) for x in v]
    if tp is bytes:
        return bytes.fromhex(v)
    if tp is float:
        return unhex_double(v)
    if is_dataclass(tp):
        return dataclass_from_json(tp, v)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp(v)
    return v


def dataclass_from_json(cls, obj):
    if cls is schema.Double:
        return schema.Double(unhex_double(obj["double_val"]))
    h = hints(cls)
    kwargs = {f.name: from_json(h[f.name], obj.get(f.name)) for f in fields(cls)}
    return cls(**kwargs)


def to_json(v):
    if v is None:
        return None
    if isinstance(v, schema.Double):
        return {"kind": "Double", "double_val": hex_double(v.double_val)}
    if is_dataclass(v):
        out = {f.name: to_json(getattr(v, f.name)) for f in fields(v)}
        name = type(v).__name__
        if name in UNION_MEMBERS:
            out["kind"] = name
        return out
    if isinstance(v, (list, tuple)):
        return [to_json(x) for x in v]
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v).hex()
    if isinstance(v, enum.Enum):
        return int(v.value)
    if isinstance(v, bool):
        return v
    if isinstance(v, float):
        return hex_double(v)
    return v


def main():
    with open(sys.argv[1]) as f:
        cases = json.load(f)
    results = []
    for case in cases:
        res = {"bytes": None, "view": None, "error": None}
        try:
            program = dataclass_from_json(schema.Program, case["program"])
            data = _program_to_flatbuffer(
                program,
                constant_tensor_alignment=case["tensor_alignment"],
                delegate_alignment=case["delegate_alignment"],
            ).data
            res["bytes"] = data.hex()
            ours = case.get("ours")
            if ours is not None:
                res["view"] = to_json(_flatbuffer_to_program(bytes.fromhex(ours)))
        except Exception:  # report, the Rust side fails the test with it
            res["error"] = traceback.format_exc()
        results.append(res)
    with open(sys.argv[2], "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main()
