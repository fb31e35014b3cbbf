"""`ptekit rewrite` of programs that another FlatBuffers builder laid out.

The reference writes `.pte` programs with the Python FlatBuffers builder. flatc (the
binary the reference ships as `executorch/data/bin/flatc`) lays the same program out
differently: it adds a table's fields by size, highest field id first, and does not
align the elements of an empty vector. Here flatc compiles the JSON of `ptekit dump
--with-data` with the reference's program schema, and the result is wrapped into a
`.pte` with the reference's extended header and the original file's segment bytes.

Such a file verifies and runs in the reference runtime with the original's outputs.
`rewrite` without options cannot keep it byte for byte, so it writes the canonical
layout and says so (stderr, and `layout`/`reason` in `--json`); the output verifies,
runs with the same outputs, and is byte for byte what the reference itself writes for
the file (`deserialize_pte_binary` then `serialize_pte_binary`).

`rewrite --json` of a file the reference wrote says `exact` and writes the same bytes.
"""

import importlib.resources
import json
import os
import re
import subprocess

import numpy as np
import pytest

from conftest import CORPUS
from runtime_io import recorded_io, run_forward

# A constant segment, XNNPACK delegate segments with named data, mutable state, two
# methods with an empty `[long]` vector, no constants, scalars and lists, control flow.
PROGRAMS = ["mlp", "mlp_xnnpack", "kv_cache", "multi_method", "add", "scalars_lists", "cond"]

# The reference's default segment alignment (`serialize_pte_binary`).
SEGMENT_ALIGNMENT = 128


def _flatc():
    path = importlib.resources.files("executorch.data.bin").joinpath("flatc")
    if not path.is_file():
        why = "the reference wheel has no flatc (executorch/data/bin/flatc)"
        if os.environ.get("PTEKIT_REQUIRE_REFERENCE"):
            pytest.fail(why)  # scripts/test requires the reference: no silent skip
        pytest.skip(why)
    return str(path)


@pytest.fixture(scope="module")
def schema(tmp_path_factory):
    """The reference's program schema (program.fbs and what it includes), with the
    alignments the reference writes by default."""
    from executorch.exir._serialize._flatbuffer import _prepare_schema

    out = tmp_path_factory.mktemp("schema")
    return _prepare_schema(str(out), constant_tensor_alignment=None, delegate_alignment=None)


def _flatc_pte(ptekit, src, schema, tmp_path):
    """`src` laid out by flatc: its dumped program compiled with `flatc --binary`, then
    the reference's extended header and `src`'s segment bytes (offsets in the program
    are relative to the segment base, so the bytes are copied as they are)."""
    from executorch.exir._serialize._program import (
        _ExtendedHeader,
        _get_extended_header,
        _insert_flatbuffer_header,
    )
    from executorch.exir._serialize.padding import aligned_size, pad_to

    dump = json.loads(ptekit("dump", "--with-data", src).stdout)
    dump.pop("ptekit_container")
    doc = tmp_path / f"{src.stem}.json"
    doc.write_text(json.dumps(dump))
    subprocess.run(
        [_flatc(), "--binary", "-o", str(tmp_path / "flatc"), schema.root_path, str(doc)],
        check=True,
        capture_output=True,
    )
    flatbuffer = (tmp_path / "flatc" / f"{src.stem}.pte").read_bytes()
    original = src.read_bytes()
    header = _get_extended_header(original)
    if header is None:
        return flatbuffer
    start = header.segment_base_offset
    segments = original[start : start + header.segment_data_size]
    header_len = aligned_size(_ExtendedHeader.EXPECTED_LENGTH, schema.max_alignment)
    program_size = header_len + len(flatbuffer)
    base = aligned_size(program_size, SEGMENT_ALIGNMENT)
    header = _ExtendedHeader(
        program_size=program_size,
        segment_base_offset=base,
        segment_data_size=len(segments),
    ).to_bytes()
    program = _insert_flatbuffer_header(
        flatbuffer, r"ET[0-9a-zA-Z][0-9a-zA-Z]", pad_to(header, header_len)
    )
    return pad_to(program, base) + segments


def _reference_rewrite(data):
    """What the reference writes for the program in `data`."""
    from executorch.exir._serialize._program import deserialize_pte_binary, serialize_pte_binary

    pte = deserialize_pte_binary(data)
    return bytes(serialize_pte_binary(pte, extract_delegate_segments=True))


def _assert_same_outputs(path, original, inputs, expected):
    got = run_forward(path, inputs)
    assert len(got) == len(expected)
    for g, ref in zip(got, original):
        np.testing.assert_array_equal(g, ref)


@pytest.mark.parametrize("name", PROGRAMS)
def test_flatc_laid_out_program(name, ptekit, schema, tmp_path):
    src = CORPUS / f"{name}.pte"
    inputs, expected = recorded_io(src)
    foreign = tmp_path / f"{name}.flatc.pte"
    foreign.write_bytes(_flatc_pte(ptekit, src, schema, tmp_path))
    assert foreign.read_bytes() != src.read_bytes()

    # A valid file: verify passes and the runtime runs it like the original.
    checked = ptekit("verify", foreign, check=False)
    assert checked.returncode == 0, checked.stderr
    original = run_forward(src, inputs)
    for o, e in zip(original, expected):
        np.testing.assert_allclose(o, e, rtol=1e-4, atol=1e-4)
    _assert_same_outputs(foreign, original, inputs, expected)

    # rewrite: the canonical layout, said on stderr and in --json.
    out = tmp_path / f"{name}.rewritten.pte"
    done = ptekit("rewrite", "--json", foreign, out)
    report = json.loads(done.stdout)
    assert report["layout"] == "canonical"
    assert report["reason"].startswith("program bytes are not reproducible by re-packing")
    # The reason names the file's flatbuffer size, with or without an extended header.
    assert re.search(r"the file's flatbuffer (\(no extended header\) )?is \d+ bytes", report["reason"])
    assert report["bytes"] == out.stat().st_size
    assert report["input"] == str(foreign) and report["output"] == str(out)
    assert "wrote the canonical layout" in done.stderr and str(foreign) in done.stderr
    assert report["reason"] in done.stderr

    # The output verifies, runs with the same outputs and is the reference's own file.
    ptekit("verify", out)
    _assert_same_outputs(out, original, inputs, expected)
    assert out.read_bytes() == _reference_rewrite(foreign.read_bytes())

    # Rewriting the output again keeps it byte for byte.
    again = tmp_path / f"{name}.again.pte"
    report = json.loads(ptekit("rewrite", "--json", out, again).stdout)
    assert report["layout"] == "exact" and report["reason"] is None
    assert again.read_bytes() == out.read_bytes()


def test_rewrite_json_of_a_reference_file(ptekit, tmp_path):
    src = CORPUS / "mlp_xnnpack.pte"
    out = tmp_path / "out.pte"
    done = ptekit("rewrite", "--json", src, out)
    assert json.loads(done.stdout) == {
        "input": str(src),
        "output": str(out),
        "layout": "exact",
        "reason": None,
        "bytes": src.stat().st_size,
    }
    assert done.stderr == ""
    assert out.read_bytes() == src.read_bytes()
    # With a layout option: relayout, no reason.
    done = ptekit("rewrite", "--json", src, out, "--segment-alignment", "4096")
    report = json.loads(done.stdout)
    assert (report["layout"], report["reason"]) == ("relayout", None)
    assert report["bytes"] == out.stat().st_size != src.stat().st_size
