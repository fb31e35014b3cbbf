#!/usr/bin/env python3
"""Mutates reference files and checks the contract of `ptekit verify`: every file the
reference runtime (executorch 1.5.1) rejects or aborts on, `verify` rejects too.

    verify_vs_runtime.py [--per-file N] [--seed S] [--files NAME ...] [--keep DIR] [--json]

Mutants of each corpus file (`.pte`, `.bpte`, and the `.ptd` loaded with its program):

- `flip`: one byte of the flatbuffer set to another value (0x00, 0xff, 0x80, 0x7f,
  +1, -1, bit 0 or bit 7 flipped) at a random position (N per file, seeded);
- `negate`, `dtype`, `short`: semantic mutants made through the reference's own object
  model and serializer: one tensor's size negated, its dtype set to an undeclared
  value (99), a test tensor's data cut short (for `.bpte`: test tensors; for `.ptd`: a
  tensor layout; for `.pte`: a tensor value);
- `truncate`: the file cut at a random length.

Each mutant goes through `ptekit verify` and through `scripts/runtime_load.py` (load the
program and every method, or every bundled test case; a `.ptd` with its program). The
runtime's verdict is `ok`, `rejected` (it raised), `aborted` (the process died by a
signal) or `mismatch` (a bundled test ran but its outputs differ: only execution can tell
that, so it is not counted against `verify`). Rejections for a missing operator kernel
(error 0x14: what the wheel's kernel registry lacks, which a file cannot show) are
counted apart, and so are rejections for a backend the runtime has not registered
(error 0x20 with the runtime logging `Backend X is not registered`): a file needs the
backends it names, and which ones a runtime has is fixed when it is built (`verify`
checks the payloads of the backends it knows, XNNPACK, and says which backends a file
needs), and a failed allocation (`std::bad_alloc`) of planned memory when the file
declares more than the machine has (`planned_memory_bytes` of `ptekit verify --json`;
the Python runtime allocates every method's planned buffers at load). Exit status 1 when some file is rejected or aborted on by the runtime but
passes `verify`.
"""

import argparse
import json
import os
import pathlib
import random
import re
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from runtime_load import Loader  # noqa: E402

CORPUS = pathlib.Path(os.environ.get("PTEKIT_CORPUS", ROOT.parent / "shared" / "corpus"))
# A .ptd and the program that uses it.
PROGRAM_OF_PTD = {"external._default_external_constant.ptd": "external.pte"}
DATA_OF_PROGRAM = {v: k for k, v in PROGRAM_OF_PTD.items()}
# Refusals that depend on the runtime's build, not on the file: (error code, what the
# runtime logs, reason). A file names the operators and backends it needs; whether a
# runtime has them is decided when it is built, so `verify` cannot hold it against the
# file (a runtime with that kernel or backend loads it).
ENVIRONMENT = [
    ("0x14", None, "operator missing from the wheel's kernel registry"),
    # A delegate whose backend id the runtime has not registered (or whose backend says it
    # is not available): NotFound before the payload is even read.
    ("0x20", r"Backend (.*) is not (registered|available)", "backend not registered in this runtime"),
]


def ptekit_bin() -> pathlib.Path:
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return pathlib.Path(os.environ.get("PTEKIT_BIN", target / "release" / "ptekit"))


def flatbuffer_end(data: bytes) -> int:
    """End of the flatbuffer: `program_size` of a .pte's eh00 header, the FH01
    flatbuffer end of a .ptd, the whole file otherwise."""
    if data[8:12] == b"eh00":
        return min(len(data), int.from_bytes(data[16:24], "little"))
    if data[8:12] == b"FH01":
        return min(len(data), 48 + int.from_bytes(data[24:32], "little"))
    return len(data)


def flips(data: bytes, n: int, rng: random.Random):
    end = flatbuffer_end(data)
    for _ in range(n):
        at = rng.randrange(0, end)
        old = data[at]
        new = rng.choice([0x00, 0xFF, 0x80, 0x7F, (old + 1) & 0xFF, (old - 1) & 0xFF, old ^ 1, old ^ 0x80])
        if new == old:
            new = old ^ 0x40
        yield f"flip@{at}={new:#04x}", data[:at] + bytes([new]) + data[at + 1:]


def truncations(data: bytes, n: int, rng: random.Random):
    for _ in range(n):
        at = rng.randrange(8, len(data))
        yield f"truncate@{at}", data[:at]


def _pte_semantic(data: bytes):
    """Tensor values of a program with a negated size, an undeclared dtype, or (for a
    constant) data cut short, re-serialized by the reference."""
    from executorch.exir._serialize._program import deserialize_pte_binary, serialize_pte_binary
    from executorch.exir.schema import Tensor

    def mutate(kind):
        pte = deserialize_pte_binary(data)
        for plan in pte.program.execution_plan:
            for v in plan.values:
                t = v.val
                if not isinstance(t, Tensor) or not t.sizes:
                    continue
                if kind == "negate" and any(s > 0 for s in t.sizes):
                    i = next(i for i, s in enumerate(t.sizes) if s > 0)
                    t.sizes[i] = -t.sizes[i]
                    return pte
                if kind == "dtype":
                    t.scalar_type = 99
                    return pte
                if kind == "grow" and t.data_buffer_idx > 0 and t.allocation_info is None:
                    # A constant claiming more elements than its data has.
                    t.sizes[0] = t.sizes[0] * 1000 + 1
                    return pte
        return None

    for kind in ("negate", "dtype", "grow"):
        try:
            pte = mutate(kind)
            if pte is not None:
                yield kind, bytes(serialize_pte_binary(pte_file=pte))
        except Exception as e:  # noqa: BLE001 - the reference may refuse to write it
            print(f"  (reference did not write a {kind} mutant: {type(e).__name__}: {e})", file=sys.stderr)


def _bpte_semantic(data: bytes):
    # The schema-level writer the reference's serialize_from_bundled_program_to_flatbuffer
    # ends in (the public one starts from the exporter's BundledProgram object).
    from executorch.devtools.bundled_program.serialize import (
        _bundled_program_schema_to_flatbuffer,
        deserialize_from_flatbuffer_to_bundled_program,
    )

    def first_tensor(bp, outputs=False):
        for suite in bp.method_test_suites:
            for case in suite.test_cases:
                values = case.expected_outputs if outputs else case.inputs
                for v in values:
                    if hasattr(v.val, "sizes") and v.val.sizes:
                        return v.val
        return None

    for kind, outputs in (("negate", False), ("dtype", False), ("short", False), ("short-out", True), ("dtype-out", True)):
        bp = deserialize_from_flatbuffer_to_bundled_program(data)
        t = first_tensor(bp, outputs)
        if t is None:
            continue
        if kind == "negate":
            t.sizes[0] = -max(1, t.sizes[0])
        elif kind.startswith("dtype"):
            t.scalar_type = 99
        else:
            t.data = t.data[: len(t.data) // 2]
        try:
            yield kind, bytes(_bundled_program_schema_to_flatbuffer(bp))
        except Exception as e:  # noqa: BLE001
            print(f"  (reference did not write a {kind} mutant: {type(e).__name__}: {e})", file=sys.stderr)


def _ptd_semantic(data: bytes):
    from executorch.extension.flat_tensor.serialize.serialize import FlatTensorSerializer

    for kind in ("negate", "dtype", "short"):
        s = FlatTensorSerializer()
        payload = s.deserialize(data)
        entry = next((e for e in payload.named_data.values() if e.tensor_layout is not None and e.tensor_layout.sizes), None)
        if entry is None:
            return
        layout = entry.tensor_layout
        if kind == "negate":
            layout.sizes[0] = -max(1, layout.sizes[0])
        elif kind == "dtype":
            layout.scalar_type = 99
        else:
            layout.sizes[0] = layout.sizes[0] * 1000 + 1
        try:
            yield kind, bytes(s.serialize(payload))
        except Exception as e:  # noqa: BLE001
            print(f"  (reference did not write a {kind} mutant: {type(e).__name__}: {e})", file=sys.stderr)


def semantic(path: pathlib.Path, data: bytes):
    kind = data[4:8]
    if kind == b"BP08":
        return _bpte_semantic(data)
    if kind == b"FT01":
        return _ptd_semantic(data)
    return _pte_semantic(data)


def make_mutants(files, out_dir: pathlib.Path, per_file: int, seed: int, semantic_mutants=True):
    """Writes the mutants of `files` into `out_dir`; returns the runtime jobs."""
    jobs = []
    for path in files:
        data = path.read_bytes()
        rng = random.Random(f"{seed}:{path.name}")
        muts = list(flips(data, per_file, rng)) + list(truncations(data, max(1, per_file // 8), rng))
        if semantic_mutants:
            muts += list(semantic(path, data))
        for what, mutant in muts:
            if mutant == data:
                continue
            name = f"{path.stem}.{re.sub(r'[^A-Za-z0-9@=_-]', '_', what)}{path.suffix}"
            target = out_dir / name
            target.write_bytes(mutant)
            job = {"path": str(target), "source": path.name, "mutation": what}
            if path.name in PROGRAM_OF_PTD:
                job["program"] = str(CORPUS / PROGRAM_OF_PTD[path.name])
            if path.name in DATA_OF_PROGRAM:
                job["data"] = str(CORPUS / DATA_OF_PROGRAM[path.name])
            jobs.append(job)
    return jobs


def verify(job) -> tuple:
    """`ptekit verify --json` of the job: (ok, stderr, what it reported)."""
    args = [str(ptekit_bin()), "verify", "--json", job["path"]]
    if job.get("data"):
        args += ["--data", job["data"]]
    if job.get("program"):
        # A .ptd is verified on its own, and with the program that uses it.
        r = subprocess.run([str(ptekit_bin()), "verify", job["program"], "--data", job["path"]], capture_output=True, text=True)
        if r.returncode != 0:
            return False, r.stderr.strip(), {}
    r = subprocess.run(args, capture_output=True, text=True)
    try:
        checked = json.loads(r.stdout)
    except ValueError:
        checked = {}
    return r.returncode == 0, r.stderr.strip(), checked


def machine_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def environment_reason(detail: str, log: str = "", checked=None):
    """Why a rejection with `detail` (the runtime's error) and `log` (its log lines) is
    the environment's, or None. `checked` is what `ptekit verify --json` reported."""
    planned = (checked or {}).get("planned_memory_bytes", 0)
    if "bad_alloc" in detail and planned > machine_memory():
        # The Python runtime allocates every method's planned buffers when it loads the
        # program; a file may declare more than this machine has.
        return f"planned memory larger than this machine's: {planned} bytes > {machine_memory()}"
    for code, logged, reason in ENVIRONMENT:
        # "error: 0x:20" (load_method), "status 0x20" (bundled execution)
        if not re.search(rf"0x:?{code[2:]}\b", detail):
            continue
        if logged is None:
            return reason
        m = re.search(logged, log)
        if m:
            return f"{reason}: {m.group(0)}"
    return None


def run(jobs, python=sys.executable):
    """Runs every job through the runtime and `ptekit verify`; returns the results."""
    loader = Loader(python)
    results = []
    try:
        for job in jobs:
            r = loader.load(job)
            r["verify_ok"], r["verify_error"], checked = verify(job)
            r["environment"] = (
                environment_reason(r.get("detail", ""), r.get("log", ""), checked)
                if r["outcome"] == "rejected"
                else None
            )
            results.append(r)
    finally:
        loader.close()
    return results


def misses(results):
    """Files the runtime rejects or aborts on (for reasons a file shows) that verify passes."""
    return [
        r
        for r in results
        if r["outcome"] in ("rejected", "aborted") and not r["environment"] and r["verify_ok"]
    ]


def summarize(results) -> dict:
    table = {}
    for r in results:
        # The reason up to its first colon: the kind, without the names and numbers.
        runtime = r["outcome"] + (f" (environment: {r['environment'].split(':')[0]})" if r["environment"] else "")
        key = f"runtime {runtime} / verify {'ok' if r['verify_ok'] else 'rejects'}"
        table[key] = table.get(key, 0) + 1
    return dict(sorted(table.items()))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-file", type=int, default=200, help="byte flips per file (default 200)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--files", nargs="*", help="corpus file names (default: every .pte, .bpte, .ptd)")
    ap.add_argument("--keep", help="write the mutants here and keep them")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.files:
        files = [CORPUS / f for f in args.files]
    else:
        files = sorted(CORPUS.glob("*.pte")) + sorted(CORPUS.glob("*.bpte")) + sorted(CORPUS.glob("*.ptd"))
    with tempfile.TemporaryDirectory(prefix="verify-vs-runtime-") as tmp:
        out = pathlib.Path(args.keep or tmp)
        out.mkdir(parents=True, exist_ok=True)
        jobs = make_mutants(files, out, args.per_file, args.seed)
        print(f"{len(jobs)} mutants of {len(files)} files", file=sys.stderr)
        results = run(jobs)
    missed = misses(results)
    if args.json:
        print(json.dumps({"summary": summarize(results), "missed": missed}, indent=1))
    else:
        for k, v in summarize(results).items():
            print(f"{v:6}  {k}")
        for r in missed:
            logged = r.get("log", "").splitlines()
            print(f"MISSED {r['source']} {r['mutation']}: runtime {r['outcome']} {r['detail']}")
            if logged:
                print(f"       runtime log: {logged[-1]}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
