"""The Python package `ptekit` against the reference (executorch 1.5.1) for bundled programs
(`.bpte`, `executorch.devtools.bundled_program.serialize`) and tensor-data files (`.ptd`,
`FlatTensorSerializer`): byte identity and equality on the corpus and on synthetic
inputs (generated with hypothesis), the reference's quirks, buffer types, and errors.
Fresh exports and `install()` are in test_bindings_bundled_export.py."""

import io
import math

import numpy as np
import pytest
from executorch.devtools.bundled_program import schema as bp
from executorch.devtools.bundled_program.serialize import (
    _bundled_program_schema_to_flatbuffer as ref_pack_schema,
    deserialize_from_flatbuffer_to_bundled_program as ref_bundled_deserialize,
)
from executorch.exir._serialize._cord import Cord, FileBackedData
from executorch.exir._serialize.data_serializer import DataEntry, DataPayload
from executorch.exir.scalar_type import ScalarType
from executorch.exir.tensor_layout import TensorLayout
from executorch.extension.flat_tensor.serialize.serialize import (
    FlatTensorConfig,
    FlatTensorSerializer as RefFlatTensorSerializer,
)
from hypothesis import HealthCheck, given, settings, strategies as st

import ptekit
from conftest import CORPUS

BPTE_FILES = sorted(CORPUS.glob("*.bpte"))
PTD_FILES = sorted(CORPUS.glob("*.ptd"))
PROGRAM = (CORPUS / "mlp.pte").read_bytes()


def test_corpus_present():
    assert len(BPTE_FILES) >= 3, BPTE_FILES
    assert PTD_FILES, PTD_FILES


# ---------------------------------------------------------------------------------------
# Bundled programs: corpus.


@pytest.mark.parametrize("path", BPTE_FILES, ids=lambda p: p.name)
def test_bundled_corpus_deserialize_equal(path):
    data = path.read_bytes()
    want = ref_bundled_deserialize(data)
    got = ptekit.deserialize_from_flatbuffer_to_bundled_program(data)
    assert type(got) is bp.BundledProgram
    assert got == want
    assert ptekit.deserialize_from_flatbuffer_to_bundled_program(memoryview(data)) == want
    assert ptekit.deserialize_from_flatbuffer_to_bundled_program(bytearray(data)) == want
    # The same Python types as the reference's reading, field by field.
    for sg, sw in zip(got.method_test_suites, want.method_test_suites):
        assert type(sg.method_name) is type(sw.method_name)
        for cg, cw in zip(sg.test_cases, sw.test_cases):
            for vg, vw in zip(cg.inputs + cg.expected_outputs, cw.inputs + cw.expected_outputs):
                assert type(vg.val) is type(vw.val)
                if isinstance(vg.val, bp.Tensor):
                    assert type(vg.val.scalar_type) is type(vw.val.scalar_type)
                    assert type(vg.val.data) is bytes
                    assert [type(x) for x in vg.val.dim_order] == [type(x) for x in vw.val.dim_order]
    assert type(got.program) is bytes


@pytest.mark.parametrize("path", BPTE_FILES, ids=lambda p: p.name)
def test_bundled_corpus_serialize_identical(path):
    data = path.read_bytes()
    schema = ref_bundled_deserialize(data)
    assert ref_pack_schema(schema) == data  # the reference reproduces its own file
    out = ptekit.serialize_from_bundled_program_to_flatbuffer(schema)
    assert type(out) is bytes
    assert out == data
    # From ptekit's own reading, too.
    mine = ptekit.deserialize_from_flatbuffer_to_bundled_program(data)
    assert ptekit.serialize_from_bundled_program_to_flatbuffer(mine) == data


# ---------------------------------------------------------------------------------------
# Bundled programs: synthetic schema programs (Int, Bool, Double, tensors of every kind).


def _tensor(scalar_type, sizes, data, dim_order=None):
    return bp.Value(
        val=bp.Tensor(
            scalar_type=scalar_type,
            sizes=list(sizes),
            data=data,
            dim_order=list(range(len(sizes))) if dim_order is None else dim_order,
        )
    )


def _program(suites, program=PROGRAM, version=2):
    return bp.BundledProgram(
        version=version,
        method_test_suites=[
            bp.BundledMethodTestSuite(
                method_name=name,
                test_cases=[
                    bp.BundledMethodTestCase(inputs=list(ins), expected_outputs=list(outs))
                    for ins, outs in cases
                ],
            )
            for name, cases in suites
        ],
        program=program,
    )


def _mixed_program():
    f32 = np.arange(6, dtype=np.float32).reshape(2, 3)
    i64 = np.array([-(2**63), 2**63 - 1, 0, 7], dtype=np.int64)
    b = np.array([True, False, True])
    return _program(
        [
            (
                "decode",
                [
                    (
                        [bp.Value(val=bp.Int(int_val=-(2**63))), bp.Value(val=bp.Bool(bool_val=True)),
                         bp.Value(val=bp.Double(double_val=1 / 3))],
                        [_tensor(ScalarType.FLOAT, (2, 3), f32.tobytes())],
                    ),
                    (
                        [bp.Value(val=bp.Int(int_val=2**63 - 1)), bp.Value(val=bp.Bool(bool_val=False)),
                         bp.Value(val=bp.Double(double_val=-0.0))],
                        [_tensor(ScalarType.LONG, (4,), i64.tobytes())],
                    ),
                ],
            ),
            (
                "forward",
                [
                    (
                        [_tensor(ScalarType.BOOL, (3,), b.tobytes()), _tensor(ScalarType.LONG, (4,), i64.tobytes()),
                         _tensor(ScalarType.FLOAT, (0, 2), b"")],
                        [_tensor(ScalarType.DOUBLE, (1, 1, 2), np.array([1.5, -2.0]).tobytes(), [0, 2, 1])],
                    ),
                ],
            ),
            ("empty", []),
        ]
    )


def test_bundled_mixed_values_identical_and_equal():
    schema = _mixed_program()
    expected = ref_pack_schema(schema)
    assert ptekit.serialize_from_bundled_program_to_flatbuffer(schema) == expected
    got = ptekit.deserialize_from_flatbuffer_to_bundled_program(expected)
    want = ref_bundled_deserialize(expected)
    assert got == want
    assert got.method_test_suites[0].test_cases[0].inputs[2].val.double_val == 0.333333333333


@pytest.mark.parametrize(
    "value",
    [1 / 3, 1e-13, 1 / 8192, 3 / 8192, 1e300, -2.5, 123456.789012345678, 5e-324, -1e-300,
     0.1 + 0.2, 2.0**-40, 9007199254740993.0, -7.0000000000005],
)
def test_bundled_double_rounding_like_reference(value):
    """The reference reads doubles through flatc's 12-decimal fixed notation."""
    schema = _program([("forward", [([bp.Value(val=bp.Double(double_val=value))], [])])])
    data = ref_pack_schema(schema)
    assert ptekit.serialize_from_bundled_program_to_flatbuffer(schema) == data
    got = ptekit.deserialize_from_flatbuffer_to_bundled_program(data)
    want = ref_bundled_deserialize(data)
    assert got == want
    x = got.method_test_suites[0].test_cases[0].inputs[0].val.double_val
    assert type(x) is float
    assert x == float(f"{value:.12f}")


def test_bundled_documented_differences():
    """Where the reference's JSON path fails, ptekit returns the value."""
    schema = _program(
        [("forward", [([bp.Value(val=bp.Double(double_val=math.inf)),
                        bp.Value(val=bp.Double(double_val=-math.inf)),
                        bp.Value(val=bp.Double(double_val=math.nan))],
                       [_tensor(ScalarType.QUINT4x2, (1,), b"\x01")])])]
    )
    data = ref_pack_schema(schema)
    assert ptekit.serialize_from_bundled_program_to_flatbuffer(schema) == data
    with pytest.raises(Exception):
        ref_bundled_deserialize(data)
    got = ptekit.deserialize_from_flatbuffer_to_bundled_program(data)
    vals = [v.val.double_val for v in got.method_test_suites[0].test_cases[0].inputs]
    assert vals[0] == math.inf and vals[1] == -math.inf and math.isnan(vals[2])
    assert got.method_test_suites[0].test_cases[0].expected_outputs[0].val.scalar_type is ScalarType.QUINT4x2


def test_bundled_conversions_like_reference():
    """Inputs the reference's converters accept: numpy/bytearray/memoryview data, tuples,
    IntEnum or int scalar types, ints for doubles, bools for ints, bytes method names,
    and non-members of the union packed as NONE."""
    f32 = np.linspace(-1, 1, 12, dtype=np.float32)
    variants = [
        bp.Tensor(scalar_type=6, sizes=(3, 4), data=f32, dim_order=(0, 1)),
        bp.Tensor(scalar_type=ScalarType.FLOAT, sizes=[3, 4], data=bytearray(f32.tobytes()),
                  dim_order=bytes([0, 1])),
        bp.Tensor(scalar_type=6.0, sizes=np.array([3, 4], dtype=np.int32).tolist(),
                  data=memoryview(f32.tobytes()), dim_order=np.array([0, 1], dtype=np.uint8)),
        # Not contiguous: converted with tobytes(), like the reference's _coerce_bytes.
        bp.Tensor(scalar_type=6, sizes=[3, 4], data=np.repeat(f32, 2)[::2], dim_order=[0, 1]),
    ]
    for t in variants:
        schema = _program(
            [(b"forward", [([bp.Value(val=t), bp.Value(val=bp.Double(double_val=5)),
                             bp.Value(val=bp.Int(int_val=True)), bp.Value(val=bp.Bool(bool_val=1))],
                            [bp.Value(val=None), bp.Value(val=3.5)])])],
            program=bytearray(PROGRAM),
        )
        before = repr(schema)
        expected = ref_pack_schema(schema)
        assert ptekit.serialize_from_bundled_program_to_flatbuffer(schema) == expected
        assert repr(schema) == before  # not modified


def test_bundled_value_subclass_is_member():
    """Members are recognized with isinstance, like the reference."""

    class MyInt(bp.Int):
        pass

    schema = _program([("forward", [([bp.Value(val=MyInt(int_val=42))], [])])])
    assert ptekit.serialize_from_bundled_program_to_flatbuffer(schema) == ref_pack_schema(schema)


def test_bundled_without_executorch_classes_by_name():
    """Without the schema classes (no executorch), union members are chosen by class name."""
    schema = _mixed_program()
    expected = ref_pack_schema(schema)
    assert ptekit._native.serialize_bundled_program(schema, None) == expected


_scalar_types = st.sampled_from(
    [ScalarType.BYTE, ScalarType.CHAR, ScalarType.SHORT, ScalarType.INT, ScalarType.LONG,
     ScalarType.HALF, ScalarType.FLOAT, ScalarType.DOUBLE, ScalarType.BOOL, ScalarType.BFLOAT16,
     ScalarType.UINT16]
)
_tensors = st.builds(
    lambda s, sizes, data, dim: bp.Tensor(scalar_type=s, sizes=sizes, data=data, dim_order=dim),
    _scalar_types,
    st.lists(st.integers(-(2**31), 2**31 - 1), max_size=4),
    st.binary(max_size=70),
    st.lists(st.integers(0, 255), max_size=4),
)
_values = st.one_of(
    _tensors.map(lambda t: bp.Value(val=t)),
    st.integers(-(2**63), 2**63 - 1).map(lambda i: bp.Value(val=bp.Int(int_val=i))),
    st.booleans().map(lambda b: bp.Value(val=bp.Bool(bool_val=b))),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda d: bp.Value(val=bp.Double(double_val=d))),
)
_cases = st.lists(st.tuples(st.lists(_values, max_size=4), st.lists(_values, max_size=3)), max_size=3)
_programs = st.builds(
    _program,
    st.lists(st.tuples(st.text(max_size=12), _cases), max_size=3),
    st.binary(max_size=100),
    st.integers(0, 2**32 - 1),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_programs)
def test_bundled_generated_identical(schema):
    expected = ref_pack_schema(schema)
    assert ptekit.serialize_from_bundled_program_to_flatbuffer(schema) == expected


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_programs)
def test_bundled_generated_read_equal(schema):
    data = ref_pack_schema(schema)
    assert ptekit.deserialize_from_flatbuffer_to_bundled_program(data) == ref_bundled_deserialize(data)


# ---------------------------------------------------------------------------------------
# Bundled programs: errors.


def _bundled_error(mutate):
    schema = _mixed_program()
    mutate(schema)
    with pytest.raises(ptekit.PteError) as info:
        ptekit.serialize_from_bundled_program_to_flatbuffer(schema)
    assert isinstance(info.value, ValueError)
    return str(info.value)


def test_bundled_serialize_errors_name_field_path():
    def sizes(s):
        s.method_test_suites[1].test_cases[0].inputs[1].val.sizes = [1, "two"]

    msg = _bundled_error(sizes)
    assert "bundled_program.method_test_suites[1].test_cases[0].inputs[1].val.sizes[1]" in msg
    assert "str" in msg

    def int_range(s):
        s.method_test_suites[0].test_cases[1].inputs[0].val.int_val = 2**63

    msg = _bundled_error(int_range)
    assert "method_test_suites[0].test_cases[1].inputs[0].val.int_val" in msg and "int64" in msg

    def scalar_type(s):
        s.method_test_suites[1].test_cases[0].inputs[0].val.scalar_type = 300

    assert "inputs[0].val.scalar_type" in _bundled_error(scalar_type)

    def dim_order(s):
        s.method_test_suites[1].test_cases[0].expected_outputs[0].val.dim_order = [0, 256]

    assert "expected_outputs[0].val.dim_order" in _bundled_error(dim_order)
    assert "bundled_program.method_test_suites" in _bundled_error(
        lambda s: setattr(s, "method_test_suites", None)
    )
    assert "bundled_program.program" in _bundled_error(lambda s: setattr(s, "program", None))
    assert "bundled_program.version" in _bundled_error(lambda s: setattr(s, "version", -1))
    assert "test_cases[0].inputs" in _bundled_error(
        lambda s: delattr(s.method_test_suites[0].test_cases[0], "inputs")
    )
    msg = _bundled_error(
        lambda s: setattr(s.method_test_suites[0].test_cases[0].inputs[2].val, "double_val", "1.5")
    )
    assert "inputs[2].val.double_val" in msg


def test_bundled_serialize_core_object_calls_serialize_to_schema():
    class Core:
        calls = 0

        def serialize_to_schema(self):
            Core.calls += 1
            return _mixed_program()

    assert ptekit.serialize_from_bundled_program_to_flatbuffer(Core()) == ref_pack_schema(_mixed_program())
    assert Core.calls == 1


def test_bundled_deserialize_errors():
    data = BPTE_FILES[0].read_bytes()
    for bad in (b"", b"1234", data[: len(data) // 2], b"\xff" * 64, data[:4] + b"ET12" + data[8:]):
        with pytest.raises(ptekit.PteError):
            ptekit.deserialize_from_flatbuffer_to_bundled_program(bad)
    with pytest.raises(TypeError):
        ptekit.deserialize_from_flatbuffer_to_bundled_program(12345)
    with pytest.raises(TypeError):
        ptekit.deserialize_from_flatbuffer_to_bundled_program("/path/as/str")


def test_bundled_deserialize_absent_fields_raise():
    """Fields the reference's reader requires (it fails on them) raise PteError naming them."""
    # A Value whose union is NONE: the reference packs it, but cannot read it back.
    schema = _program([("forward", [([bp.Value(val=None)], [])])])
    data = ref_pack_schema(schema)
    with pytest.raises(Exception):
        ref_bundled_deserialize(data)
    with pytest.raises(ptekit.PteError, match=r"method_test_suites\[0\]\.test_cases\[0\]\.inputs\[0\]\.val"):
        ptekit.deserialize_from_flatbuffer_to_bundled_program(data)
    # No method name.
    schema = _program([(None, [([], [])])])
    data = ref_pack_schema(schema)
    with pytest.raises(Exception):
        ref_bundled_deserialize(data)
    with pytest.raises(ptekit.PteError, match=r"method_test_suites\[0\]\.method_name"):
        ptekit.deserialize_from_flatbuffer_to_bundled_program(data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_bundled_mutated_never_crashes(data):
    """Corrupted files give a PteError or a result equal to the reference's, never a crash."""
    path = data.draw(st.sampled_from(BPTE_FILES[:2]))
    raw = bytearray(path.read_bytes())
    # Mostly the flatbuffer tables (before the embedded program and around it).
    for _ in range(data.draw(st.integers(1, 6))):
        pos = data.draw(st.one_of(st.integers(0, 600), st.integers(0, len(raw) - 1)))
        raw[pos] = data.draw(st.integers(0, 255))
    raw = bytes(raw)
    try:
        got = ptekit.deserialize_from_flatbuffer_to_bundled_program(raw)
    except ptekit.PteError:
        return
    try:
        want = ref_bundled_deserialize(raw)
    except Exception:
        return  # the reference rejects where ptekit read something (documented cases)
    assert got == want


# ---------------------------------------------------------------------------------------
# Tensor-data files: corpus.


def _ref_ptd(payload, alignment=None):
    config = None if alignment is None else FlatTensorConfig(segment_alignment=alignment)
    return bytes(RefFlatTensorSerializer(config).serialize(payload))


def _mine_ptd(payload, alignment=None):
    config = None if alignment is None else FlatTensorConfig(segment_alignment=alignment)
    return ptekit.FlatTensorSerializer(config).serialize(payload)


@pytest.mark.parametrize("path", PTD_FILES, ids=lambda p: p.name)
def test_ptd_corpus_deserialize_equal(path):
    data = path.read_bytes()
    want = RefFlatTensorSerializer().deserialize(Cord(data))
    ser = ptekit.FlatTensorSerializer()
    got = ser.deserialize(data)
    assert type(got) is DataPayload
    assert got == want
    assert all(type(b) is bytes for b in got.buffers)
    assert list(got.named_data) == list(want.named_data)
    for blob in (Cord(data), memoryview(data), bytearray(data)):
        assert ser.deserialize(blob) == want
    nds = ser.deserialize_to_named_data_store_output(data, "tag")
    assert nds == RefFlatTensorSerializer().deserialize_to_named_data_store_output(data, "tag")


@pytest.mark.parametrize("alignment", [None, 1, 16, 64, 4096, 24])
@pytest.mark.parametrize("path", PTD_FILES, ids=lambda p: p.name)
def test_ptd_corpus_serialize_identical(path, alignment):
    data = path.read_bytes()
    payload = RefFlatTensorSerializer().deserialize(Cord(data))
    expected = _ref_ptd(payload, alignment)
    if alignment is None:
        assert expected == data
    out = _mine_ptd(payload, alignment)
    assert type(out) is ptekit.FlatTensorBinary
    assert len(out) == len(expected)
    assert bytes(out) == expected
    assert out.to_bytes() == expected
    f = io.BytesIO()
    out.write_to_file(f)
    assert f.getvalue() == expected
    # The result reads back (without a copy) to the reference's reading of the bytes.
    assert ptekit.FlatTensorSerializer().deserialize(out) == RefFlatTensorSerializer().deserialize(
        Cord(expected)
    )


# ---------------------------------------------------------------------------------------
# Tensor-data files: synthetic payloads.


def _layout(st_, sizes, dim_order=None):
    return TensorLayout(
        scalar_type=st_, sizes=list(sizes), dim_order=list(range(len(sizes))) if dim_order is None else dim_order
    )


def _payload(tmp_path):
    blob_path = tmp_path / "blob.bin"
    blob_path.write_bytes(bytes(range(256)) * 5)
    return DataPayload(
        buffers=[
            b"\x01" * 100,
            FileBackedData(str(blob_path)),
            b"xyz",
            b"never referenced",
            np.arange(10, dtype=np.float32).tobytes(),
        ],
        named_data={
            "a": DataEntry(buffer_index=0, alignment=64, tensor_layout=None),
            "w": DataEntry(buffer_index=4, alignment=16, tensor_layout=_layout(ScalarType.FLOAT, (2, 5))),
            "b": DataEntry(buffer_index=1, alignment=1, tensor_layout=_layout(ScalarType.BYTE, (1280,))),
            "c": DataEntry(buffer_index=0, alignment=8, tensor_layout=None),  # shares "a"'s segment
            "d": DataEntry(buffer_index=2, alignment=None, tensor_layout=None),
            "e": DataEntry(buffer_index=2, alignment=0, tensor_layout=_layout(ScalarType.BOOL, (3,))),
            "f": DataEntry(buffer_index=4, alignment=256, tensor_layout=_layout(ScalarType.LONG, (5, 1), [1, 0])),
        },
    )


@pytest.mark.parametrize("alignment", [None, 1, 8, 128, 4096, 48])
def test_ptd_payload_identical(tmp_path, alignment):
    payload = _payload(tmp_path)
    before = repr(payload)
    expected = _ref_ptd(payload, alignment)
    assert bytes(_mine_ptd(payload, alignment)) == expected
    assert repr(payload) == before
    got = ptekit.FlatTensorSerializer().deserialize(expected)
    assert got == RefFlatTensorSerializer().deserialize(Cord(expected))


@pytest.mark.parametrize(
    "convert",
    [
        bytearray,
        memoryview,
        lambda b: np.frombuffer(b, dtype=np.uint8),
        lambda b: Cord(b),
        # Not contiguous: converted with bytes().
        lambda b: np.repeat(np.frombuffer(b, dtype=np.uint8), 2)[::2],
    ],
    ids=["bytearray", "memoryview", "numpy", "cord", "numpy_strided"],
)
def test_ptd_buffer_types(tmp_path, convert):
    payload = _payload(tmp_path)
    expected = _ref_ptd(payload)
    payload.buffers = [b if not isinstance(b, bytes) else convert(b) for b in payload.buffers]
    out = _mine_ptd(payload)
    del payload
    assert bytes(out) == expected


def test_ptd_empty_payload_and_default_config():
    payload = DataPayload(buffers=[], named_data={})
    assert bytes(ptekit.FlatTensorSerializer().serialize(payload)) == _ref_ptd(payload)
    assert ptekit.FlatTensorSerializer().config == FlatTensorConfig()
    # The config is read at serialize time, like the reference.
    ser = ptekit.FlatTensorSerializer()
    ser.config = FlatTensorConfig(segment_alignment=16)
    p = DataPayload(buffers=[b"abc"], named_data={"k": DataEntry(0, 1, None)})
    assert bytes(ser.serialize(p)) == _ref_ptd(p, 16)


_ptd_payloads = st.builds(
    lambda bufs, entries: DataPayload(
        buffers=bufs,
        named_data={
            k: DataEntry(buffer_index=i % len(bufs), alignment=a, tensor_layout=tl) for k, i, a, tl in entries
        }
        if bufs
        else {},
    ),
    st.lists(st.binary(max_size=300), max_size=5),
    st.lists(
        st.tuples(
            st.text(max_size=10),
            st.integers(0, 10),
            st.sampled_from([None, 0, 1, 2, 4, 16, 32, 64, 256, 4096, 12]),
            st.one_of(
                st.none(),
                st.builds(
                    _layout,
                    _scalar_types,
                    st.lists(st.integers(-(2**31), 2**31 - 1), max_size=3),
                    st.lists(st.integers(0, 255), max_size=3),
                ),
            ),
        ),
        max_size=8,
    ),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_ptd_payloads, st.sampled_from([None, 1, 16, 128, 4096, 40]))
def test_ptd_generated_identical(payload, alignment):
    expected = _ref_ptd(payload, alignment)
    assert bytes(_mine_ptd(payload, alignment)) == expected


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_ptd_payloads)
def test_ptd_generated_read_equal(payload):
    data = _ref_ptd(payload)
    got = ptekit.FlatTensorSerializer().deserialize(data)
    assert got == RefFlatTensorSerializer().deserialize(Cord(data))


# ---------------------------------------------------------------------------------------
# Tensor-data files: errors.


def _ptd_error(payload, alignment=None):
    with pytest.raises(ptekit.PteError) as info:
        _mine_ptd(payload, alignment)
    assert isinstance(info.value, ValueError)
    return str(info.value)


def test_ptd_serialize_errors_name_field_path(tmp_path):
    p = _payload(tmp_path)
    p.named_data["w"].buffer_index = 99
    msg = _ptd_error(p)
    assert 'data.named_data["w"].buffer_index' in msg and "out of range" in msg
    p = _payload(tmp_path)
    p.named_data["f"].tensor_layout.sizes = [1, "x"]
    assert 'data.named_data["f"].tensor_layout.sizes[1]' in _ptd_error(p)
    p = _payload(tmp_path)
    p.named_data["f"].tensor_layout.dim_order = [0, 256]
    assert "dim_order[1]" in _ptd_error(p)
    p = _payload(tmp_path)
    p.named_data["a"].alignment = -8
    assert 'named_data["a"].alignment' in _ptd_error(p)
    p = _payload(tmp_path)
    p.buffers[2] = "text"
    assert "data.buffers[2]" in _ptd_error(p)
    p = _payload(tmp_path)
    p.named_data = {1: DataEntry(0, 1, None)}
    assert "data.named_data" in _ptd_error(p)
    p = _payload(tmp_path)
    p.buffers = None
    assert "data.buffers" in _ptd_error(p)
    for bad in (0, -128, "x"):
        assert "segment_alignment" in _ptd_error(_payload(tmp_path), bad)


def test_ptd_deserialize_errors():
    data = PTD_FILES[0].read_bytes()
    ser = ptekit.FlatTensorSerializer()
    for bad in (b"", b"1234", data[:60], data[: len(data) - 1], b"\xff" * 64,
                data[:8] + b"FH02" + data[12:]):
        with pytest.raises(ptekit.PteError):
            ser.deserialize(bad)
    with pytest.raises(TypeError):
        ser.deserialize(12345.5)


def test_ptd_newer_version(monkeypatch):
    """A file of a newer version: the reference raises NotImplementedError, ptekit PteError."""
    import executorch.extension.flat_tensor.serialize.serialize as ref_mod

    payload = DataPayload(buffers=[b"abc"], named_data={"k": DataEntry(0, 1, None)})
    monkeypatch.setattr(ref_mod, "_FLAT_TENSOR_VERSION", 1)
    newer = _ref_ptd(payload)
    monkeypatch.undo()
    assert newer != _ref_ptd(payload)
    with pytest.raises(NotImplementedError):
        RefFlatTensorSerializer().deserialize(Cord(newer))
    with pytest.raises(ptekit.PteError, match="version 1"):
        ptekit.FlatTensorSerializer().deserialize(newer)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_ptd_mutated_never_crashes(data):
    """Corrupted files give a PteError or a result equal to the reference's, never a crash."""
    raw = bytearray(PTD_FILES[0].read_bytes())
    for _ in range(data.draw(st.integers(1, 6))):
        pos = data.draw(st.one_of(st.integers(0, 700), st.integers(0, len(raw) - 1)))
        raw[pos] = data.draw(st.integers(0, 255))
    raw = bytes(raw)
    try:
        got = ptekit.FlatTensorSerializer().deserialize(raw)
    except ptekit.PteError:
        return
    try:
        want = RefFlatTensorSerializer().deserialize(Cord(raw))
    except Exception:
        return
    assert got == want
