"""Shared fixtures for ptekit's Python tests: where the corpus, fixtures and binary are."""

import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
CORPUS = pathlib.Path(os.environ.get("PTEKIT_CORPUS", ROOT.parent / "shared" / "corpus"))
FIXTURES = ROOT / "tests" / "fixtures"


def ptekit_bin() -> pathlib.Path:
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    path = pathlib.Path(os.environ.get("PTEKIT_BIN", target / "release" / "ptekit"))
    if not path.exists():
        subprocess.run(["cargo", "build", "--release", "-p", "ptekit-cli"], cwd=ROOT, check=True)
    return path


def program_files():
    """Every .pte of the corpus and of the project's fixtures."""
    files = sorted(CORPUS.glob("*.pte")) + sorted(FIXTURES.glob("*.pte"))
    assert files, f"no .pte files under {CORPUS} or {FIXTURES}"
    return files


@pytest.fixture(scope="session")
def ptekit():
    exe = ptekit_bin()

    def run(*args, check=True):
        return subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, check=check)

    return run
