"""`ptekit ops --yaml` against the reference's `gen_oplist --model_file_path`: the same
operators and `et_kernel_metadata` (compared parsed) for every program of the corpus and
the fixtures, bundled programs too; several files merge like the reference's
`merge_et_kernel_metadata`."""

import contextlib
import io

import pytest
import yaml
from executorch.codegen.tools import gen_oplist
from torchgen.selective_build.selector import merge_et_kernel_metadata

from conftest import CORPUS, program_files


def _reference(path, tmp_path):
    out = tmp_path / "selected_operators.yaml"
    with contextlib.redirect_stdout(io.StringIO()):
        gen_oplist.gen_oplist(output_path=out, model_file_path=str(path))
    return yaml.safe_load(out.read_text())


def _files():
    return program_files() + sorted(CORPUS.glob("*.bpte"))


@pytest.mark.parametrize("path", _files(), ids=lambda p: p.name)
def test_ops_yaml_equals_gen_oplist(ptekit, path, tmp_path):
    want = _reference(path, tmp_path)
    got = yaml.safe_load(ptekit("ops", "--yaml", path).stdout)
    assert got == want
    lines = ptekit("ops", path).stdout.split()
    assert lines == sorted(want["operators"])


def test_ops_merge_several_files(ptekit, tmp_path):
    files = [CORPUS / "mlp.pte", CORPUS / "scalars_lists.pte", CORPUS / "cond.pte"]
    operators, debug, metadata = set(), {}, {}
    for f in files:
        ref = _reference(f, tmp_path)
        operators |= set(ref["operators"])
        for op in ref["operators"]:
            debug.setdefault(op, []).append(str(f))
        metadata = merge_et_kernel_metadata(metadata, ref["et_kernel_metadata"])
    got = yaml.safe_load(ptekit("ops", "--yaml", *files).stdout)
    assert set(got["operators"]) == operators
    assert got["et_kernel_metadata"] == metadata
    for op, entry in got["operators"].items():
        assert entry["debug_info"] == debug[op]
        assert entry["is_root_operator"] is True and entry["include_all_overloads"] is False


def test_ops_of_a_ptd_is_a_clear_error(ptekit):
    ptd = CORPUS / "external._default_external_constant.ptd"
    r = ptekit("ops", ptd, check=False)
    assert r.returncode == 1
    assert str(ptd) in r.stderr and "no program" in r.stderr
