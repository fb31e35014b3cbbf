"""ptekit without torch and executorch: in a virtual environment with only NumPy and the
ptekit wheel (made by scripts/setup-notorch-venv.sh), `import ptekit` imports neither,
`ptekit.__version__` is the CLI's version, and `ptekit.inspect`, `ptekit.verify` and
`ptekit.safe_open` give exactly what they give in the reference environment (where
tests/python/test_readers.py checks them against executorch's own readers)."""

import json
import os
import subprocess
import sys

import pytest

from conftest import CORPUS, FIXTURES, ROOT, program_files

PROBE = r"""
import hashlib, importlib.util, json, sys
if sys.argv[1] == "--no-torch":
    assert importlib.util.find_spec("torch") is None, "torch is installed"
    assert importlib.util.find_spec("executorch") is None, "executorch is installed"
import ptekit
out = {"version": ptekit.__version__, "files": {}}
for path in sys.argv[2:]:
    try:
        verdict = ptekit.verify(path)
    except ptekit.PteError as e:  # a file the runtime refuses (e.g. legacy inline constants)
        verdict = {"error": str(e)}
    entry = {"inspect": ptekit.inspect(path), "top": ptekit.inspect(path, top=3), "verify": verdict}
    tensors = {}
    with ptekit.safe_open(path) as f:
        for name in f.keys():
            a = f.get_tensor(name)
            tensors[name] = [str(a.dtype), list(a.shape), hashlib.sha256(a.tobytes()).hexdigest(),
                             bool(a.flags.owndata)]
    entry["tensors"] = tensors
    out["files"][path] = entry
out["loaded"] = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "executorch"))
print(json.dumps(out))
"""


def _probe(python, flag, paths):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([python, "-c", PROBE, flag, *paths], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _files():
    files = program_files() + sorted(CORPUS.glob("*.bpte")) + sorted(CORPUS.glob("*.ptd"))
    return [str(p) for p in files + sorted(FIXTURES.glob("*.bpte")) + sorted(FIXTURES.glob("*.ptd"))]


@pytest.fixture(scope="module")
def notorch_python():
    script = ROOT / "scripts" / "setup-notorch-venv.sh"
    r = subprocess.run([str(script)], capture_output=True, text=True, cwd=ROOT)
    if r.returncode != 0:
        pytest.skip(f"cannot create the no-torch venv (scripts/setup-notorch-venv.sh): {r.stderr[-2000:]}")
    return r.stdout.strip().splitlines()[-1]


def test_readers_without_torch_match_the_reference_environment(ptekit, notorch_python):
    paths = _files()
    there = _probe(notorch_python, "--no-torch", paths)
    here = _probe(sys.executable, "--reference", paths)
    assert there.pop("loaded") == [] and here.pop("loaded") == []
    assert there == here
    assert there["version"] == ptekit("--version").stdout.split()[-1]
    # Arrays are views of the map, not copies.
    views = [t[3] for f in there["files"].values() for t in f["tensors"].values()]
    assert views and not any(views)


def test_import_does_not_load_torch_numpy_or_executorch():
    code = "import sys, ptekit; print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'executorch', 'numpy')))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]"
