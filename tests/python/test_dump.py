"""`ptekit dump` against the reference's `_program_to_json` (the JSON the reference fed to
flatc): on every corpus and fixture program the program part of the dump, parsed, equals
the reference's JSON of the same program bytes, parsed; a `--with-data` dump builds back
byte for byte with `ptekit build`, an elided one with `--data-from`; a broken document
fails with its JSON path, exit 1."""

import json
import math

import pytest
from executorch.exir._serialize._flatbuffer_program import _flatbuffer_to_program
from executorch.exir._serialize._program import _get_extended_header, _program_to_json

from conftest import program_files


def _canon(x):
    """JSON values with non-finite floats as the strings ptekit writes (the reference's
    json.dumps writes the non-JSON literals Infinity/NaN in lists)."""
    if isinstance(x, float) and not math.isfinite(x):
        return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    if isinstance(x, list):
        return [_canon(v) for v in x]
    if isinstance(x, dict):
        return {k: _canon(v) for k, v in x.items()}
    return x


def _reference_json(data):
    header = _get_extended_header(data)
    size = header.program_size if header is not None else len(data)
    return json.loads(_program_to_json(_flatbuffer_to_program(data[:size])))


@pytest.mark.parametrize("path", program_files(), ids=lambda p: p.name)
def test_dump_equals_reference_and_builds_back(ptekit, path, tmp_path):
    data = path.read_bytes()
    dumped = ptekit("dump", "--with-data", path).stdout
    ours = json.loads(dumped)
    container = ours.pop("ptekit_container")
    assert _canon(ours) == _canon(_reference_json(data))
    assert len(container["segment_data"]) == len(ours["segments"] or [])

    doc = tmp_path / "dump.json"
    doc.write_text(dumped)
    out = tmp_path / "out.pte"
    ptekit("build", doc, "-o", out)
    assert out.read_bytes() == data

    # Without --with-data: large arrays are elided; they come back from the dumped file.
    elided = ptekit("dump", path).stdout
    doc.write_text(elided)
    ptekit("build", doc, "-o", out, "--data-from", path)
    assert out.read_bytes() == data
    if "ptekit_elided" in elided:
        r = ptekit("build", doc, "-o", tmp_path / "no.pte", check=False)
        assert r.returncode == 1
        assert "elided" in r.stderr and "--data-from" in r.stderr
        assert not (tmp_path / "no.pte").exists()


def test_edited_document_builds_a_program_the_reference_reads(ptekit, tmp_path):
    src = next(p for p in program_files() if p.name == "mlp.pte")
    doc = json.loads(ptekit("dump", "--with-data", src).stdout)
    doc["execution_plan"][0]["name"] = "renamed"
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(doc))
    out = tmp_path / "edited.pte"
    ptekit("build", path, "-o", out)
    ref = _reference_json(out.read_bytes())
    assert ref["execution_plan"][0]["name"] == "renamed"
    doc.pop("ptekit_container")
    doc["execution_plan"][0]["name"] = "forward"
    assert _canon(ref) != _canon(doc)  # the name differs ...
    ref["execution_plan"][0]["name"] = "forward"
    assert _canon(ref) == _canon(doc)  # ... and nothing else


def test_broken_document_names_the_json_path(ptekit, tmp_path):
    src = next(p for p in program_files() if p.name == "mlp.pte")
    doc = json.loads(ptekit("dump", src).stdout)
    doc["execution_plan"][0]["values"][0]["val_type"] = "Tensr"
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(doc))
    r = ptekit("build", path, "-o", tmp_path / "x.pte", "--data-from", src, check=False)
    assert r.returncode == 1
    assert r.stderr.startswith(f"ptekit: {path}: $.execution_plan[0].values[0].val: ")
    assert '"Tensr" is not a member of KernelTypes' in r.stderr
    path.write_text("{\n  \"version\": 0,\n")
    r = ptekit("build", path, "-o", tmp_path / "x.pte", check=False)
    assert r.returncode == 1 and "JSON syntax error at line 3" in r.stderr
