"""Fresh exports with the reference exporter (executorch 1.5.1), serialized by the
reference and by ptekit: the same bytes, directly (`serialize_pte_binary` on the
emitter's output, several option sets) and end to end through `ptekit.install()`
(`to_executorch()`, `.buffer`, `write_to_file`)."""

import io
import os
import sys

import pytest
import torch
from executorch.exir import EdgeCompileConfig, ExecutorchBackendConfig, to_edge_transform_and_lower
from executorch.exir._serialize import _program as ref_program
from executorch.exir._serialize._program import PTEFile

import ptekit

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scripts"))
import make_fixtures as mf  # noqa: E402  (the fixture models: Mlp, Transformer, ...)

OPTION_SETS = [
    {},
    {"extract_delegate_segments": True},
    {
        "extract_delegate_segments": True,
        "segment_alignment": 4096,
        "constant_tensor_alignment": 64,
        "delegate_alignment": 256,
    },
    {"segment_alignment": 4096, "constant_tensor_alignment": 16, "delegate_alignment": 16},
]


def _edge(name):
    """An edge program manager for one of the test models (fresh each call)."""
    torch.manual_seed(7)
    xnnpack = name.endswith("_xnnpack")
    methods = None
    config = ExecutorchBackendConfig()
    if name.startswith("mlp"):
        model, inputs = mf.Mlp(), (torch.randn(2, 8),)
    elif name.startswith("transformer"):
        model = mf.Transformer(layers=1, dim=16, heads=2, vocab=32)
        inputs = (torch.randint(0, 32, (1, 8)),)
    elif name == "two_methods":
        model, inputs = mf.TwoMethods(), (torch.randn(3, 4),)
        methods = {"decode": ("decode", (torch.randn(3, 4),))}
    elif name == "kv_state":
        from executorch.exir.passes.init_mutable_pass import InitializedMutableBufferPass

        model, inputs = mf.KvState(), (torch.randn(4, 6),)
        config = ExecutorchBackendConfig(passes=[InitializedMutableBufferPass(["cache"])])
    else:
        raise ValueError(name)
    model.eval()
    programs = {"forward": torch.export.export(model, inputs, strict=False)}
    for method, (fn, args) in (methods or {}).items():
        programs[method] = torch.export.export(mf._MethodWrapper(model, fn), args, strict=False)
    partitioner = []
    if xnnpack:
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

        partitioner = [XnnpackPartitioner()]
    edge = to_edge_transform_and_lower(
        programs,
        partitioner=partitioner,
        compile_config=EdgeCompileConfig(_check_ir_validity=False),
    )
    return edge, config


MODELS = ["mlp", "mlp_xnnpack", "transformer", "transformer_xnnpack", "two_methods", "kv_state"]


@pytest.fixture(scope="module", params=MODELS)
def exported(request):
    edge, config = _edge(request.param)
    manager = edge.to_executorch(config)
    return request.param, manager, config


def _pte_file(manager):
    """The PTEFile the exporter serializes (as in serialize_for_executorch)."""
    out = manager._emitter_output
    named = manager._named_data
    if named is not None and (len(named.buffers) == 0 or len(named.pte_data) == 0):
        named = None
    return PTEFile(program=out.program, mutable_data=out.mutable_data, named_data=named)


def test_fresh_export_serialize_identical(exported):
    name, manager, config = exported
    assert not ptekit.installed()
    pte = _pte_file(manager)
    # The exporter's own bytes are the reference's serialization with its config.
    exporter_opts = {
        "extract_delegate_segments": config.extract_delegate_segments,
        "segment_alignment": config.segment_alignment,
        "constant_tensor_alignment": config.constant_tensor_alignment,
        "delegate_alignment": config.delegate_alignment,
    }
    assert bytes(ptekit.serialize_pte_binary(pte, **exporter_opts)) == manager.buffer
    for opts in OPTION_SETS:
        expected = bytes(ref_program.serialize_pte_binary(pte, **opts))
        assert bytes(ptekit.serialize_pte_binary(pte, **opts)) == expected, opts
    if name == "kv_state":
        assert pte.mutable_data, "the mutable-state model should have initial mutable data"
    if name.endswith("_xnnpack"):
        assert any(plan.delegates for plan in pte.program.execution_plan)
    # And the deserialization of the exporter's file.
    assert ptekit.deserialize_pte_binary(manager.buffer) == ref_program.deserialize_pte_binary(
        manager.buffer
    )


@pytest.mark.parametrize("name", ["mlp_xnnpack", "transformer", "two_methods", "kv_state"])
def test_install_end_to_end(name, tmp_path):
    """A real export gives the same bytes with and without ptekit.install()."""
    edge, config = _edge(name)
    reference = edge.to_executorch(config)
    ref_bytes = reference.buffer
    ref_file = io.BytesIO()
    reference.write_to_file(ref_file)
    assert ref_file.getvalue() == ref_bytes

    edge, config = _edge(name)
    ptekit.install()
    try:
        assert ptekit.installed()
        manager = edge.to_executorch(config)
        buf = manager.buffer
        # The exporter really went through ptekit.
        assert isinstance(manager._pte_data, ptekit.PteBinary)
        out = io.BytesIO()
        manager.write_to_file(out)
        with open(tmp_path / "m.pte", "wb") as f:
            manager.write_to_file(f)
        # deserialize_pte_binary is routed too (every module that imported it).
        from executorch.exir._serialize import _deserialize_pte_binary

        assert _deserialize_pte_binary.__module__ == "ptekit._exporter"
        pte = ref_program.deserialize_pte_binary(buf)
    finally:
        ptekit.uninstall()
    assert not ptekit.installed()
    assert buf == ref_bytes
    assert out.getvalue() == ref_bytes
    assert (tmp_path / "m.pte").read_bytes() == ref_bytes
    assert pte == ref_program.deserialize_pte_binary(ref_bytes)


def test_install_patches_every_importer():
    import executorch.exir._serialize as ser_pkg
    import executorch.exir._serialize._serialize as ser_mod
    import executorch.exir.lowered_backend_module as lbm

    originals = (
        ref_program.serialize_pte_binary,
        ref_program.deserialize_pte_binary,
        ser_pkg._serialize_pte_binary,
        ser_pkg._deserialize_pte_binary,
        ser_mod.serialize_pte_binary,
        lbm._serialize_pte_binary,
    )
    assert originals[0].__module__ == "executorch.exir._serialize._program"
    ptekit.install()
    ptekit.install()  # idempotent
    try:
        for fn in (
            ref_program.serialize_pte_binary,
            ser_pkg._serialize_pte_binary,
            ser_mod.serialize_pte_binary,
            lbm._serialize_pte_binary,
        ):
            assert fn.__module__ == "ptekit._exporter", fn
        for fn in (ref_program.deserialize_pte_binary, ser_pkg._deserialize_pte_binary):
            assert fn.__module__ == "ptekit._exporter", fn
    finally:
        ptekit.uninstall()
    assert (
        ref_program.serialize_pte_binary,
        ref_program.deserialize_pte_binary,
        ser_pkg._serialize_pte_binary,
        ser_pkg._deserialize_pte_binary,
        ser_mod.serialize_pte_binary,
        lbm._serialize_pte_binary,
    ) == originals
