"""The torch-free readers against the reference: `pk.inspect` returns what
`ptekit inspect --json` prints; `pk.safe_open` gives the tensors executorch's own
readers give (`deserialize_pte_binary` for a program's constants and named data,
`FlatTensorSerializer.deserialize` for a `.ptd`), as zero-copy read-only NumPy views;
`ptekit.verify` answers what `ptekit verify --json` answers and refuses what it refuses,
with the same message. (tests/python/test_notorch.py runs the same readers where torch is absent.)"""

import json
import math

import numpy as np
import pytest
import torch
from executorch.exir._serialize._program import deserialize_pte_binary
from executorch.extension.flat_tensor.serialize.serialize import FlatTensorSerializer

import ptekit as pk
from conftest import CORPUS, FIXTURES, program_files

_NP = {
    "BYTE": np.uint8, "CHAR": np.int8, "SHORT": np.int16, "INT": np.int32, "LONG": np.int64,
    "HALF": np.float16, "FLOAT": np.float32, "DOUBLE": np.float64, "BOOL": np.bool_,
}


def all_files():
    files = program_files() + sorted(CORPUS.glob("*.bpte")) + sorted(CORPUS.glob("*.ptd"))
    return files + sorted(FIXTURES.glob("*.bpte")) + sorted(FIXTURES.glob("*.ptd"))


@pytest.mark.parametrize("path", all_files(), ids=lambda p: p.name)
def test_inspect_equals_cli_json(ptekit, path):
    cli = json.loads(ptekit("inspect", "--json", path).stdout)
    assert pk.inspect(path) == cli
    assert pk.inspect(path, top=3) == json.loads(ptekit("inspect", "--json", "--top", "3", path).stdout)
    assert pk.inspect(str(path)) == cli
    assert pk.inspect(path.read_bytes()) == cli
    assert pk.inspect(memoryview(bytearray(path.read_bytes()))) == cli


@pytest.mark.parametrize("path", all_files(), ids=lambda p: p.name)
def test_verify_equals_cli(ptekit, path):
    if path.name == "legacy_inline_constants.pte":
        # The 1.5.1 runtime refuses its inline constants, and so do both
        # (tests/python/test_verify_vs_runtime.py).
        r = ptekit("verify", path, check=False)
        with pytest.raises(pk.PteError) as e:
            pk.verify(path)
        assert r.returncode == 1 and r.stderr.strip() == f"ptekit: {path}: {e.value}"
        return
    cli = json.loads(ptekit("verify", "--json", path).stdout)
    assert cli.pop("ok") is True and cli.pop("bytes") == path.stat().st_size
    cli.pop("file")
    assert pk.verify(path) == cli
    assert pk.verify(path.read_bytes()) == cli


def test_verify_rejects_what_the_cli_rejects(ptekit, tmp_path):
    broken = tmp_path / "broken.pte"
    broken.write_bytes((CORPUS / "mlp.pte").read_bytes()[:3000])
    r = ptekit("verify", broken, check=False)
    assert r.returncode == 1
    with pytest.raises(pk.PteError) as e:
        pk.verify(broken)
    assert r.stderr.strip() == f"ptekit: {broken}: {e.value}"
    # XNNPACK named keys are looked up in the .ptd given as `ptd`, like --data.
    program, ptd = CORPUS / "external.pte", CORPUS / "external._default_external_constant.ptd"
    assert pk.verify(program, ptd=ptd) == pk.verify(program, ptd=ptd.read_bytes())


def test_inspect_rejects_garbage_with_the_reason(tmp_path):
    with pytest.raises(pk.PteError, match="unrecognized file identifier"):
        pk.inspect(b"\0" * 64)
    data = bytearray((CORPUS / "mlp.pte").read_bytes())
    data[4:8] = b"ET12"
    with pytest.raises(pk.PteError):
        pk.inspect(bytes(data[:200]))
    with pytest.raises(OSError):
        pk.inspect(tmp_path / "missing.pte")


def _expected_constants(data):
    """name -> (dtype, sizes, bytes) of every constant tensor, from executorch's reader."""
    pte = deserialize_pte_binary(data)
    program = pte.program
    out = {}
    for plan in program.execution_plan:
        for i, v in enumerate(plan.values):
            t = v.val
            if type(t).__name__ != "Tensor" or t.allocation_info is not None:
                continue
            idx = t.data_buffer_idx
            if not 0 < idx < len(program.constant_buffer):
                continue
            fqn = t.extra_tensor_info.fully_qualified_name if t.extra_tensor_info else None
            name = fqn or f"{plan.name}/{i}"
            if name in out:
                continue
            itemsize = np.dtype(_NP[t.scalar_type.name]).itemsize
            nbytes = math.prod(t.sizes) * itemsize
            out[name] = (t.scalar_type.name, list(t.sizes), list(t.dim_order),
                         bytes(program.constant_buffer[idx].storage[:nbytes]))
    named = {}
    store = pte.named_data
    if store is not None:
        for key, entry in store.pte_data.items():
            named[key] = bytes(store.buffers[entry.buffer_index])
    return out, named


@pytest.mark.parametrize("path", program_files(), ids=lambda p: p.name)
def test_safe_open_pte_equals_reference(path):
    data = path.read_bytes()
    constants, named = _expected_constants(data)
    with pk.safe_open(path) as f:
        keys = f.keys()
        assert set(keys) == set(constants) | set(named)
        for name, (dtype, sizes, dim_order, raw) in constants.items():
            a = f.get_tensor(name)
            assert a.dtype == np.dtype(_NP[dtype]) and list(a.shape) == sizes
            assert not a.flags.writeable and not a.flags.owndata  # a view of the map
            physical = np.frombuffer(raw, dtype=_NP[dtype]).reshape([sizes[d] for d in dim_order])
            expected = physical.transpose(np.argsort(dim_order)) if dim_order else physical
            np.testing.assert_array_equal(a, expected)
            info = f.info(name)
            assert data[info["offset"] : info["offset"] + info["nbytes"]] == raw
            t = pk.safe_open(path, framework="pt").get_tensor(name)
            assert isinstance(t, torch.Tensor) and list(t.shape) == sizes
            assert torch.equal(t, torch.from_numpy(np.array(expected)))
        for key, raw in named.items():
            a = f.get_tensor(key)
            assert a.dtype == np.uint8 and a.tobytes() == raw
    # The arrays outlive the `with` block (they keep the map).
    assert constants or named or keys == []


@pytest.mark.parametrize("path", sorted(CORPUS.glob("*.ptd")) + sorted(FIXTURES.glob("*.ptd")), ids=lambda p: p.name)
def test_safe_open_ptd_equals_reference(path):
    payload = FlatTensorSerializer().deserialize(path.read_bytes())
    with pk.safe_open(path) as f:
        assert f.keys() == list(payload.named_data)
        arrays = {k: f.get_tensor(k) for k in f.keys()}
    for key, entry in payload.named_data.items():
        layout = entry.tensor_layout
        dtype = _NP[layout.scalar_type.name]
        nbytes = math.prod(layout.sizes) * np.dtype(dtype).itemsize
        raw = bytes(payload.buffers[entry.buffer_index])[:nbytes]
        expected = np.frombuffer(raw, dtype=dtype).reshape(layout.sizes)
        np.testing.assert_array_equal(arrays[key], expected)
        assert arrays[key].dtype == np.dtype(dtype)


def test_safe_open_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        pk.safe_open(tmp_path / "missing.ptd")
    broken = tmp_path / "broken.pte"
    data = bytearray((CORPUS / "mlp.pte").read_bytes())
    broken.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(pk.PteError, match="mlp|segment|offset"):
        pk.safe_open(broken)
    with pk.safe_open(CORPUS / "mlp.pte") as f:
        with pytest.raises(KeyError, match="nope"):
            f.get_tensor("nope")
    with pytest.raises(ValueError):
        pk.safe_open(CORPUS / "mlp.pte", framework="tf")


def test_verify_checks_the_ptd_as_the_cli_does(ptekit, tmp_path):
    # The reference writes a .ptd whose first tensor layout has an undeclared dtype: the
    # .ptd itself is refused, before the program is checked against it.
    program, ptd = CORPUS / "external.pte", CORPUS / "external._default_external_constant.ptd"
    serializer = FlatTensorSerializer()
    payload = serializer.deserialize(ptd.read_bytes())
    entry = next(e for e in payload.named_data.values() if e.tensor_layout is not None)
    entry.tensor_layout.scalar_type = 99
    bad = tmp_path / "bad.ptd"
    bad.write_bytes(bytes(serializer.serialize(payload)))
    r = ptekit("verify", program, "--data", bad, check=False)
    assert r.returncode == 1 and "tensor_layout.scalar_type" in r.stderr, r.stderr
    with pytest.raises(pk.PteError) as e:
        pk.verify(program, ptd=bad)
    assert r.stderr.strip() == f"ptekit: {bad}: {e.value}"
    with pytest.raises(pk.PteError) as e:
        pk.verify(program, ptd=bad.read_bytes())
    assert r.stderr.strip() == f"ptekit: {bad}: {e.value}"
