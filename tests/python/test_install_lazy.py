"""ptekit.install() is lazy and free, and an export under it keeps its weights once.

Each test runs in a fresh interpreter (the pytest process has executorch imported
already), so "imports nothing" and "patched on first import" are observed as a user
would see them. Every export is compared byte for byte with the reference's own export of
the same model in the same process (after uninstall()).
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

HEAVY = ("torch", "executorch", "numpy", "flatbuffers")


def _run(code: str) -> dict:
    env = dict(os.environ)
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_install_imports_nothing():
    got = _run(
        """
        import json, sys
        import ptekit
        before = set(sys.modules)
        ptekit.install()
        new = sorted(set(sys.modules) - before)
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in %r)
        print(json.dumps({"new": new, "heavy": heavy, "installed": ptekit.installed()}))
        """
        % (HEAVY,)
    )
    assert got["installed"]
    assert got["heavy"] == []
    assert set(got["new"]) <= {"ptekit._install"}, got["new"]


def test_targets_patched_when_first_imported():
    """Each table entry is applied when its module is first imported, to the module and
    to the modules that import the name from it; uninstall() restores them all."""
    got = _run(
        """
        import json, sys
        import ptekit
        from ptekit import _install
        ptekit.install()
        from executorch.exir._serialize import _serialize_pte_binary
        import executorch.exir.emit._emitter as emitter
        import executorch.backends.xnnpack.serialization.xnnpack_graph_serialize as xs
        import executorch.devtools.bundled_program.serialize as bs
        import executorch.extension.flat_tensor.serialize.serialize as fs
        import executorch.backends.xnnpack.operators.node_visitor as nv
        from executorch.backends.xnnpack.xnnpack_preprocess import XnnpackBackend
        from executorch.exir.backend.backend_details import BackendDetails
        base_copy = BackendDetails.__dict__["copy_exported_program_for_preprocess"]
        patched = {
            "pte_importer": _serialize_pte_binary.__module__,
            "emitter": emitter._Emitter._tensor_spec_to_evalue.__module__,
            "xnnpack": xs.convert_to_flatbuffer.__module__,
            "bundled": bs.serialize_from_bundled_program_to_flatbuffer.__module__,
            "flat_tensor": fs.FlatTensorSerializer.__module__,
            "xnnpack_named_data": nv.NodeVisitor.get_serialized_buffer_index.__module__,
            "xnnpack_copy": XnnpackBackend.copy_exported_program_for_preprocess.__func__.__module__,
        }
        targets = sorted({p.module for p in _install.PATCHES})
        ptekit.uninstall()
        import executorch.exir._serialize as pkg
        restored = {
            "pte_importer": pkg._serialize_pte_binary.__module__,
            "emitter": emitter._Emitter._tensor_spec_to_evalue.__module__,
            "xnnpack": xs.convert_to_flatbuffer.__module__,
            "bundled": bs.serialize_from_bundled_program_to_flatbuffer.__module__,
            "flat_tensor": fs.FlatTensorSerializer.__module__,
            "xnnpack_named_data": nv.NodeVisitor.get_serialized_buffer_index.__module__,
            "xnnpack_copy": XnnpackBackend.copy_exported_program_for_preprocess.__func__.__module__,
        }
        # The inherited method was set on XnnpackBackend only, and deleted again.
        inherited = ("copy_exported_program_for_preprocess" not in XnnpackBackend.__dict__
                     and BackendDetails.__dict__["copy_exported_program_for_preprocess"] is base_copy)
        print(json.dumps({"patched": patched, "restored": restored, "targets": targets,
                          "inherited": inherited,
                          "hook": any(type(f).__name__ == "_Finder" for f in sys.meta_path)}))
        """
    )
    assert got["patched"] == {
        "pte_importer": "ptekit._exporter",
        "emitter": "ptekit._exporter",
        "xnnpack": "ptekit.xnnpack",
        "bundled": "ptekit._exporter",
        "flat_tensor": "ptekit._exporter",
        "xnnpack_named_data": "ptekit._exporter",
        "xnnpack_copy": "ptekit._exporter",
    }, got
    assert all(not m.startswith("ptekit") for m in got["restored"].values()), got
    assert got["inherited"], got
    assert not got["hook"]
    assert len(got["targets"]) == 7


MODEL = """
import io, json, sys
import ptekit
ptekit.install()
import torch

class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        # Large enough for weights to be written as views (>= 1 MiB), plus the layouts
        # the emitter copies or converts: a non-contiguous parameter, a channels-last
        # convolution weight, half precision, and two identical constants (deduplicated).
        self.big = torch.nn.Linear(512, 1024)
        self.t = torch.nn.Parameter(torch.randn(64, 1024).t())
        self.conv = torch.nn.Conv2d(4, 8, 3).to(memory_format=torch.channels_last)
        self.h16 = torch.nn.Parameter(torch.randn(64, 64, dtype=torch.float16))
        self.register_buffer("same1", torch.ones(32))
        self.register_buffer("same2", torch.ones(32))

    def forward(self, x, img):
        y = self.big(x) @ self.t
        z = self.conv(img).sum() + (self.h16.float().sum() + self.same1.sum() + self.same2.sum())
        return y + z

inputs = (torch.randn(2, 512), torch.randn(1, 4, 8, 8))
"""


def test_lazy_install_export_views_and_identity(tmp_path):
    got = _run(
        MODEL
        + """
from executorch.exir import to_edge
from executorch.exir.emit import _emitter
from ptekit._exporter import TensorBytes

ep = torch.export.export(Model().eval(), inputs)
manager = to_edge(ep).to_executorch()
storages = [b.storage for b in manager.executorch_program.constant_buffer]
views = [s for s in storages if isinstance(s, TensorBytes)]
params = {p.untyped_storage().data_ptr() for p in Model().parameters()}
path = sys.argv[1] if len(sys.argv) > 1 else None
out = io.BytesIO()
manager.write_to_file(out)
with open(%r, "wb") as f:
    manager.write_to_file(f)
raw = io.FileIO(%r, "wb")
manager.write_to_file(raw)
raw.close()
buffer = manager.buffer
pte_data_type = type(manager._pte_data).__name__
patched = _emitter._Emitter._tensor_spec_to_evalue.__module__
# A program emitted under install() is still serializable by the reference.
from executorch.exir._serialize import _program
ptekit.uninstall()
ref_of_ptekit_program = bytes(
    _program.serialize_pte_binary(_program.PTEFile(program=manager.executorch_program), extract_delegate_segments=True)
)
reference = to_edge(torch.export.export(Model().eval(), inputs)).to_executorch()
ref_storages = [b.storage for b in reference.executorch_program.constant_buffer]
ref = reference.buffer
print(json.dumps({
    "pte_data": pte_data_type,
    "patched": patched,
    "n_views": len(views),
    "n_buffers": len(storages),
    "ref_all_bytes": all(isinstance(s, bytes) for s in ref_storages),
    "same_contents": [bytes(s.to_bytes() if isinstance(s, TensorBytes) else s) == r for s, r in zip(storages, ref_storages)],
    "buffer": buffer == ref,
    "bytesio": out.getvalue() == ref,
    "file": open(%r, "rb").read() == ref,
    "rawfile": open(%r, "rb").read() == ref,
    "reference_on_ptekit_program": len(ref_of_ptekit_program) > 0,
    "size": len(ref),
}))
"""
        % (str(tmp_path / "a.pte"), str(tmp_path / "b.pte"), str(tmp_path / "a.pte"), str(tmp_path / "b.pte"))
    )
    assert got["pte_data"] == "PteBinary"
    assert got["patched"] == "ptekit._exporter"
    # Every constant but the reserved empty buffer 0 is a view, not a copy.
    assert got["n_views"] == got["n_buffers"] - 1 and got["n_views"] >= 5, got
    assert got["ref_all_bytes"]
    assert all(got["same_contents"]) and len(got["same_contents"]) == got["n_buffers"]
    assert got["buffer"] and got["bytesio"] and got["file"] and got["rawfile"], got
    assert got["size"] > 2 << 20


def test_views_share_the_model_storage():
    """The emitter's constants point into the exported program's own tensors."""
    got = _run(
        MODEL
        + """
from executorch.exir import to_edge
from ptekit._exporter import TensorBytes
ep = torch.export.export(Model().eval(), inputs)
edge = to_edge(ep)
manager = edge.to_executorch()
state = manager.exported_program().state_dict
ptrs = {t.untyped_storage().data_ptr() for t in state.values()}
views = [b.storage for b in manager.executorch_program.constant_buffer if isinstance(b.storage, TensorBytes)]
big = max(views, key=len)
print(json.dumps({"shared": big._storage.data_ptr() in ptrs, "big": len(big)}))
"""
    )
    # The large Linear weight (2 MiB) at least is the model's own memory.
    assert got["big"] == 512 * 1024 * 4
    assert got["shared"], got


def test_bundled_export_streams_program(tmp_path):
    """Under install(), a bundled program's .pte is packed from the exporter's plan
    (`.buffer` is never materialized) and the .bpte is the reference's, as bytes or
    streamed with ptekit.write_bundled_program."""
    got = _run(
        MODEL
        + """
from executorch.exir import to_edge
from executorch.devtools import BundledProgram
from executorch.devtools.bundled_program.config import MethodTestCase, MethodTestSuite
from executorch.devtools.bundled_program import serialize as bp_serialize

def bundle():
    model = Model().eval()
    manager = to_edge(torch.export.export(model, inputs)).to_executorch()
    cases = []
    for i in range(3):
        torch.manual_seed(100 + i)
        x = (torch.randn(2, 512), torch.randn(1, 4, 8, 8))
        with torch.no_grad():
            cases.append(MethodTestCase(inputs=x, expected_outputs=(model(*x),)))
    return manager, BundledProgram(manager, [MethodTestSuite(method_name="forward", test_cases=cases)])

manager, bp = bundle()
data = bp_serialize.serialize_from_bundled_program_to_flatbuffer(bp)
buffer_after_serialize = manager._buffer
ptekit.write_bundled_program(%r, bp)
with open(%r, "wb") as f:
    n = ptekit.write_bundled_program(f, bp)
buffer_after_write = manager._buffer
ptekit.uninstall()
ref_manager, ref_bp = bundle()
ref = bp_serialize.serialize_from_bundled_program_to_flatbuffer(ref_bp)
# The reference's own serializer on the bundled program exported under install().
ref_on_ptekit = bp_serialize.serialize_from_bundled_program_to_flatbuffer(bp)
print(json.dumps({
    "bytes": type(data).__name__,
    "same": data == ref,
    "path": open(%r, "rb").read() == ref,
    "fileobj": open(%r, "rb").read() == ref and n == len(ref),
    "ref_on_ptekit": ref_on_ptekit == ref,
    "not_materialized": buffer_after_serialize is None and buffer_after_write is None,
    "size": len(ref),
}))
"""
        % ((str(tmp_path / "a.bpte"), str(tmp_path / "b.bpte")) * 2)
    )
    assert got["bytes"] == "bytes"
    assert got["same"] and got["path"] and got["fileobj"], got
    assert got["ref_on_ptekit"], got
    assert got["not_materialized"], got
    assert got["size"] > 2 << 20


XNNPACK_MODEL = """
import hashlib, io, json, os, sys
import ptekit
ptekit.install()
import torch
from executorch.exir import ExecutorchBackendConfig, to_edge_transform_and_lower
from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

class Model(torch.nn.Module):
    # The layouts XNNPACK lowering converts: float32 Linear weights (stored as they are),
    # a convolution (channels-last), a depthwise convolution and a grouped transposed
    # convolution (in/out channels swapped per group).
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(256, 512)
        self.lin2 = torch.nn.Linear(512, 256)
        self.conv = torch.nn.Conv2d(4, 8, 3, padding=1)
        self.dw = torch.nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.tr = torch.nn.ConvTranspose2d(8, 6, 3, groups=2)

    def forward(self, x, img):
        return self.lin2(torch.relu(self.lin(x))), self.tr(self.dw(self.conv(img)))

inputs = (torch.randn(2, 256), torch.randn(1, 4, 8, 8))

def export(tag=None, quantize=False):
    torch.manual_seed(0)
    model = Model().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ep = torch.export.export(model, inputs, strict=False)
    if quantize:
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
            XNNPACKQuantizer, get_symmetric_quantization_config)
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
        quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
        gm = prepare_pt2e(ep.module(), quantizer)
        gm(*inputs)
        ep = torch.export.export(convert_pt2e(gm), inputs, strict=False)
    if tag:
        from executorch.exir.passes.external_constants_pass import (
            delegate_external_constants_pass_unlifted)
        gm = ep.module()
        delegate_external_constants_pass_unlifted(module=gm, gen_tag_fn=lambda node: tag)
        ep = torch.export.export(gm, inputs, strict=False)
    manager = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()]).to_executorch(
        ExecutorchBackendConfig())
    unchanged = all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    return model, manager, unchanged

def files(manager, folder):
    os.makedirs(folder)
    manager.save(os.path.join(folder, "m.pte"))
    if manager._tensor_data:
        manager.write_tensor_data_to_file(folder)
    return {f: open(os.path.join(folder, f), "rb").read() for f in sorted(os.listdir(folder))}
"""


@pytest.mark.parametrize("case", ["pte", "ptd"])
def test_xnnpack_lowering_named_data_views(case, tmp_path):
    """Under install(), XNNPACK lowering adds views of the model's weights to the named
    data (no bytes copies, no deep copies of the weights) and the .pte (and, with the
    weights tagged for an external file, the .ptd) are the reference's bytes."""
    got = _run(
        XNNPACK_MODEL
        + """
from ptekit._exporter import TensorBytes
tag = "weights" if %r == "ptd" else None
model, manager, unchanged = export(tag)
named = manager._named_data
params = {p.untyped_storage().data_ptr() for p in model.parameters()}
views = [b for b in named.buffers if isinstance(b, TensorBytes)]
shared = [v for v in views if v._storage.data_ptr() in params]
ours = files(manager, %r)
# The same program lowered by the reference's own code.
ptekit.uninstall()
_, reference, _ = export(tag)
ref = files(reference, %r)
print(json.dumps({
    "files": sorted(ours),
    "same": ours == ref,
    "n_buffers": len(named.buffers),
    "n_views": len(views),
    "n_shared": len(shared),
    "unchanged": unchanged,
    "pte_only_in_ptd": tag is not None and len(ours["m.pte"]) < 64 << 10,
}))
"""
        % (case, str(tmp_path / "ptekit"), str(tmp_path / "reference"))
    )
    assert got["same"], got
    assert got["files"] == (["m.pte", "weights.ptd"] if case == "ptd" else ["m.pte"])
    # Every weight and bias is a view; the Linear weights and biases (float32, stored as
    # they are) are the model's own memory.
    assert got["n_views"] == got["n_buffers"] >= 10, got
    assert got["n_shared"] >= 4, got
    assert got["unchanged"], got
    if case == "ptd":
        assert got["pte_only_in_ptd"], got


def test_xnnpack_quantized_lowering_identical(tmp_path):
    """Statically quantized weights (converted by the lowering, int8 per channel) under
    install(): the same .pte as the reference's."""
    got = _run(
        XNNPACK_MODEL
        + """
from ptekit._exporter import TensorBytes
_, manager, _ = export(quantize=True)
n_views = sum(isinstance(b, TensorBytes) for b in manager._named_data.buffers)
ours = files(manager, %r)
ptekit.uninstall()
_, reference, _ = export(quantize=True)
print(json.dumps({"same": ours == files(reference, %r), "n_views": n_views}))
"""
        % (str(tmp_path / "ptekit"), str(tmp_path / "reference"))
    )
    assert got["same"], got
    assert got["n_views"] >= 5, got
