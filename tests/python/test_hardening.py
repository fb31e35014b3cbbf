"""Python readers given something that is not a regular file (issue 12, item 8): they
refuse it with an OSError naming the path, instead of blocking on a FIFO forever."""

import os
import subprocess
import sys

import pytest

from conftest import CORPUS

# Run in a child process: a reader that blocks must fail the test, not hang pytest.
_CHILD = r"""
import sys, ptekit
try:
    ptekit.deserialize_pte_binary(sys.argv[1])
except OSError as e:
    print(type(e).__name__, e)
    sys.exit(0)
sys.exit("no error")
"""


def _read_in_child(path):
    try:
        return subprocess.run(
            [sys.executable, "-c", _CHILD, str(path)], capture_output=True, text=True, timeout=120
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"deserialize_pte_binary({path}) still blocked after 120 s")


def test_fifo_is_refused(tmp_path):
    fifo = tmp_path / "model.pte"
    os.mkfifo(fifo)
    done = _read_in_child(fifo)
    assert done.returncode == 0, done.stderr
    assert f"{fifo}: a FIFO (named pipe), not a regular file" in done.stdout


def test_directory_and_device_are_refused(tmp_path):
    import ptekit

    with pytest.raises(IsADirectoryError, match="a directory, not a regular file"):
        ptekit.deserialize_pte_binary(tmp_path)
    with pytest.raises(OSError, match="a character device, not a regular file"):
        ptekit.deserialize_pte_binary("/dev/zero")
    # A regular file still reads (the path form maps it).
    assert ptekit.deserialize_pte_binary(CORPUS / "add.pte").program is not None
