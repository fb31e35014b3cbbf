"""`ptekit inspect --json` against the reference: inputs and outputs against the 1.5.1
runtime's `MethodMeta`, constant methods against what the runtime returns when it runs
them, operator calls, delegation and the largest tensors against the reference
deserializer's program (a .ptd's largest entries against its .ptd reader), and `--data`
against what the runtime accepts."""

import dataclasses
import json
import math
import subprocess

import pytest
from executorch.exir._serialize._cord import Cord
from executorch.exir._serialize._program import deserialize_pte_binary
from executorch.exir.scalar_type import ScalarType
from executorch.exir.schema import DelegateCall, KernelCall, Tensor, TensorDataLocation
from executorch.extension.flat_tensor.serialize.serialize import FlatTensorSerializer
from executorch.runtime import Runtime

from conftest import CORPUS, program_files, ptekit_bin

PROGRAMS = program_files()
# The 1.5.1 runtime refuses the old inline-constant layout (see the corpus README).
RUNTIME_REFUSES = {"legacy_inline_constants.pte"}


def inspect_json(*args):
    out = subprocess.run([str(ptekit_bin()), "inspect", "--json", *map(str, args)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def reference_program(path):
    return deserialize_pte_binary(path.read_bytes()).program


def test_programs_present():
    assert len(PROGRAMS) >= 20
    assert any(p.name == "multi_method.pte" for p in PROGRAMS)


@pytest.mark.parametrize("path", PROGRAMS, ids=lambda p: p.name)
def test_inputs_and_outputs_match_method_meta(path):
    ours = inspect_json(path)
    ref = reference_program(path)
    ref_plans = {p.name: p for p in ref.execution_plan}
    plans = {m["name"]: m for m in ours["execution_plans"]}
    assert plans.keys() == ref_plans.keys()
    if path.name in RUNTIME_REFUSES:
        with pytest.raises(Exception):
            Runtime.get().load_program(path)
        program = None
    else:
        program = Runtime.get().load_program(path)
        assert set(program.method_names) == plans.keys()
    for name, m in plans.items():
        plan = ref_plans[name]
        for side, indices in (("input", plan.inputs), ("output", plan.outputs)):
            entries = m[f"{side}_tensors"]
            assert len(entries) == len(indices), (name, side)
            meta = program.metadata(name) if program else None
            if meta:
                assert getattr(meta, f"num_{side}s")() == len(entries)
            for i, (entry, index) in enumerate(zip(entries, indices)):
                value = plan.values[index].val
                if not isinstance(value, Tensor):
                    assert entry is None, (name, side, i)
                    if meta:
                        with pytest.raises(IndexError):
                            getattr(meta, f"{side}_tensor_meta")(i)
                    continue
                assert entry["value_index"] == index
                # dim order and dynamism are not exposed by MethodMeta's Python binding:
                # compare them with the reference deserializer's tensor.
                assert entry["dim_order"] == list(value.dim_order)
                assert entry["shape_dynamism"] == value.shape_dynamism.name
                assert entry["dynamic"] == (value.shape_dynamism.value != 0)
                if meta is None:
                    assert entry["sizes"] == list(value.sizes)
                    continue
                info = getattr(meta, f"{side}_tensor_meta")(i)
                assert entry["sizes"] == list(info.sizes()), (name, side, i)
                assert entry["dtype"] == ScalarType(info.dtype()).name
                assert entry["memory_planned"] == info.is_memory_planned()
                assert entry["nbytes"] == info.nbytes()


def test_dynamic_program_is_marked():
    ours = inspect_json(CORPUS / "dynamic.pte")
    entries = [e for m in ours["execution_plans"] for e in m["input_tensors"] if e]
    assert any(e["dynamic"] and e["shape_dynamism"] == "DYNAMIC_BOUND" for e in entries)


def same_value(ours, theirs):
    if isinstance(theirs, float):
        return isinstance(ours, float) and (ours == theirs or math.isclose(ours, theirs))
    if isinstance(theirs, (list, tuple)):
        return len(ours) == len(theirs) and all(same_value(a, b) for a, b in zip(ours, theirs))
    return type(ours) is type(theirs) and ours == theirs


def test_constant_methods_return_what_the_runtime_returns():
    found = 0
    for path in PROGRAMS:
        if path.name in RUNTIME_REFUSES:
            continue
        ours = inspect_json(path)
        program = Runtime.get().load_program(path)
        for m in ours["execution_plans"]:
            if m["constant_values"] is None:
                continue
            found += 1
            got = program.load_method(m["name"]).execute([])
            assert len(got) == len(m["constant_values"])
            for a, b in zip(m["constant_values"], got):
                assert same_value(a, b), (path.name, m["name"], a, b)
    # multi_method.pte has four: max_seq_len, use_kv_cache, temperature, model_name.
    assert found >= 4


def test_only_methods_without_instructions_are_constant():
    for path in PROGRAMS:
        ref = {p.name: p for p in reference_program(path).execution_plan}
        for m in inspect_json(path)["execution_plans"]:
            plan = ref[m["name"]]
            n = sum(len(c.instructions) for c in plan.chains)
            expected = n == 0 and not plan.inputs and bool(plan.outputs)
            assert (m["constant_values"] is not None) == expected, (path.name, m["name"])


def op_name(op):
    return f"{op.name}.{op.overload}" if op.overload else op.name


@pytest.mark.parametrize("path", PROGRAMS, ids=lambda p: p.name)
def test_operator_calls_and_delegation(path):
    ref = {p.name: p for p in reference_program(path).execution_plan}
    ours = inspect_json(path)
    total_kernel = total_delegate = 0
    for m in ours["execution_plans"]:
        plan = ref[m["name"]]
        calls = {op_name(op): 0 for op in plan.operators}
        kernel = delegate = 0
        for chain in plan.chains:
            for ins in chain.instructions:
                if isinstance(ins.instr_args, KernelCall):
                    kernel += 1
                    calls[op_name(plan.operators[ins.instr_args.op_index])] += 1
                elif isinstance(ins.instr_args, DelegateCall):
                    delegate += 1
        assert m["operator_calls"] == calls
        assert m["delegation"]["kernel_calls"] == kernel
        assert m["delegation"]["delegate_calls"] == delegate
        total_kernel += kernel
        total_delegate += delegate
    assert ours["delegation"]["kernel_calls"] == total_kernel
    assert ours["delegation"]["delegate_calls"] == total_delegate


@pytest.mark.parametrize("path", PROGRAMS, ids=lambda p: p.name)
def test_top_tensors_against_restored_constants(path):
    """The largest stored tensors, with the bytes of each checked against the constant
    the reference deserializer restores (its buffer holds the tensor plus the padding up
    to the next one) and the calls that use it."""
    pte = deserialize_pte_binary(path.read_bytes())
    ref = pte.program
    ours = inspect_json(path, "--top", "1000")
    tensors = ours["top"]["tensors"]
    sizes = [t["bytes"] for t in tensors]
    assert sizes == sorted(sizes, reverse=True)
    plans = {p.name: p for p in ref.execution_plan}
    expected_count = set()
    for plan in ref.execution_plan:
        for v in plan.values:
            t = v.val
            if not isinstance(t, Tensor):
                continue
            info = t.extra_tensor_info
            if info and info.location == TensorDataLocation.EXTERNAL:
                expected_count.add(("external", info.fully_qualified_name))
            elif t.data_buffer_idx > 0:
                expected_count.add(("buffer", t.data_buffer_idx))
            elif info and info.mutable_data_segments_idx > 0:
                expected_count.add(("mutable", info.mutable_data_segments_idx))
    assert len(tensors) == len(expected_count)
    for t in tensors:
        plan = plans[t["method"]]
        value = plan.values[t["value_index"]].val
        assert isinstance(value, Tensor)
        assert t["sizes"] == list(value.sizes)
        assert t["dtype"] == value.scalar_type.name
        if t["stored"] in ("constant_segment", "constant_buffer"):
            storage = ref.constant_buffer[t["index"]].storage
            assert t["bytes"] <= len(storage) < t["bytes"] + 64, (t, len(storage))
        users = set()
        for chain in plan.chains:
            for ins in chain.instructions:
                a = ins.instr_args
                if isinstance(a, KernelCall) and t["value_index"] in a.args:
                    users.add(op_name(plan.operators[a.op_index]))
                if isinstance(a, DelegateCall) and t["value_index"] in a.args:
                    users.add("delegate:" + plan.delegates[a.delegate_index].id)
        # Values sharing the same data add their users; the first value's are all there.
        assert users <= set(t["used_by"]), (t, users)


@pytest.mark.parametrize("n", [1, 3, 1000])
def test_top_named_data_of_a_ptd_against_the_reference_reader(n):
    """A .ptd's `--top N`: its N largest entries (bytes of the buffer the reference's
    reader returns for each key, largest first, ties in file order)."""
    path = CORPUS / "external._default_external_constant.ptd"
    payload = FlatTensorSerializer().deserialize(Cord(path.read_bytes()))
    entries = [(key, len(bytes(payload.buffers[e.buffer_index]))) for key, e in payload.named_data.items()]
    entries.sort(key=lambda kb: -kb[1])
    top = inspect_json(path, "--top", n)["top"]
    assert top["limit"] == n and top["tensors"] == [] and top["delegate_payloads"] == []
    assert [(t["key"], t["bytes"]) for t in top["named_data"]] == entries[:n]
    assert "top" not in inspect_json(path)


def test_size_breakdown_adds_up_to_the_file_size():
    """Every corpus file: the parts (not the "of which" ones) add up to the file size, for
    a bundled program also those of its embedded program to the program's size."""
    files = PROGRAMS + sorted(CORPUS.glob("*.bpte")) + sorted(CORPUS.glob("*.ptd"))
    kinds = set()
    for path in files:
        s = inspect_json(path)
        kinds.add(s.get("kind", "program"))
        size = path.stat().st_size
        summaries = [(s, size)]
        if s.get("kind") == "bundled_program":
            summaries.append((s["program"], s["program_size"]))
        for part, total in summaries:
            b = part["size_breakdown"]
            assert sum(v for k, v in b.items() if not k.startswith("inline_")) == total, (
                path.name, b)
    assert kinds == {"program", "bundled_program", "tensor_data"}


def write_ptd(tmp_path, name, edit):
    """The corpus .ptd re-serialized by the reference after `edit(named_data)`."""
    src = CORPUS / "external._default_external_constant.ptd"
    payload = FlatTensorSerializer().deserialize(Cord(src.read_bytes()))
    named = dict(payload.named_data)
    edit(named)
    payload = dataclasses.replace(payload, named_data=named)
    out = tmp_path / name
    out.write_bytes(bytes(FlatTensorSerializer().serialize(payload)))
    return out


def test_data_check_agrees_with_the_runtime(tmp_path):
    pte = CORPUS / "external.pte"
    good = CORPUS / "external._default_external_constant.ptd"
    s = inspect_json(pte, "--data", good)
    x = s["external_data"]
    ref = reference_program(pte)
    expected = {v.val.extra_tensor_info.fully_qualified_name
                for p in ref.execution_plan for v in p.values
                if isinstance(v.val, Tensor) and v.val.extra_tensor_info
                and v.val.extra_tensor_info.location == TensorDataLocation.EXTERNAL}
    assert {k["key"] for k in x["keys"]} == expected
    assert x["check"]["satisfied"] and all(k["found"] for k in x["keys"])
    program = Runtime.get().load_program(pte, data_path=good)
    inputs = [__import__("torch").zeros(e["sizes"]) for e in s["execution_plans"][0]["input_tensors"]]
    program.load_method("forward").execute(inputs)

    dropped = sorted(expected)[0]
    missing = write_ptd(tmp_path, "missing.ptd", lambda named: named.pop(dropped))
    s = inspect_json(pte, "--data", missing)
    assert not s["external_data"]["check"]["satisfied"]
    assert s["external_data"]["check"]["missing"] == [dropped]
    program = Runtime.get().load_program(pte, data_path=missing)
    with pytest.raises(Exception):
        program.load_method("forward")
