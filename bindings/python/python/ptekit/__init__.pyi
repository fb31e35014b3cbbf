"""Type stubs of ptekit (see the module docstring of ptekit/__init__.py)."""

import io
import os
from typing import Any, Optional, Union

StrPath = Union[str, "os.PathLike[str]"]

class PteError(ValueError):
    """A program or file ptekit cannot serialize or deserialize; the message names the
    field path or file offset concerned."""

class PteBinary:
    """A serialized .pte file, streamed from its pieces (weights are borrowed from the
    objects it was serialized from). Usable like the reference's `Cord`."""

    def __len__(self) -> int:
        """The file size in bytes."""
    def __bytes__(self) -> bytes:
        """The whole file as one bytes object."""
    def to_bytes(self) -> bytes:
        """The whole file as bytes (same as `bytes(self)`)."""
    def write_to_file(self, outfile: io.BufferedIOBase) -> None:
        """Writes the file to a binary file object, in chunks of at most 8 MiB."""
    def write(self, path: StrPath) -> int:
        """Writes the file to `path` atomically; returns the number of bytes written."""
    @property
    def flatbuffer_size(self) -> int:
        """Size of the packed program flatbuffer (without header and segments)."""

def serialize_pte_binary(
    pte_file: Any,
    *,
    extract_delegate_segments: bool = False,
    segment_alignment: int = 128,
    constant_tensor_alignment: Optional[int] = None,
    delegate_alignment: Optional[int] = None,
) -> PteBinary:
    """Serializes the reference's `PTEFile` exactly like
    `executorch.exir._serialize._program.serialize_pte_binary`; never modifies it."""

def write_pte(
    path: StrPath,
    pte_file: Any,
    *,
    extract_delegate_segments: bool = False,
    segment_alignment: int = 128,
    constant_tensor_alignment: Optional[int] = None,
    delegate_alignment: Optional[int] = None,
) -> int:
    """Serializes like `serialize_pte_binary` and writes to `path` atomically; returns
    the number of bytes written."""

def deserialize_pte_binary(data: Union[bytes, bytearray, memoryview, StrPath]) -> Any:
    """Parses a .pte file (bytes-like or path) into the reference's `PTEFile`, equal to
    what `executorch.exir._serialize._program.deserialize_pte_binary` returns."""

def install() -> None:
    """Routes the exporter's serialize/deserialize calls through ptekit."""

def uninstall() -> None:
    """Restores the reference's functions everywhere `install()` replaced them."""

def installed() -> bool:
    """Whether `install()` is in effect."""
