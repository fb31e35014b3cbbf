"""`ptekit verify` passes no file that the reference runtime (executorch 1.5.1) rejects or
aborts on: mutants of corpus files (byte flips in the flatbuffer, truncations, and
semantic mutants written by the reference's own serializers) go through both, the runtime
in a child process (`scripts/runtime_load.py`). A bounded, seeded set; run
`scripts/verify_vs_runtime.py` for the large one."""

import subprocess
import sys

import pytest

from conftest import CORPUS, ROOT

sys.path.insert(0, str(ROOT / "scripts"))

import verify_vs_runtime as vvr  # noqa: E402

FILES = ["add.pte", "mlp.pte", "mlp.bpte", "external.pte", "external._default_external_constant.ptd"]


@pytest.fixture(scope="module")
def results(tmp_path_factory, ptekit):
    out = tmp_path_factory.mktemp("mutants")
    jobs = vvr.make_mutants([CORPUS / f for f in FILES], out, per_file=6, seed=7)
    return vvr.run(jobs)


def _find(results, source, mutation):
    found = [r for r in results if r["source"] == source and r["mutation"] == mutation]
    assert found, f"no {mutation} mutant of {source}"
    return found[0]


def test_no_file_the_runtime_refuses_passes_verify(results):
    missed = vvr.misses(results)
    assert not missed, "\n".join(
        f"{r['source']} {r['mutation']}: runtime {r['outcome']} {r['detail']}" for r in missed
    )
    # The set reaches both kinds of runtime failure, and files the runtime accepts.
    outcomes = {r["outcome"] for r in results}
    assert {"ok", "rejected", "aborted"} <= outcomes, vvr.summarize(results)


@pytest.mark.parametrize(
    "source,mutation",
    [
        # A negative size in a program tensor: the runtime refuses the method.
        ("mlp.pte", "negate"),
        ("mlp.pte", "dtype"),
        # A constant whose sizes need more bytes than its segment entry has.
        ("mlp.pte", "grow"),
        # Bundled test tensors: the runtime aborts on a negative size or an unknown dtype.
        ("mlp.bpte", "negate"),
        ("mlp.bpte", "dtype"),
        ("mlp.bpte", "dtype-out"),
        # A .ptd tensor layout with an unknown dtype, a negative size, more elements
        # than its segment holds.
        ("external._default_external_constant.ptd", "dtype"),
        ("external._default_external_constant.ptd", "negate"),
        ("external._default_external_constant.ptd", "short"),
    ],
)
def test_semantic_mutants_fail_in_both(results, source, mutation):
    r = _find(results, source, mutation)
    assert r["outcome"] in ("rejected", "aborted"), r
    assert not r["verify_ok"], r


def test_short_bundled_test_data_is_refused(results):
    # The runtime copies numel * itemsize bytes from the test data without looking at its
    # length: it reads past the data (here the outputs then differ, or it aborts).
    r = _find(results, "mlp.bpte", "short")
    assert r["outcome"] in ("rejected", "aborted", "mismatch"), r
    assert not r["verify_ok"] and "need" in r["verify_error"], r


def test_legacy_inline_constants_is_refused_like_the_runtime_and_upgrade_fixes_it(ptekit, tmp_path):
    src = CORPUS / "legacy_inline_constants.pte"
    loaded = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "runtime_load.py"), str(src)], capture_output=True, text=True
    )
    assert "rejected" in loaded.stdout, loaded.stdout
    v = ptekit("verify", src, check=False)
    assert v.returncode == 1 and "constant_buffer (file offset 0x" in v.stderr, v.stderr
    out = tmp_path / "upgraded.pte"
    ptekit("rewrite", src, out, "--upgrade")
    ptekit("verify", out)


def test_bundled_rewrite_refuses_a_bundle_verify_refuses(results, ptekit, tmp_path):
    r = _find(results, "mlp.bpte", "negate")
    rewritten = ptekit("rewrite", r["path"], tmp_path / "out.bpte", check=False)
    assert rewritten.returncode == 1, rewritten.stderr
    assert "sizes[0]" in rewritten.stderr and "negative size" in rewritten.stderr
    assert not (tmp_path / "out.bpte").exists()
