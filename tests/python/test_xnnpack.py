"""XNNPACK payloads: ptekit.xnnpack against the reference's own convert_to_flatbuffer
(json.dumps + flatc 24.3.25) on random graphs covering every node kind, quantization
kind, datatype, absent/empty vectors and float edge cases; the reader's round trip;
the reference's error behaviour through install(); and a fresh XNNPACK export with
install() byte-identical to one without, spawning no flatc."""

import dataclasses
import math
import os
import random
import subprocess
import sys

import pytest

import ptekit
import ptekit.xnnpack as px
from executorch.backends.xnnpack.serialization import xnnpack_graph_schema as S
from executorch.backends.xnnpack.serialization import xnnpack_graph_serialize as ref

REFERENCE_CONVERT = ref.convert_to_flatbuffer

NODE_CLASSES = [getattr(S, n) for n in (
    "XNNAdd XNNFullyConnected XNNSoftmax XNNSigmoid XNNStaticTranspose XNNClamp XNNConv2d XNNDiv "
    "XNNStaticResizeBilinear2D XNNStaticConstantPad XNNAvgPooling2d XNNMinimum XNNDepthwiseConv2d "
    "XNNMaxPooling2d XNNMultiply XNNSubtract XNNFloor XNNConvert XNNGlobalAvgPooling2d XNNStaticReshape "
    "XNNArgMaxPooling2d XNNSquareRoot XNNCeiling XNNHardswish XNNLeakyReLU XNNMaximum XNNNegate "
    "XNNSquare XNNELU XNNAbs XNNPReLU XNNConcatenate2 XNNConcatenate3 XNNConcatenate4 XNNStaticSlice "
    "XNNScaledDotProductAttention XNNBatchMatrixMultiply XNNConcatenate5 XNNConvTranspose2d "
    "XNNReciprocalSquareRoot XNNLog XNNGelu XNNTanh XNNExp XNNSin XNNCopy XNNCos"
).split()]
assert len(NODE_CLASSES) == 47

# Floats as Python values (what json.dumps sees), including the cases where flatc's
# text -> f32 rounding differs from `float32(x)`, underflow, overflow, NaN, -0.0 and
# the strings the reference's passes write.
FLOAT_CASES = [
    0, 0.0, -0.0, 1, -1, 0.5, 1.0000000596046448, 1.0000000596046449, 3.4028235e38,
    3.4028235677973366e38, 3.402823669209385e38, 1e39, -1e39, 10**40, -(10**40), 1e-50,
    -1e-50, 7e-46, 1.4e-45, 1e-45, 7.006492321624085e-46, 1.17549435e-38, 0.1, 1 / 3,
    0.01275250967592001, float("inf"), float("-inf"), float("nan"), -float("nan"), "+inf",
    "inf", "-inf", 2**24 + 1, 2**60 + 12345, 123456789,
]
U32_CASES = [0, 1, 2, 7, 255, 65535, 2**31, 2**32 - 1]


def _u32(r):
    return r.choice(U32_CASES) if r.random() < 0.5 else r.randrange(2**32)


def _float(r):
    return r.choice(FLOAT_CASES) if r.random() < 0.7 else r.uniform(-1e6, 1e6)


def _u32_list(r, allow_none=True):
    c = r.random()
    if allow_none and c < 0.15:
        return None
    if c < 0.3:
        return []
    return [_u32(r) for _ in range(r.randrange(1, 6))]


def _node(r, cls):
    kwargs = {}
    for f in dataclasses.fields(cls):
        t = f.type if not isinstance(f.type, str) else eval(f.type, vars(S))
        if t is float:
            kwargs[f.name] = _float(r)
        elif t is int:
            kwargs[f.name] = _u32(r)
        else:  # List[int]
            kwargs[f.name] = _u32_list(r)
    return cls(**kwargs)


def _tensor(r):
    return S.XNNTensorValue(
        datatype=r.choice(list(S.XNNDatatype)),
        num_dims=_u32(r),
        dims=_u32_list(r),
        constant_buffer_idx=_u32(r),
        external_id=_u32(r),
        flags=_u32(r),
        id_out=_u32(r),
    )


def _i32(r):
    return r.choice([0, 1, -1, 2**31 - 1, -(2**31), r.randrange(-1000, 1000)])


def _scales(r):
    c = r.random()
    if c < 0.15:
        return None
    if c < 0.35:
        return []
    return [_float(r) for _ in range(r.randrange(1, 5))]


def _quant(r, kind):
    if kind == 0:
        return S.PerChannelQuant(scale=_scales(r), channel_dim=_i32(r), scale_buffer_idx=_u32(r), num_scales=_u32(r))
    if kind == 1:
        return S.PerTensorQuant(scale=_float(r), zero_point=_i32(r))
    if kind == 2:
        return S.PerTokenDynamicQuant(num_nonbatch_dims=_i32(r))
    bf16 = None if r.random() < 0.6 else [r.randrange(65536) for _ in range(r.randrange(0, 4))]
    return S.PerChannelGroupQuant(
        scale=_scales(r), channel_dim=_i32(r), group_size=_i32(r), scale_bf16=bf16,
        scale_buffer_idx=_u32(r), num_scales=_u32(r),
    )


KEYS = ["", "a" * 64, "scale_" + "b" * 64, "k\u00e9y", "x"]


def random_graph(r):
    nodes = []
    for cls in r.sample(NODE_CLASSES, len(NODE_CLASSES)) + [r.choice(NODE_CLASSES) for _ in range(r.randrange(0, 5))]:
        omm = None
        if r.random() < 0.4:
            omm = S.OutputMinMax(output_min=_float(r), output_max=_float(r))
        nodes.append(S.XNode(xnode_union=_node(r, cls), debug_handle=_u32(r), output_min_max=omm))
    values = []
    for i in range(r.randrange(1, 12)):
        if r.random() < 0.5:
            values.append(S.XValue(xvalue_union=_tensor(r)))
        else:
            values.append(S.XValue(xvalue_union=S.XNNQuantizedTensorValue(tensor_value=_tensor(r), quant_params=_quant(r, i % 4))))
    consts = []
    for _ in range(r.randrange(0, 5)):
        key = r.choice(KEYS) if r.random() < 0.9 else None
        consts.append(S.ConstantDataOffset(offset=r.choice([0, 1, 2**64 - 1, r.randrange(2**64)]), size=r.choice([0, r.randrange(2**64)]), named_key=key))
    return S.XNNGraph(
        version=r.choice(["0", "", "1.5"]),
        xnodes=nodes if r.random() < 0.95 else r.choice([None, []]),
        xvalues=values if r.random() < 0.95 else r.choice([None, []]),
        num_externs=_u32(r),
        input_ids=_u32_list(r),
        output_ids=_u32_list(r),
        constant_data=consts if r.random() < 0.9 else None,
    )


def test_random_graphs_identical_to_flatc():
    r = random.Random(int(os.environ.get("PTEKIT_XNNPACK_SEED", "9")))
    n = int(os.environ.get("PTEKIT_XNNPACK_GRAPHS", "150"))
    kinds, datatypes = set(), set()
    for i in range(n):
        g = random_graph(r)
        for node in g.xnodes or []:
            kinds.add(type(node.xnode_union).__name__)
        for v in g.xvalues or []:
            t = v.xvalue_union if isinstance(v.xvalue_union, S.XNNTensorValue) else v.xvalue_union.tensor_value
            datatypes.add(int(t.datatype))
        expected = REFERENCE_CONVERT(g)
        got = px.convert_to_flatbuffer(g)
        assert got == expected, f"graph {i}: {len(got)} vs {len(expected)} bytes, first difference at {_diff(got, expected)}"
    assert len(kinds) == 47 and datatypes == set(range(15))


def _diff(a, b):
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def test_serialize_binary_header_and_padding():
    r = random.Random(3)
    for _ in range(5):
        g = random_graph(r)
        fb = REFERENCE_CONVERT(g)
        for const in (b"", b"\x07" * 5, bytearray(b"abc" * 11)):
            ours = px.serialize_xnnpack_binary(g, const)
            # The reference's serialize_xnnpack_binary looks convert_to_flatbuffer up
            # in its module: make sure it is the reference's (flatc) here.
            ptekit.uninstall()
            assert not px.installed()
            theirs = ref.serialize_xnnpack_binary(g, const)
            assert ours == theirs
            assert ours[32:32 + len(fb)] == fb


def _stored_f32(x):
    import struct

    return struct.unpack("<f", struct.pack("<f", x))[0] if not isinstance(x, str) else x


def test_deserialize_roundtrip_random():
    r = random.Random(11)
    for i in range(60):
        g = random_graph(r)
        blob = px.serialize_xnnpack_binary(g, b"")
        try:
            back = px.deserialize_xnnpack_binary(blob)
        except ptekit.PteError as e:
            # Random ids and constant indices rarely form a consistent graph: the
            # reader's cross-reference checks reject them, naming the field.
            assert "xnnpack_graph" not in str(e) and ("xnodes[" in str(e) or "xvalues[" in str(e) or "constant_data[" in str(e) or "input_ids[" in str(e) or "output_ids[" in str(e)), str(e)
            continue
        assert type(back) is S.XNNGraph
        assert px.serialize_xnnpack_binary(back, b"") == blob


def _consistent_graph(r):
    """A graph whose ids and constant indices are consistent (like an export)."""
    n_values = 6
    values = []
    for i in range(n_values):
        t = S.XNNTensorValue(datatype=S.XNNDatatype(r.randrange(15)), num_dims=2, dims=[2, 3], constant_buffer_idx=r.choice([0, 1]), external_id=i if i < 2 else 2**32 - 1, flags=1 if i == 0 else (2 if i == 1 else 0), id_out=i)
        if i % 2:
            values.append(S.XValue(xvalue_union=S.XNNQuantizedTensorValue(tensor_value=t, quant_params=_quant(r, i % 4))))
        else:
            values.append(S.XValue(xvalue_union=t))
    nodes = []
    for cls in NODE_CLASSES:
        kw = {}
        for f in dataclasses.fields(cls):
            t = f.type if not isinstance(f.type, str) else eval(f.type, vars(S))
            if f.name.endswith("_id"):
                kw[f.name] = r.choice([r.randrange(n_values), 2**32 - 1])
            elif t is float:
                kw[f.name] = _float(r)
            elif t is int:
                kw[f.name] = _u32(r)
            else:
                kw[f.name] = _u32_list(r)
        nodes.append(S.XNode(xnode_union=cls(**kw), debug_handle=_u32(r), output_min_max=None))
    for v in values:
        q = v.xvalue_union
        if isinstance(q, S.XNNQuantizedTensorValue) and hasattr(q.quant_params, "scale_buffer_idx"):
            q.quant_params.scale_buffer_idx = r.choice([0, 1])
    consts = [S.ConstantDataOffset(offset=0, size=0), S.ConstantDataOffset(offset=2**64 - 1, size=64, named_key="a" * 64)]
    return S.XNNGraph(version="0", xnodes=nodes, xvalues=values, num_externs=2, input_ids=[0], output_ids=[1], constant_data=consts)


def test_deserialize_returns_reference_dataclasses():
    r = random.Random(5)
    for _ in range(20):
        g = _consistent_graph(r)
        blob = ref.serialize_xnnpack_binary(g, b"")
        back, consts = px.deserialize_xnnpack_binary(blob, with_constant_data=True)
        assert consts == b""
        assert [type(n.xnode_union) for n in back.xnodes] == [type(n.xnode_union) for n in g.xnodes]
        assert isinstance(back.xvalues[0].xvalue_union.datatype, S.XNNDatatype)
        assert back.constant_data[1].named_key == "a" * 64 and back.constant_data[1].offset == 2**64 - 1
        assert REFERENCE_CONVERT(back) == blob[32:32 + int.from_bytes(blob[14:18], "little")]


def test_reader_rejects_bad_ids_with_path():
    g = _consistent_graph(random.Random(1))
    g.xnodes[1].xnode_union.filter_id = 99  # XNNFullyConnected
    blob = ref.serialize_xnnpack_binary(g, b"")
    with pytest.raises(ptekit.PteError, match=r"xnodes\[1\]\.XNNFullyConnected\.filter_id: value id 99"):
        px.deserialize_xnnpack_binary(blob)


def test_unsupported_values_behave_like_the_reference_after_install():
    import numpy as np

    base = _consistent_graph(random.Random(2))
    cases = [
        ("num_externs", 2**32, subprocess.CalledProcessError),
        ("num_externs", -1, subprocess.CalledProcessError),
        ("num_externs", True, None),  # flatc's behaviour for a bool in a uint field
        ("num_externs", np.int64(3), TypeError),
        ("num_externs", "7", None),
        ("version", 5, None),
    ]
    ptekit.install()
    try:
        assert px.installed()
        for field, value, exc in cases:
            g = dataclasses.replace(base, **{field: value})
            with pytest.raises(px.XnnpackUnsupported):
                px.convert_to_flatbuffer(g)
            try:
                expected = REFERENCE_CONVERT(g)
                expected_exc = None
            except Exception as e:  # noqa: BLE001
                expected_exc = type(e)
            if exc is not None:
                assert expected_exc is exc, (field, value, expected_exc)
            before = ref._delegate_instance_id
            if expected_exc is None:
                assert ref.convert_to_flatbuffer(g) == expected
            else:
                with pytest.raises(expected_exc):
                    ref.convert_to_flatbuffer(g)
            assert ref._delegate_instance_id - before == (0 if expected_exc is TypeError else 1)
        # The sanity check still runs first.
        with pytest.raises(AssertionError):
            ref.convert_to_flatbuffer(5)
        # The instance counter advances once per call on the fast path.
        before = ref._delegate_instance_id
        ref.convert_to_flatbuffer(base)
        assert ref._delegate_instance_id == before + 1
    finally:
        ptekit.uninstall()
    assert ref.convert_to_flatbuffer is REFERENCE_CONVERT


def test_export_with_install_is_identical_and_spawns_no_flatc(monkeypatch):
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import EdgeCompileConfig, to_edge_transform_and_lower

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scripts"))
    import make_fixtures as mf

    def export():
        torch.manual_seed(7)
        model = mf.Transformer(layers=2, dim=16, heads=2, vocab=32).eval()
        ep = torch.export.export(model, (torch.randint(0, 32, (1, 8)),), strict=False)
        edge = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()], compile_config=EdgeCompileConfig(_check_ir_validity=False))
        return edge.to_executorch().buffer

    spawns = []
    real_run = subprocess.run

    def counting_run(args, *a, **k):
        if args and "flatc" in os.path.basename(str(args[0])):
            spawns.append(args)
        return real_run(args, *a, **k)

    monkeypatch.setattr(subprocess, "run", counting_run)
    ptekit.uninstall()
    graphs = []

    def recording_convert(g):
        graphs.append(g)
        return REFERENCE_CONVERT(g)

    monkeypatch.setattr(ref, "convert_to_flatbuffer", recording_convert)
    reference = export()
    monkeypatch.setattr(ref, "convert_to_flatbuffer", REFERENCE_CONVERT)
    ref_spawns = len(spawns)
    assert ref_spawns == len(graphs) > 0
    spawns.clear()
    ptekit.install()
    try:
        ours = export()
    finally:
        ptekit.uninstall()
    assert spawns == []
    assert ours == reference
    _check_cli_against_graphs(reference, graphs)


def _check_cli_against_graphs(pte_bytes, graphs):
    """`ptekit inspect --json`, `verify` and `xnnpack dump` of the exported program agree
    with the XNNGraph objects the reference serialized for it."""
    import json
    import tempfile

    from conftest import ptekit_bin

    exe = str(ptekit_bin())
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "t.pte")
        with open(path, "wb") as f:
            f.write(pte_bytes)
        summary = json.loads(subprocess.check_output([exe, "inspect", "--json", path]))
        ok = subprocess.run([exe, "verify", path], capture_output=True, text=True, check=True)
        assert f"{len(graphs)} XNNPACK payload(s)" in ok.stdout
        dumps = [json.loads(subprocess.check_output([exe, "xnnpack", "dump", path, "--delegate", str(i)])) for i in range(len(graphs))]
    named = {e["key"] for e in summary["named_data"]}
    got = [d["xnnpack"] for p in summary["execution_plans"] for d in p["delegates"] if d["id"] == "XnnpackBackend"]
    assert len(got) == len(graphs)

    def expected(g):
        nodes = {}
        for n in g.xnodes:
            nodes[type(n.xnode_union).__name__] = nodes.get(type(n.xnode_union).__name__, 0) + 1
        entries = [c for c in g.constant_data if c.size or c.named_key]
        return {
            "nodes": nodes,
            "num_values": len(g.xvalues),
            "num_externs": g.num_externs,
            "input_ids": list(g.input_ids),
            "output_ids": list(g.output_ids),
            "constant_entries": len(entries),
            "constant_bytes": sum(c.size for c in entries),
            "named_keys": [c.named_key for c in entries],
        }

    keys = ["nodes", "num_values", "num_externs", "input_ids", "output_ids", "constant_entries", "constant_bytes", "named_keys"]
    got_rows = sorted(json.dumps({k: s[k] for k in keys}, sort_keys=True) for s in got)
    exp_rows = sorted(json.dumps(expected(g), sort_keys=True) for g in graphs)
    assert got_rows == exp_rows
    for s in got:
        assert set(s["named_keys"]) <= named
        assert s["constant_storage"]["named_data"] == s["constant_bytes"]
    # The dump is the graph, field for field (floats exact: these are float32 values).
    dumped = sorted(json.dumps([[list(n["xnode_union"])[0] for n in d["graph"]["xnodes"]], d["graph"]["input_ids"], d["graph"]["output_ids"]]) for d in dumps)
    exp = sorted(json.dumps([[type(n.xnode_union).__name__ for n in g.xnodes], list(g.input_ids), list(g.output_ids)]) for g in graphs)
    assert dumped == exp
