"""`ptekit diff` against the reference's `devtools/pte_tool/diff_pte.py`: the same
findings (methods, operators, delegates, counts, planned sizes, tensors with element
statistics, values, named data) on pairs made by the reference exporter that differ in
one weight, an operator, a method and the layout, and on pairs of corpus files; plus the
layout section and the exit codes (0 equivalent, 1 different, 2 trouble)."""

import itertools
import json
import struct

import numpy as np
import pytest
import torch
from executorch.devtools.pte_tool.diff_pte import diff_pte
from executorch.exir import ExecutorchBackendConfig, to_edge
from executorch.exir._serialize.data_serializer import DataEntry
from executorch.exir._serialize._program import deserialize_pte_binary, serialize_pte_binary
from executorch.extension.flat_tensor.serialize.serialize import FlatTensorConfig, FlatTensorSerializer

from conftest import CORPUS, FIXTURES


def _ours(ptekit, a, b):
    r = ptekit("diff", "--json", a, b, check=False)
    assert r.returncode in (0, 1), r.stderr
    d = json.loads(r.stdout)
    assert r.returncode == (0 if d["equivalent"] else 1)
    return d


def _agree(ptekit, a, b):
    """Asserts ptekit's findings contain exactly the reference's; returns ours."""
    ref = diff_pte(a.read_bytes(), b.read_bytes())
    assert ref.error is None
    ours = _ours(ptekit, a, b)
    assert ours["bitwise_equal"] == ref.bitwise_equal
    assert ours["version"] == (None if ref.version_a is None else [ref.version_a, ref.version_b])
    assert ours["extra_plans_in_a"] == ref.extra_plans_in_a
    assert ours["extra_plans_in_b"] == ref.extra_plans_in_b
    # The reference compares `program.named_data` after `deserialize_pte_binary`, which
    # empties it (named data moves into a store): it never reports named data of a .pte.
    # ptekit compares the keys and bytes stored in the files: a superset.
    ours_named = [(n["key"], n["only_in"]) for n in ours["named_data"] if n["only_in"]]
    assert all((n.key, n.only_in) in ours_named for n in ref.named_data_diffs)
    plans = {p["index"]: p for p in ours["plans"]}
    for rp in ref.plan_diffs:
        p = plans.pop(rp.plan_index)
        if rp.name_a is not None:
            assert (p["name_a"], p["name_b"]) == (rp.name_a, rp.name_b)
        assert p["operators_only_in_a"] == rp.operators_only_in_a
        assert p["operators_only_in_b"] == rp.operators_only_in_b
        assert p["delegates_only_in_a"] == rp.delegates_only_in_a
        assert p["delegates_only_in_b"] == rp.delegates_only_in_b
        want = None if rp.non_const_buffer_sizes_a is None else [rp.non_const_buffer_sizes_a, rp.non_const_buffer_sizes_b]
        assert p["non_const_buffer_sizes"] == want
        assert p["value_count"] == (None if rp.value_count_a is None else [rp.value_count_a, rp.value_count_b])
        want = None if rp.instruction_count_a is None else [rp.instruction_count_a, rp.instruction_count_b]
        assert p["instruction_count"] == want
        assert [t["a"]["value_index"] for t in p["tensors"]] == [t.tensor_a.evalue_index for t in rp.tensor_diffs]
        for t, rt in zip(p["tensors"], rp.tensor_diffs):
            assert (t["bytes_a"], t["bytes_b"]) == (rt.byte_size_a, rt.byte_size_b)
            assert t["bytes_differ"] == rt.bytes_differ
            assert [m["field"] for m in t["metadata"]] == [m.field_name for m in rt.metadata_diffs]
            assert (t["elements"], t["differing"]) == (rt.num_elements, rt.num_differing)
            assert t["max_abs_diff"] == pytest.approx(rt.max_abs_diff)
            assert t["mean_abs_diff"] == pytest.approx(rt.mean_abs_diff)
            assert [(e["flat_index"], tuple(e["index"]), e["a"], e["b"]) for e in t["samples"]] == [
                (e.flat_index, e.multi_index, e.value_a, e.value_b) for e in rt.element_diffs
            ]
            usages = [(u["name"], u["arg_index"]) for u in t["a"]["usages"]]
            assert usages == [(u.name, u.arg_index) for u in rt.tensor_a.operator_usages]
        assert [(v["value_index"], v["kind_a"], v["kind_b"]) for v in p["values"]] == [
            (v.evalue_index, v.type_a, v.type_b) for v in rp.evalue_diffs
        ]
        assert [t["value_index"] for t in p["tensors_only_in_a"]] == [t.evalue_index for t in rp.tensors_only_in_a]
        assert [t["value_index"] for t in p["tensors_only_in_b"]] == [t.evalue_index for t in rp.tensors_only_in_b]
    for p in plans.values():
        # Methods the reference finds equal differ only in what ptekit adds.
        assert p["delegate_payloads"] or p["inputs"] or p["outputs"], p
    return ours


def _reserialize(src, dst, edit=None, **options):
    pte = deserialize_pte_binary(src.read_bytes())
    if edit:
        edit(pte)
    dst.write_bytes(bytes(serialize_pte_binary(pte, **options)))
    return dst


def test_pair_differing_in_one_weight(ptekit, tmp_path):
    a = _reserialize(FIXTURES / "mlp.pte", tmp_path / "a.pte")

    def edit(pte):
        buf = pte.program.constant_buffer[2]
        data = bytearray(buf.storage)
        data[4:8] = torch.tensor([0.5]).numpy().tobytes()
        buf.storage = bytes(data)

    b = _reserialize(FIXTURES / "mlp.pte", tmp_path / "b.pte", edit)
    ours = _agree(ptekit, a, b)
    assert len(ours["plans"]) == 1 and len(ours["plans"][0]["tensors"]) == 1
    t = ours["plans"][0]["tensors"][0]
    assert t["differing"] == 1 and t["samples"][0]["flat_index"] == 1
    assert ours["layout"]["fields"] == []
    text = ptekit("diff", a, b, check=False).stdout
    assert "1 / " in text and "elements differ" in text


def test_counts_in_diff_text_have_thousands_separators(ptekit, tmp_path):
    """Every element of the [32, 32] weight changed: the counts the reference finds are
    written like every other count of ptekit's text (`1,024`)."""
    a = _reserialize(FIXTURES / "mlp.pte", tmp_path / "a.pte")

    def edit(pte):
        (buf,) = [b for b in pte.program.constant_buffer if len(b.storage) == 4096]
        buf.storage = (np.frombuffer(buf.storage, np.float32) + 1).tobytes()

    b = _reserialize(FIXTURES / "mlp.pte", tmp_path / "b.pte", edit)
    (t,) = _agree(ptekit, a, b)["plans"][0]["tensors"]
    assert t["differing"] >= 1000
    text = ptekit("diff", a, b, check=False).stdout
    assert f"{t['differing']:,} / {t['elements']:,} elements differ" in text, text
    assert f"... and {t['differing'] - len(t['samples']):,} more" in text, text


def _export(fn, path):
    class M(torch.nn.Module):
        def forward(self, x, y):
            return fn(x, y)

    ep = torch.export.export(M(), (torch.randn(2, 3), torch.randn(2, 3)), strict=False)
    path.write_bytes(to_edge(ep).to_executorch().buffer)
    return path


def test_pair_differing_in_an_operator(ptekit, tmp_path):
    a = _export(lambda x, y: x + y, tmp_path / "add.pte")
    b = _export(lambda x, y: x * y, tmp_path / "mul.pte")
    ours = _agree(ptekit, a, b)
    assert ours["plans"][0]["operators_only_in_a"] == ["aten::add.out"]
    assert ours["plans"][0]["operators_only_in_b"] == ["aten::mul.out"]


def test_pair_differing_in_a_method(ptekit, tmp_path):
    a = FIXTURES / "two_methods.pte"

    dropped = []

    def drop(pte):
        dropped.append(pte.program.execution_plan.pop().name)

    b = _reserialize(a, tmp_path / "fewer.pte", drop)
    ours = _agree(ptekit, a, b)
    assert ours["extra_plans_in_a"] == dropped


@pytest.mark.parametrize("name", ["mlp.pte", "mlp_xnnpack.pte", "kv_state.pte"])
def test_pair_differing_in_alignment(ptekit, tmp_path, name):
    a = FIXTURES / name
    b = tmp_path / name
    ptekit("rewrite", "--segment-alignment", "16384", a, b)
    ours = _agree(ptekit, a, b)
    fields = {f["field"]: (f["a"], f["b"]) for f in ours["layout"]["fields"]}
    assert fields["segment_alignment"][1] == "16384"
    assert "header.segment_base_offset" in fields
    assert not ours["equivalent"]
    # The same options through the reference serializer: equivalent files.
    c = _reserialize(a, tmp_path / "ref.pte", segment_alignment=16384,
                     extract_delegate_segments="xnnpack" in name)
    d = _ours(ptekit, b, c)
    assert d["plans"] == [] and d["named_data"] == []


def test_corpus_pairs(ptekit):
    names = ["add", "mlp", "mlp_xnnpack", "multi_method", "cond", "kv_cache", "kv_init", "dynamic",
             "transformer", "transformer_xnnpack", "legacy_inline_constants", "scalars_lists"]
    for x, y in itertools.combinations(names, 2):
        _agree(ptekit, CORPUS / f"{x}.pte", CORPUS / f"{y}.pte")
    assert _ours(ptekit, CORPUS / "mlp.pte", CORPUS / "mlp.pte")["equivalent"]


def test_bundled_programs_compare_through_their_programs(ptekit):
    d = _ours(ptekit, CORPUS / "mlp.bpte", CORPUS / "mlp.pte")
    assert d["plans"] == [] and d["layout"]["fields"] == []
    # The text says what was compared.
    text = ptekit("diff", CORPUS / "mlp.bpte", CORPUS / "mlp.pte").stdout
    assert f"{CORPUS / 'mlp.bpte'} is a bundled program" in text and "test suites were not" in text
    assert "bundled" not in ptekit("diff", CORPUS / "mlp.pte", CORPUS / "mlp.pte").stdout


def test_broken_file_is_reported_not_a_panic(ptekit, tmp_path):
    bad = tmp_path / "bad.pte"
    data = bytearray((CORPUS / "mlp.pte").read_bytes())
    bad.write_bytes(bytes(data[:100]))
    r = ptekit("diff", CORPUS / "mlp.pte", bad, check=False)
    assert r.returncode == 2
    assert str(bad) in r.stderr and "panicked" not in r.stderr
    r = ptekit("diff", CORPUS / "mlp.pte", tmp_path / "missing.pte", check=False)
    assert r.returncode == 2 and "missing.pte" in r.stderr


# --- .ptd pairs -------------------------------------------------------------------------

PTD = CORPUS / "external._default_external_constant.ptd"


def _ref_arrays(path):
    """key -> float64 array of each tensor, through the reference's .ptd reader."""
    payload = FlatTensorSerializer().deserialize(path.read_bytes())
    np_types = {"FLOAT": np.float32, "HALF": np.float16, "DOUBLE": np.float64, "INT": np.int32,
                "LONG": np.int64, "CHAR": np.int8, "BYTE": np.uint8}
    out = {}
    for key, entry in payload.named_data.items():
        layout = entry.tensor_layout
        dtype = np.dtype(np_types[layout.scalar_type.name])
        n = int(np.prod(layout.sizes)) * dtype.itemsize
        raw = bytes(payload.buffers[entry.buffer_index])[:n]
        out[key] = np.frombuffer(raw, dtype=dtype).reshape(layout.sizes).astype(np.float64)
    return out


def _ref_write(path, payload, segment_alignment=None):
    config = None if segment_alignment is None else FlatTensorConfig(segment_alignment=segment_alignment)
    path.write_bytes(bytes(FlatTensorSerializer(config).serialize(payload)))
    return path


def _ref_payload(path):
    return FlatTensorSerializer().deserialize(path.read_bytes())


def _check_stats(d, a, b):
    """Every differing tensor's statistics equal numpy's on the reference's arrays."""
    xa, xb = _ref_arrays(a), _ref_arrays(b)
    differing = sorted(k for k in xa.keys() & xb.keys() if not np.array_equal(xa[k], xb[k]))
    assert sorted(t["key"] for t in d["tensors"] if t["bytes_differ"]) == differing
    for t in d["tensors"]:
        if not t["bytes_differ"]:
            continue
        x, y = xa[t["key"]].ravel(), xb[t["key"]].ravel()
        diff = np.abs(x - y)
        mask = x != y
        assert t["elements"] == x.size
        assert t["differing"] == int(mask.sum())
        assert t["max_abs_diff"] == pytest.approx(float(diff.max()))
        assert t["mean_abs_diff"] == pytest.approx(float(diff[mask].mean()))
        first = np.flatnonzero(mask)[: len(t["samples"])]
        assert [s["flat_index"] for s in t["samples"]] == first.tolist()
        assert [(s["a"], s["b"]) for s in t["samples"]] == list(zip(x[first].tolist(), y[first].tolist()))


def test_ptd_pair_from_the_exporter_differing_in_one_weight(ptekit, tmp_path):
    """The reference exporter (external constants) on the same model before and after one
    weight changes: one tensor differs, by what numpy finds on the reference's reader."""
    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.l1 = torch.nn.Linear(16, 8)
            self.l2 = torch.nn.Linear(8, 4)

        def forward(self, x):
            return self.l2(torch.relu(self.l1(x)))

    torch.manual_seed(0)
    model = M()

    def export(folder):
        ep = torch.export.export(model, (torch.randn(2, 16),), strict=False)
        manager = to_edge(ep).to_executorch(ExecutorchBackendConfig(external_constants=True))
        manager.write_tensor_data_to_file(str(folder))
        (ptd,) = folder.glob("*.ptd")
        return ptd

    a = export(tmp_path)
    with torch.no_grad():
        model.l1.weight[2, 3] += 0.125
        model.l1.weight[7, 15] -= 3.0
    (tmp_path / "b").mkdir()
    b = export(tmp_path / "b")
    d = _ours(ptekit, a, b)
    assert d["kind"] == "tensor_data" and not d["equivalent"]
    assert [t["key"] for t in d["tensors"]] == ["l1.weight"]
    t = d["tensors"][0]
    assert t["differing"] == 2 and [s["index"] for s in t["samples"]] == [[2, 3], [7, 15]]
    assert t["metadata"] == [] and d["layout"]["fields"] == []
    assert [(n["key"], n["only_in"], n["bytes_differ"]) for n in d["named_data"]] == [("l1.weight", None, True)]
    _check_stats(d, a, b)
    text = ptekit("diff", a, b, check=False)
    assert text.returncode == 1
    assert '"l1.weight"' in text.stdout and "2 / 128 elements differ" in text.stdout
    assert "[7,15]:" in text.stdout


def test_ptd_pair_from_the_serializer_differing_in_weights(ptekit, tmp_path):
    a = _ref_write(tmp_path / "a.ptd", _ref_payload(PTD))
    assert a.read_bytes() == PTD.read_bytes()
    payload = _ref_payload(PTD)
    entry = payload.named_data["l2.weight"]
    w = np.frombuffer(bytes(payload.buffers[entry.buffer_index]), dtype=np.float32).copy()
    rng = np.random.default_rng(11)
    picked = rng.choice(w.size, 37, replace=False)
    w[picked] += rng.normal(0, 0.5, picked.size).astype(np.float32)
    payload.buffers[entry.buffer_index] = w.tobytes()
    b = _ref_write(tmp_path / "b.ptd", payload)
    d = _ours(ptekit, a, b)
    assert [t["key"] for t in d["tensors"]] == ["l2.weight"]
    assert d["tensors"][0]["differing"] == 37
    _check_stats(d, a, b)
    # --max-samples bounds the samples, not the statistics.
    r = ptekit("diff", "--json", "--max-samples", "3", a, b, check=False)
    t = json.loads(r.stdout)["tensors"][0]
    assert len(t["samples"]) == 3 and t["differing"] == 37


def test_ptd_pair_differing_in_keys(ptekit, tmp_path):
    payload = _ref_payload(PTD)
    removed = payload.named_data.pop("l2.bias")
    payload.buffers = list(payload.buffers)
    payload.buffers.append(b"\x01\x02\x03\x04" * 5)
    payload.named_data["extra.blob"] = DataEntry(len(payload.buffers) - 1, 16, None)
    b = _ref_write(tmp_path / "b.ptd", payload)
    assert removed.tensor_layout is not None
    d = _ours(ptekit, PTD, b)
    assert not d["equivalent"]
    assert [(n["key"], n["only_in"], n["bytes_a"], n["bytes_b"]) for n in d["named_data"]] == [
        ("extra.blob", "B", 0, 20),
        ("l2.bias", "A", 32, 0),
    ]
    assert d["tensors"] == []
    text = ptekit("diff", PTD, b, check=False).stdout
    assert '"extra.blob": only in B' in text and '"l2.bias": only in A' in text


@pytest.mark.parametrize("alignment", [1024, 4096])
def test_ptd_pair_differing_in_alignment(ptekit, tmp_path, alignment):
    ours = tmp_path / "ours.ptd"
    ptekit("rewrite", "--segment-alignment", alignment, PTD, ours)
    d = _ours(ptekit, PTD, ours)
    assert not d["equivalent"]
    fields = {f["field"]: (f["a"], f["b"]) for f in d["layout"]["fields"]}
    ha, hb = _header(PTD), _header(ours)
    assert fields["header.segment_base_offset"] == (str(ha[2]), str(hb[2]))
    # The data moved; nothing else about the tensors changed.
    assert d["named_data"] == [] and {t["key"] for t in d["tensors"]} <= set(_ref_arrays(PTD))
    for t in d["tensors"]:
        assert not t["bytes_differ"] and {m["field"] for m in t["metadata"]} == {"offset"}
    # The reference serializer with the same alignment writes an equivalent file.
    ref = _ref_write(tmp_path / "ref.ptd", _ref_payload(PTD), segment_alignment=alignment)
    same = _ours(ptekit, ours, ref)
    assert same["equivalent"] and same["tensors"] == [] and same["layout"]["fields"] == []


def _header(path):
    """(flatbuffer_offset, flatbuffer_size, segment_base_offset, segment_data_size)."""
    return struct.unpack_from("<4Q", path.read_bytes(), 16)


def test_ptd_equal_and_refused_pairs(ptekit, tmp_path):
    copy = tmp_path / "copy.ptd"
    copy.write_bytes(PTD.read_bytes())
    d = _ours(ptekit, PTD, copy)
    assert d["bitwise_equal"] and d["equivalent"] and d["kind"] == "tensor_data"
    r = ptekit("diff", PTD, CORPUS / "external.pte", check=False)
    assert r.returncode == 2 and str(PTD) in r.stderr and str(CORPUS / "external.pte") in r.stderr
    assert "tensor-data" in r.stderr and r.stdout == ""
    r = ptekit("diff", CORPUS / "mlp.bpte", PTD, check=False)
    assert r.returncode == 2 and "bundled" in r.stderr and str(PTD) in r.stderr
    # A broken .ptd: one line naming the file, the offset and the field; never a panic.
    data = bytearray(PTD.read_bytes())
    cases = {"short": bytes(data[:300])}
    bad_index = bytearray(data)
    bad_index[32:40] = (len(data)).to_bytes(8, "little")  # segment_base_offset past the end
    cases["base"] = bytes(bad_index)
    for name, raw in cases.items():
        bad = tmp_path / f"{name}.ptd"
        bad.write_bytes(raw)
        for args in ((PTD, bad), (bad, PTD)):
            r = ptekit("diff", *args, check=False)
            assert r.returncode == 2, (name, r)
            lines = r.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith(f"ptekit: {bad}:"), lines
            assert "offset" in lines[0] and "panicked" not in r.stderr
            assert "segment_base_offset" in lines[0] or "flatbuffer_size" in lines[0]
