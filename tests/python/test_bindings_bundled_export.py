"""Fresh exports with the reference exporter (executorch 1.5.1): bundled programs (float,
integer and boolean test tensors, several methods) and external-weight `.ptd` files
(several segment alignments), serialized by the reference and by ptekit: the same bytes,
directly and end to end through `ptekit.install()`."""

import io
import os
import sys
import types

import pytest
import torch
from executorch.devtools.bundled_program import serialize as bp_serialize
from executorch.devtools.bundled_program.config import MethodTestCase, MethodTestSuite
from executorch.devtools.bundled_program.core import BundledProgram
from executorch.exir import EdgeCompileConfig, ExecutorchBackendConfig, to_edge_transform_and_lower
from executorch.exir._serialize._cord import Cord
from executorch.exir._serialize.data_serializer import DataSerializer
from executorch.extension.flat_tensor.serialize import serialize as ft_serialize

import ptekit

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scripts"))
import make_fixtures as mf  # noqa: E402  (the fixture models: Mlp, _MethodWrapper, ...)


class Mixed(torch.nn.Module):
    """float, int64 and bool tensor inputs; float and int64 outputs; a second method."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)

    def forward(self, x, idx, mask):
        y = torch.where(mask, self.lin(x), -x)
        return y * 2.0, idx + 3

    def scaled(self, x, s):
        return torch.relu(self.lin(x)) * s


def _export(model, methods, config=None):
    model.eval()
    programs = {}
    for name, args in methods.items():
        m = model if name == "forward" else mf._MethodWrapper(model, name)
        programs[name] = torch.export.export(m, args, strict=False)
    edge = to_edge_transform_and_lower(programs, compile_config=EdgeCompileConfig(_check_ir_validity=False))
    return edge.to_executorch(config or ExecutorchBackendConfig())


def _mixed_inputs(g):
    return {
        "forward": lambda: (
            torch.randn(2, 4, generator=g),
            torch.randint(-50, 50, (5,), generator=g, dtype=torch.int64),
            torch.rand(2, 4, generator=g) > 0.5,
        ),
        "scaled": lambda: (torch.randn(3, 4, generator=g), torch.randn(1, generator=g)),
    }


def _bundled(cases=3):
    """A fresh export of Mixed and its reference BundledProgram (suites given unsorted)."""
    torch.manual_seed(3)
    g = torch.Generator().manual_seed(3)
    model = Mixed()
    makers = _mixed_inputs(g)
    manager = _export(model, {m: make() for m, make in makers.items()})
    suites = []
    for m in ("scaled", "forward"):
        tcs = []
        for _ in range(cases):
            inputs = makers[m]()
            with torch.no_grad():
                outs = model(*inputs) if m == "forward" else model.scaled(*inputs)
            outs = list(outs) if isinstance(outs, tuple) else [outs]
            tcs.append(MethodTestCase(inputs=list(inputs), expected_outputs=outs))
        suites.append(MethodTestSuite(method_name=m, test_cases=tcs))
    return manager, BundledProgram(manager, suites)


@pytest.fixture(scope="module")
def bundled():
    return _bundled()


def test_fresh_bundled_identical(bundled):
    _, program = bundled
    expected = bp_serialize.serialize_from_bundled_program_to_flatbuffer(program)
    assert ptekit.serialize_from_bundled_program_to_flatbuffer(program) == expected
    # Several methods, float / int64 / bool tensors.
    schema = program.serialize_to_schema()
    assert [s.method_name for s in schema.method_test_suites] == ["forward", "scaled"]
    kinds = {int(v.val.scalar_type) for s in schema.method_test_suites for c in s.test_cases for v in c.inputs}
    assert {6, 4, 11} <= kinds, kinds
    got = ptekit.deserialize_from_flatbuffer_to_bundled_program(expected)
    assert got == bp_serialize.deserialize_from_flatbuffer_to_bundled_program(expected)
    assert got.program == program.executorch_program.buffer


def test_fresh_bundled_from_pte_path(bundled, tmp_path):
    manager, program = bundled
    path = tmp_path / "m.pte"
    path.write_bytes(manager.buffer)
    from_path = BundledProgram(None, program.method_test_suites, pte_file_path=str(path))
    expected = bp_serialize.serialize_from_bundled_program_to_flatbuffer(from_path)
    assert ptekit.serialize_from_bundled_program_to_flatbuffer(from_path) == expected


SEGMENT_ALIGNMENTS = [128, 16, 4096]


def _external(alignment):
    torch.manual_seed(5)
    config = ExecutorchBackendConfig(external_constants=True, segment_alignment=alignment)
    return _export(mf.Mlp(), {"forward": (torch.randn(2, 8),)}, config)


def _ptd_files(manager):
    """{tag: bytes} of the manager's tensor-data files (what write_tensor_data_to_file writes)."""
    return {name: bytes(cord) for name, cord in (manager._tensor_data or {}).items()}


@pytest.fixture(scope="module", params=SEGMENT_ALIGNMENTS, ids=lambda a: f"align{a}")
def external(request):
    return request.param, _external(request.param)


def test_fresh_ptd_identical(external):
    """The exporter's .ptd: ptekit reads it like the reference and writes it back the same."""
    alignment, manager = external
    files = _ptd_files(manager)
    assert files, "external_constants should produce a .ptd"
    config = ft_serialize.FlatTensorConfig(segment_alignment=alignment)
    for name, data in files.items():
        want = ft_serialize.FlatTensorSerializer(config).deserialize(Cord(data))
        got = ptekit.FlatTensorSerializer(config).deserialize(data)
        assert got == want
        assert any(e.tensor_layout is not None for e in got.named_data.values())
        assert bytes(ptekit.FlatTensorSerializer(config).serialize(want)) == data, name


def test_install_bundled_end_to_end():
    """A real bundled export gives the same bytes with and without ptekit.install()."""
    _, program = _bundled(cases=2)
    ref_bytes = bp_serialize.serialize_from_bundled_program_to_flatbuffer(program)
    ref_read = bp_serialize.deserialize_from_flatbuffer_to_bundled_program(ref_bytes)

    # A module that imported the functions by name before install().
    importer = types.ModuleType("ptekit_test_bundled_importer")
    importer.ser = bp_serialize.serialize_from_bundled_program_to_flatbuffer
    importer.de = bp_serialize.deserialize_from_flatbuffer_to_bundled_program
    originals = (importer.ser, importer.de)
    sys.modules[importer.__name__] = importer
    try:
        ptekit.install()
        try:
            # The program's .pte goes through ptekit too (a fresh export under install).
            _, program2 = _bundled(cases=2)
            assert isinstance(program2.executorch_program._pte_data, ptekit.PteBinary)
            fn = bp_serialize.serialize_from_bundled_program_to_flatbuffer
            assert fn.__module__ == "ptekit._exporter"
            assert importer.ser.__module__ == "ptekit._exporter" and importer.de.__module__ == "ptekit._exporter"
            out = fn(program2)
            out_importer = importer.ser(program2)
            read = bp_serialize.deserialize_from_flatbuffer_to_bundled_program(out)
        finally:
            ptekit.uninstall()
        assert (importer.ser, importer.de) == originals
        assert bp_serialize.serialize_from_bundled_program_to_flatbuffer.__module__ != "ptekit._exporter"
    finally:
        del sys.modules[importer.__name__]
    assert out == ref_bytes
    assert out_importer == ref_bytes
    assert read == ref_read


@pytest.mark.parametrize("alignment", [128, 4096])
def test_install_external_weights_end_to_end(alignment, tmp_path):
    """A real external-weights export gives the same .pte and .ptd bytes with and without
    ptekit.install(); the exporter's FlatTensorSerializer is ptekit's while installed."""
    reference = _external(alignment)
    ref_pte = reference.buffer
    ref_dir = tmp_path / "ref"
    ref_dir.mkdir()
    reference.write_tensor_data_to_file(str(ref_dir))
    ref_files = {p.name: p.read_bytes() for p in ref_dir.iterdir()}
    assert ref_files and all(n.endswith(".ptd") for n in ref_files)
    original_class = ft_serialize.FlatTensorSerializer

    ptekit.install()
    try:
        assert ft_serialize.FlatTensorSerializer is not original_class
        assert issubclass(ft_serialize.FlatTensorSerializer, ptekit.FlatTensorSerializer)
        manager = _external(alignment)
        assert isinstance(manager._data_serializer, ptekit.FlatTensorSerializer)
        assert isinstance(manager._data_serializer, DataSerializer)
        pte = manager.buffer
        assert all(isinstance(c, ptekit.FlatTensorBinary) for c in manager._tensor_data.values())
        out_dir = tmp_path / "ptekit"
        out_dir.mkdir()
        manager.write_tensor_data_to_file(str(out_dir))
        data_files = _ptd_files(manager)
    finally:
        ptekit.uninstall()
    assert ft_serialize.FlatTensorSerializer is original_class
    assert pte == ref_pte
    assert {p.name: p.read_bytes() for p in out_dir.iterdir()} == ref_files
    assert {f"{k}.ptd": v for k, v in data_files.items()} == ref_files
    # And the reference reads ptekit's files like its own.
    for name, data in ref_files.items():
        assert ptekit.FlatTensorSerializer().deserialize(data) == original_class().deserialize(Cord(data))


def test_uninstall_keeps_user_references():
    """uninstall() restores what install() replaced, not a user's own ptekit references."""
    holder = types.ModuleType("ptekit_test_user_refs")
    holder.FlatTensorSerializer = ptekit.FlatTensorSerializer
    holder.ser = ptekit.serialize_from_bundled_program_to_flatbuffer
    sys.modules[holder.__name__] = holder
    try:
        ptekit.install()
        ptekit.install()  # idempotent
        ptekit.uninstall()
        assert holder.FlatTensorSerializer is ptekit.FlatTensorSerializer
        assert holder.ser is ptekit.serialize_from_bundled_program_to_flatbuffer
    finally:
        del sys.modules[holder.__name__]
    assert not ptekit.installed()
    assert ft_serialize.FlatTensorSerializer.__module__ == ft_serialize.__name__


def test_result_usable_as_cord():
    """What the exporter does with the serializer's result: bytes(), len(), write_to_file()."""
    manager = _external(128)
    payload_files = _ptd_files(manager)
    for data in payload_files.values():
        payload = ft_serialize.FlatTensorSerializer().deserialize(Cord(data))
        out = ptekit.FlatTensorSerializer().serialize(payload)
        f = io.BytesIO()
        out.write_to_file(f)
        assert (len(out), bytes(out), f.getvalue()) == (len(data), data, data)
