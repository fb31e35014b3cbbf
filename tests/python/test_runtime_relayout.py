"""Files rewritten by `ptekit rewrite` with other layouts load and run in the reference
runtime (executorch 1.5.1) and give the same outputs as the original file."""

import numpy as np
import pytest
from executorch.runtime import Runtime

from conftest import program_files
from runtime_io import recorded_io as _io
from runtime_io import run_forward as _run

# The 1.5.1 runtime refuses the legacy inline-constant layout (it is only parsed, and
# `--upgrade` is what makes it loadable), and `external` needs its .ptd beside it.
NOT_LOADABLE = {"legacy_inline_constants", "external"}

LAYOUTS = {
    "seg16k": ["--segment-alignment", "16384"],
    "seg4k_t64": ["--segment-alignment", "4096", "--tensor-alignment", "64"],
    "t32_d256": ["--tensor-alignment", "32", "--delegate-alignment", "256"],
    "upgrade": ["--upgrade"],
}


CASES = [
    pytest.param(f, layout, id=f"{f.parent.name}/{f.stem}-{layout}")
    for f in program_files()
    if f.stem not in NOT_LOADABLE and _io(f) is not None
    for layout in LAYOUTS
]


@pytest.mark.parametrize("path,layout", CASES)
def test_rewritten_file_runs_with_same_outputs(path, layout, ptekit, tmp_path):
    inputs, expected = _io(path)
    out = tmp_path / f"{path.stem}.{layout}.pte"
    ptekit("rewrite", path, out, *LAYOUTS[layout])
    ptekit("verify", out)
    original = _run(path, inputs)
    rewritten = _run(out, inputs)
    assert len(rewritten) == len(expected)
    for got, ref, eager in zip(rewritten, original, expected):
        np.testing.assert_array_equal(got, ref)
        np.testing.assert_allclose(got, eager, rtol=1e-4, atol=1e-4)


def test_upgrade_makes_legacy_inline_constants_loadable(ptekit, tmp_path):
    from conftest import CORPUS

    src = CORPUS / "legacy_inline_constants.pte"
    inputs, expected = _io(src)
    with pytest.raises(RuntimeError):
        Runtime.get().load_program(str(src))
    out = tmp_path / "upgraded.pte"
    ptekit("rewrite", src, out, "--upgrade")
    got = _run(out, inputs)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-4)
