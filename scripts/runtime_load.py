#!/usr/bin/env python3
"""Loads ExecuTorch files in the reference runtime (executorch 1.5.1) and reports, per
file, whether the runtime accepts it, rejects it (an error it raises) or aborts on it (the
process dies by a signal).

    runtime_load.py FILE [FILE ...] [--data FILE.ptd] [--json]
    runtime_load.py --batch < LIST          (one JSON object per line; see below)

What "load" means, by the identifier at bytes 4..8:

- a program (`ET12`): `Runtime.load_program(FILE, data_path=PTD)`, then `load_method` for
  every method (which parses every value, tensor and instruction of the method);
- a bundled program (`BP08`): the wheel's bundled API (`_load_bundled_program_from_buffer`,
  `_load_for_executorch_from_bundled_program`), then every test case of every method with
  `verify_result_with_bundled_expected_output` (loads the test inputs, executes, compares
  with the expected outputs); a case whose outputs differ is reported as `mismatch`, not
  as a rejection (only execution can tell);
- tensor data (`FT01`): the runtime reads a `.ptd` only for a program, so `--program
  PROGRAM.pte` names the program that uses it, loaded with the `.ptd` as its data.

Every file is loaded in a child process, so an abort (SIGABRT, SIGSEGV, ...) of the
runtime is reported instead of ending the run. In `--batch` mode one child loads many
files in turn (importing the runtime takes seconds) and is restarted after an abort; the
input lines are JSON objects `{"path": ..., "data": ..., "program": ...}` and every output
line is the input object plus `"outcome"` (`ok`, `rejected`, `mismatch`, `aborted`) and
`"detail"` (the error message or the signal name) and `"log"` (what the runtime wrote
on stderr while loading the file: its `ET_LOG` lines, which say why it refused).
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile

CHILD_FLAG = "--child"


def _child() -> None:
    """Loads the files named on stdin, one JSON object per line; prints one result line
    per file, flushed before the next file starts."""
    import logging

    logging.disable(logging.CRITICAL)
    from et_runtime import import_runtime

    Runtime = import_runtime().Runtime
    import executorch.extension.pybindings.portable_lib as lib

    runtime = Runtime.get()
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        job = json.loads(line)
        # Announce the file first: if the process dies, the parent knows which file did it.
        print(json.dumps({"start": job["path"]}), flush=True)
        try:
            outcome, detail = _load(runtime, lib, job)
        except Exception as e:  # noqa: BLE001 - every error of the runtime is a rejection
            outcome, detail = "rejected", f"{type(e).__name__}: {e}"
        print(json.dumps({**job, "outcome": outcome, "detail": detail}), flush=True)


def _kind(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read(8)[4:8]


def _load(runtime, lib, job):
    path, data = job["path"], job.get("data")
    kind = _kind(path)
    if kind == b"FT01":
        program = job.get("program")
        if program is None:
            return "rejected", "a .ptd is loaded with the program that uses it (--program)"
        path, data = program, path
        kind = _kind(path)
    if kind == b"BP08":
        return _load_bundled(lib, path)
    program = runtime.load_program(path, data_path=data)
    for name in sorted(program.method_names):
        program.load_method(name)
    return "ok", ""


def _load_bundled(lib, path):
    with open(path, "rb") as f:
        bundle = lib._load_bundled_program_from_buffer(f.read())
    module = lib._load_for_executorch_from_bundled_program(bundle)
    cases = 0
    for name in sorted(module.method_names()):
        index = 0
        while True:
            try:
                bundle.verify_result_with_bundled_expected_output(name, index)
            except RuntimeError as e:
                text = str(e)
                if "out of range" in text or "0x12" in text and index > 0:
                    break
                if "verification failed" in text.lower():
                    return "mismatch", f"{name}[{index}]: {text}"
                if "No method named" in text or ("0x12" in text and index == 0):
                    # The bundle has no suite for this method.
                    break
                raise
            index += 1
            cases += 1
    return "ok", f"{cases} test case(s)"


class Loader:
    """A child process loading files in turn; restarted after it dies."""

    def __init__(self, python=sys.executable):
        self.python = python
        self.proc = None
        # The child's stderr: the runtime logs why it refuses a file there.
        self.log = tempfile.TemporaryFile()

    def _start(self):
        self.proc = subprocess.Popen(
            [self.python, os.path.abspath(__file__), CHILD_FLAG],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            bufsize=1,
        )
        ready = self.proc.stdout.readline()
        if not ready:
            raise RuntimeError("the runtime child did not start (is executorch installed?)")

    def load(self, job: dict) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        log_start = self.log.seek(0, os.SEEK_END)
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        started = False
        while True:
            line = self.proc.stdout.readline()
            if not line:
                code = self.proc.wait()
                self.proc = None
                if code < 0:
                    detail = signal.Signals(-code).name
                else:
                    detail = f"exit status {code}"
                return {**job, "outcome": "aborted", "detail": detail, "log": self._log_since(log_start)}
            msg = json.loads(line)
            if "start" in msg:
                started = True
                continue
            if started and "outcome" in msg:
                return {**msg, "log": self._log_since(log_start)}

    def _log_since(self, start: int) -> str:
        """The runtime's log lines (`[file.cpp:N] ...`) written since `start`."""
        self.log.seek(start)
        text = self.log.read().decode("utf-8", "replace")
        return "\n".join(line for line in text.splitlines() if re.match(r"\[\w+\.\w+:\d+\]", line))

    def close(self):
        if self.proc is not None:
            self.proc.stdin.close()
            self.proc.wait()
            self.proc = None
        self.log.close()


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == CHILD_FLAG:
        _child()
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="*")
    ap.add_argument("--data", help="the .ptd a program's external tensors come from")
    ap.add_argument("--program", help="for a .ptd: the program that uses it")
    ap.add_argument("--json", action="store_true", help="one JSON object per file")
    ap.add_argument("--batch", action="store_true", help="read jobs as JSON lines on stdin")
    args = ap.parse_args()
    if args.batch:
        jobs = (json.loads(line) for line in sys.stdin if line.strip())
    else:
        jobs = ({"path": f, "data": args.data, "program": args.program} for f in args.files)
    loader = Loader()
    worst = 0
    try:
        for job in jobs:
            result = loader.load(job)
            if args.json or args.batch:
                print(json.dumps(result), flush=True)
            else:
                print(f"{result['path']}: {result['outcome']} {result['detail']}".rstrip())
            worst = max(worst, 0 if result["outcome"] == "ok" else 1)
    finally:
        loader.close()
    return worst


if __name__ == "__main__":
    sys.exit(main())
