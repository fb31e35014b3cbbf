"""The Python package `ptekit` against the reference serializer (executorch 1.5.1) on the
corpus and the project's fixtures: byte identity of serialize_pte_binary / write_pte,
equality of deserialize_pte_binary, borrowed buffer types, and errors."""

import copy
import io
import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest
from executorch.exir import schema
from executorch.exir._serialize._cord import FileBackedData
from executorch.exir._serialize._named_data_store import NamedDataStoreOutput
from executorch.exir._serialize._program import (
    PTEFile,
    deserialize_pte_binary as ref_deserialize,
    serialize_pte_binary as ref_serialize,
)
from executorch.exir._serialize.data_serializer import DataEntry
from executorch.extension.flat_tensor.serialize.serialize import FlatTensorConfig, FlatTensorSerializer
from hypothesis import HealthCheck, given, settings, strategies as st

import ptekit
from conftest import CORPUS, program_files, ptekit_bin

FILES = program_files()

OPTION_SETS = {
    "default": {},
    "segments": {"extract_delegate_segments": True},
    "seg4096_t16_d16": {
        "extract_delegate_segments": True,
        "segment_alignment": 4096,
        "constant_tensor_alignment": 16,
        "delegate_alignment": 16,
    },
    "seg128_t64_d256": {
        "extract_delegate_segments": True,
        "segment_alignment": 128,
        "constant_tensor_alignment": 64,
        "delegate_alignment": 256,
    },
    "inline_seg4096_t64_d256": {
        "extract_delegate_segments": False,
        "segment_alignment": 4096,
        "constant_tensor_alignment": 64,
        "delegate_alignment": 256,
    },
}

_cache = {}


def reference_pte(path):
    """The reference's PTEFile of a file (cached: it is never modified by the tests)."""
    if path not in _cache:
        _cache[path] = ref_deserialize(path.read_bytes())
    return _cache[path]


@pytest.mark.parametrize("opts", OPTION_SETS.values(), ids=OPTION_SETS.keys())
@pytest.mark.parametrize("path", FILES, ids=[f"{p.parent.name}/{p.name}" for p in FILES])
def test_serialize_identical(path, opts):
    pte = reference_pte(path)
    expected = bytes(ref_serialize(pte, **opts))
    out = ptekit.serialize_pte_binary(pte, **opts)
    assert len(out) == len(expected)
    assert bytes(out) == expected
    f = io.BytesIO()
    out.write_to_file(f)
    assert f.getvalue() == expected


@pytest.mark.parametrize("path", FILES, ids=[f"{p.parent.name}/{p.name}" for p in FILES])
def test_deserialize_equal(path):
    data = path.read_bytes()
    expected = ref_deserialize(data)
    got = ptekit.deserialize_pte_binary(data)
    assert type(got) is PTEFile
    assert got == expected
    # The same from a memoryview, a bytearray and a path.
    assert ptekit.deserialize_pte_binary(memoryview(data)) == expected
    assert ptekit.deserialize_pte_binary(bytearray(data)) == expected
    assert ptekit.deserialize_pte_binary(str(path)) == expected
    assert ptekit.deserialize_pte_binary(path) == expected


def test_deserialized_types_match_reference():
    """Enum fields are enum members, byte fields bytes, infinities "inf" strings."""
    for path in FILES:
        got = ptekit.deserialize_pte_binary(path)
        want = ref_deserialize(path.read_bytes())
        for plan_got, plan_want in zip(got.program.execution_plan, want.program.execution_plan):
            for a, b in zip(plan_got.values, plan_want.values):
                assert type(a.val) is type(b.val)
                if isinstance(a.val, schema.Tensor):
                    assert type(a.val.scalar_type) is type(b.val.scalar_type)
                    assert type(a.val.shape_dynamism) is type(b.val.shape_dynamism)
                if isinstance(a.val, schema.Double):
                    assert type(a.val.double_val) is type(b.val.double_val)
        for a in got.program.constant_buffer:
            assert type(a.storage) is bytes


@pytest.mark.parametrize("path", FILES[:6] + FILES[-3:], ids=lambda p: p.name)
def test_write_pte_atomic(path, tmp_path):
    pte = reference_pte(path)
    opts = {"extract_delegate_segments": True}
    expected = bytes(ref_serialize(pte, **opts))
    dest = tmp_path / "out.pte"
    dest.write_bytes(b"old content")
    n = ptekit.write_pte(dest, pte, **opts)
    assert n == len(expected)
    assert dest.read_bytes() == expected
    assert sorted(os.listdir(tmp_path)) == ["out.pte"]
    out = ptekit.serialize_pte_binary(pte, **opts)
    assert out.write(str(tmp_path / "again.pte")) == len(expected)
    assert (tmp_path / "again.pte").read_bytes() == expected


def test_write_pte_error_leaves_destination(tmp_path):
    pte = copy.deepcopy(reference_pte(FILES[0]))
    dest = tmp_path / "out.pte"
    dest.write_bytes(b"old")
    pte.program.execution_plan[0].inputs = ["x"]
    with pytest.raises(ptekit.PteError):
        ptekit.write_pte(dest, pte)
    assert dest.read_bytes() == b"old"
    with pytest.raises(OSError):
        ptekit.write_pte(tmp_path / "missing-dir" / "x.pte", reference_pte(FILES[0]))


def test_serialize_does_not_mutate():
    for path in FILES:
        pte = ref_deserialize(path.read_bytes())
        before = copy.deepcopy(pte)
        ptekit.serialize_pte_binary(pte, extract_delegate_segments=True)
        assert pte == before


def _with_storage(pte, convert):
    pte = copy.deepcopy(pte)
    for buf in pte.program.constant_buffer:
        buf.storage = convert(buf.storage)
    for d in pte.program.backend_delegate_data:
        d.data = convert(d.data)
    return pte


@pytest.mark.parametrize(
    "convert",
    [
        bytearray,
        memoryview,
        lambda b: np.frombuffer(b, dtype=np.uint8),
        # Not contiguous: converted with tobytes(), like the reference's _coerce_bytes.
        lambda b: np.repeat(np.frombuffer(b, dtype=np.uint8), 2)[::2],
    ],
    ids=["bytearray", "memoryview", "numpy", "numpy_strided"],
)
def test_serialize_buffer_types(convert):
    """Weights given as other buffer types give the same bytes as `bytes` weights."""
    path = next(p for p in FILES if p.name == "mlp_xnnpack.pte")
    pte = reference_pte(path)
    expected = bytes(ref_serialize(pte, extract_delegate_segments=True))
    got = ptekit.serialize_pte_binary(_with_storage(pte, convert), extract_delegate_segments=True)
    assert bytes(got) == expected
    pte = reference_pte(next(p for p in FILES if p.name == "transformer.pte"))
    expected = bytes(ref_serialize(pte, constant_tensor_alignment=64))
    got = ptekit.serialize_pte_binary(_with_storage(pte, convert), constant_tensor_alignment=64)
    assert bytes(got) == expected


def test_result_keeps_weights_alive():
    """The result borrows the weights: it must stay valid after the input is gone."""
    path = next(p for p in FILES if p.name == "transformer.pte")
    pte = ref_deserialize(path.read_bytes())
    expected = bytes(ref_serialize(pte))
    out = ptekit.serialize_pte_binary(_with_storage(pte, bytearray))
    del pte
    import gc

    gc.collect()
    assert bytes(out) == expected


def test_named_data_identical(tmp_path):
    """Named data (bytes and FileBackedData buffers, alignments) like the reference."""
    pte = reference_pte(next(p for p in FILES if p.name == "mlp.pte"))
    blob_path = tmp_path / "blob.bin"
    blob_path.write_bytes(bytes(range(256)) * 5)
    store = NamedDataStoreOutput(
        buffers=[b"\x01" * 100, FileBackedData(str(blob_path)), b"xyz"],
        pte_data={
            "a": DataEntry(buffer_index=0, alignment=64, tensor_layout=None),
            "b": DataEntry(buffer_index=1, alignment=1, tensor_layout=None),
            "c": DataEntry(buffer_index=0, alignment=8, tensor_layout=None),
            "d": DataEntry(buffer_index=2, alignment=None, tensor_layout=None),
        },
        external_data={"ignored": {"e": DataEntry(buffer_index=2, alignment=1, tensor_layout=None)}},
    )
    mutable = [schema.Buffer(storage=b"\x05" * 12), schema.Buffer(storage=b"\x06" * 7)]
    for opts in OPTION_SETS.values():
        full = PTEFile(program=copy.deepcopy(pte.program), mutable_data=mutable, named_data=store)
        expected = bytes(ref_serialize(full, **opts))
        assert bytes(ptekit.serialize_pte_binary(full, **opts)) == expected
        # And back: the reference's reading of the same bytes.
        assert ptekit.deserialize_pte_binary(expected) == ref_deserialize(expected)


# ---------------------------------------------------------------------------------------
# Errors.


def _bad(mutate, name="mlp_xnnpack.pte"):
    pte = copy.deepcopy(reference_pte(next(p for p in FILES if p.name == name)))
    mutate(pte)
    with pytest.raises(ptekit.PteError) as info:
        ptekit.serialize_pte_binary(pte, extract_delegate_segments=True)
    assert isinstance(info.value, ValueError)
    return str(info.value)


def _first_tensor(pte):
    return next(
        (i, v.val)
        for i, v in enumerate(pte.program.execution_plan[0].values)
        if isinstance(v.val, schema.Tensor)
    )


def test_error_wrong_type_names_field_path():
    def mutate(pte):
        i, t = _first_tensor(pte)
        t.sizes = [1, "two"]
        mutate.index = i

    msg = _bad(mutate)
    assert f"pte_file.program.execution_plan[0].values[{mutate.index}].val.sizes[1]" in msg
    assert "str" in msg


def test_error_out_of_range_integer():
    def mutate(pte):
        i, t = _first_tensor(pte)
        t.dim_order = [0, 300]
        mutate.index = i

    msg = _bad(mutate)
    assert f"values[{mutate.index}].val.dim_order[1]" in msg
    assert "300 is out of range for uint8" in msg
    msg = _bad(lambda pte: setattr(pte.program, "version", -1))
    assert "pte_file.program.version" in msg and "-1" in msg
    msg = _bad(lambda pte: setattr(pte.program.execution_plan[0], "inputs", [2**31]))
    assert "execution_plan[0].inputs[0]" in msg and "int32" in msg


def test_error_outside_schema():
    msg = _bad(lambda pte: setattr(pte.program.execution_plan[0].values[0], "val", 3.5))
    assert "values[0].val" in msg and "KernelTypes" in msg
    msg = _bad(
        lambda pte: setattr(pte.program.execution_plan[0].chains[0].instructions[0], "instr_args", "x")
    )
    assert "chains[0].instructions[0].instr_args" in msg
    msg = _bad(lambda pte: setattr(pte.program, "execution_plan", {"a": 1}))
    assert "pte_file.program.execution_plan" in msg and "list" in msg
    msg = _bad(lambda pte: delattr(pte.program.execution_plan[0], "operators"))
    assert "execution_plan[0].operators" in msg
    msg = _bad(lambda pte: setattr(pte.program.constant_buffer[1], "storage", "text"), "transformer.pte")
    assert "constant_buffer[1].storage" in msg
    # A semantic error of the reference (delegate index out of range), from Rust.
    msg = _bad(lambda pte: setattr(pte.program.execution_plan[0].delegates[0].processed, "index", 99))
    assert "delegates[0].processed" in msg


def test_error_bad_options():
    pte = reference_pte(FILES[0])
    for opts in (
        {"segment_alignment": 0},
        {"segment_alignment": -5},
        {"constant_tensor_alignment": 3},
        {"delegate_alignment": 12},
        {"segment_alignment": "x"},
    ):
        with pytest.raises(ptekit.PteError):
            ptekit.serialize_pte_binary(pte, **opts)


def test_segment_alignment_need_not_be_a_power_of_two(tmp_path):
    """The reference pads segments with `%` and `math.lcm`, so any positive segment
    alignment is accepted (unlike tensor and delegate alignments); ptekit writes the same
    bytes, through the bindings and through `ptekit rewrite --segment-alignment`."""
    mlp = CORPUS / "mlp_xnnpack.pte"
    pte = reference_pte(mlp)
    for n in (3, 48, 100):
        opts = {"segment_alignment": n, "extract_delegate_segments": True}
        expected = bytes(ref_serialize(pte, **opts))
        assert bytes(ptekit.serialize_pte_binary(pte, **opts)) == expected, n
    out = tmp_path / "out.pte"
    subprocess.run([str(ptekit_bin()), "rewrite", "--segment-alignment", "48", str(mlp), str(out)], check=True)
    assert out.read_bytes() == bytes(ref_serialize(pte, segment_alignment=48, extract_delegate_segments=True))
    # A .ptd: the reference's FlatTensorSerializer does the same.
    ptd = CORPUS / "external._default_external_constant.ptd"
    subprocess.run([str(ptekit_bin()), "rewrite", "--segment-alignment", "48", str(ptd), str(out)], check=True)
    payload = FlatTensorSerializer().deserialize(ptd.read_bytes())
    assert out.read_bytes() == bytes(FlatTensorSerializer(FlatTensorConfig(segment_alignment=48)).serialize(payload))


def test_error_attribute_raising():
    class Evil:
        def __getattr__(self, name):
            raise RuntimeError("boom")

    msg = _bad(lambda pte: setattr(pte.program.execution_plan[0], "container_meta_type", Evil()))
    assert "container_meta_type.encoded_inp_str" in msg and "boom" in msg


def test_deserialize_errors():
    data = next(p for p in FILES if p.name == "mlp_xnnpack.pte").read_bytes()
    for bad in (b"", b"1234", data[: len(data) // 2], b"\xff" * 64):
        with pytest.raises(ptekit.PteError):
            ptekit.deserialize_pte_binary(bad)
    with pytest.raises((OSError, ptekit.PteError)):
        ptekit.deserialize_pte_binary("/nonexistent/file.pte")
    with pytest.raises(TypeError):
        ptekit.deserialize_pte_binary(12345)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_deserialize_mutated_never_crashes(data):
    """Corrupted files give a PteError or a result equal to the reference's, never a crash."""
    path = data.draw(st.sampled_from(FILES[:16]))
    raw = bytearray(path.read_bytes())
    for _ in range(data.draw(st.integers(1, 8))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    raw = bytes(raw)
    try:
        got = ptekit.deserialize_pte_binary(raw)
    except ptekit.PteError:
        return
    try:
        want = ref_deserialize(raw)
    except Exception:
        return  # the reference rejects or crashes where ptekit restored something
    assert got == want


def test_import_error_without_executorch():
    code = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "executorch" or name.startswith("executorch."):
            raise ImportError("blocked " + name)
sys.meta_path.insert(0, Block())
import ptekit
data = open(sys.argv[1], "rb").read()
b = ptekit.serialize_pte_binary  # usable without executorch
try:
    ptekit.deserialize_pte_binary(data)
except ImportError as e:
    print("IMPORT-ERROR:", e)
"""
    path = next(p for p in FILES if p.name == "mlp.pte")
    res = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "IMPORT-ERROR:" in res.stdout
    assert "pip install executorch" in res.stdout
