"""`ptekit diff` against the reference's `devtools/pte_tool/diff_pte.py`: the same
findings (methods, operators, delegates, counts, planned sizes, tensors with element
statistics, values, named data) on pairs made by the reference exporter that differ in
one weight, an operator, a method and the layout, and on pairs of corpus files; plus the
layout section and the exit codes (0 equivalent, 1 different, 2 trouble)."""

import itertools
import json

import pytest
import torch
from executorch.devtools.pte_tool.diff_pte import diff_pte
from executorch.exir import to_edge
from executorch.exir._serialize._program import deserialize_pte_binary, serialize_pte_binary

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


def test_broken_file_is_reported_not_a_panic(ptekit, tmp_path):
    bad = tmp_path / "bad.pte"
    data = bytearray((CORPUS / "mlp.pte").read_bytes())
    bad.write_bytes(bytes(data[:100]))
    r = ptekit("diff", CORPUS / "mlp.pte", bad, check=False)
    assert r.returncode == 2
    assert str(bad) in r.stderr and "panicked" not in r.stderr
    r = ptekit("diff", CORPUS / "mlp.pte", tmp_path / "missing.pte", check=False)
    assert r.returncode == 2 and "missing.pte" in r.stderr
