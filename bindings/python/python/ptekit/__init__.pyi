"""Type stubs of ptekit (see the module docstring of ptekit/__init__.py)."""

import io
import os
from typing import Any, Dict, List, Optional, Protocol, Union

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

def serialize_from_bundled_program_to_flatbuffer(bundled_program: Any) -> bytes:
    """Packs the reference's `BundledProgram` (or its schema form) into `.bpte` bytes
    identical to `executorch.devtools.bundled_program.serialize`'s."""

def write_bundled_program(out: Union[StrPath, io.BufferedIOBase], bundled_program: Any) -> int:
    """Writes the `.bpte` file streamed (never assembled) to a path (atomically) or a
    binary file object; returns the number of bytes written."""

def deserialize_from_flatbuffer_to_bundled_program(
    flatbuffer: Union[bytes, bytearray, memoryview],
) -> Any:
    """Parses a `.bpte` into the reference's schema `BundledProgram`, equal to the
    reference's result (doubles rounded to 12 decimals like its flatc JSON path)."""

class FlatTensorBinary:
    """A serialized .ptd file. Usable like the reference's `Cord`."""

    def __len__(self) -> int:
        """The file size in bytes."""
    def __bytes__(self) -> bytes:
        """The whole file as one bytes object."""
    def to_bytes(self) -> bytes:
        """The whole file as bytes (same as `bytes(self)`)."""
    def write_to_file(self, outfile: io.BufferedIOBase) -> None:
        """Writes the file to a binary file object, in chunks of at most 8 MiB."""

class _SegmentAlignmentConfig(Protocol):
    segment_alignment: int

class FlatTensorSerializer:
    """Drop-in for executorch's `FlatTensorSerializer` (`.ptd` files)."""

    config: _SegmentAlignmentConfig

    def __init__(self, config: Optional[_SegmentAlignmentConfig] = None) -> None:
        """`config`: the reference's `FlatTensorConfig` (default: alignment 128)."""
    def serialize(self, data: Any) -> FlatTensorBinary:
        """Serializes the reference's `DataPayload`, byte-identical to the reference."""
    def deserialize(self, blob: Any) -> Any:
        """Parses a `.ptd` (bytes-like, `FlatTensorBinary` or `Cord`) into the
        reference's `DataPayload`, equal to the reference's result."""
    def deserialize_to_named_data_store_output(self, blob: Any, name: str) -> Any:
        """`deserialize` as a `NamedDataStoreOutput` with the entries under `name`."""

def install() -> None:
    """Routes the exporter's serialize/deserialize calls (`.pte`, `.bpte`, `.ptd`)
    through ptekit."""

def uninstall() -> None:
    """Restores the reference's functions everywhere `install()` replaced them."""

def installed() -> bool:
    """Whether `install()` is in effect."""

__version__: str

def inspect(data: Union[bytes, bytearray, memoryview, StrPath], top: int = 0) -> Dict[str, Any]: ...

def verify(
    data: Union[bytes, bytearray, memoryview, StrPath],
    ptd: Union[None, bytes, bytearray, memoryview, StrPath] = None,
) -> Dict[str, Any]: ...

class _SafeOpen:
    def __enter__(self) -> "_SafeOpen": ...
    def __exit__(self, *exc: object) -> bool: ...
    def close(self) -> None: ...
    def keys(self) -> List[str]: ...
    def info(self, name: str) -> Dict[str, Any]: ...
    def get_tensor(self, name: str) -> Any: ...
    def __contains__(self, name: object) -> bool: ...
    def __len__(self) -> int: ...

def safe_open(path: StrPath, framework: str = "np", device: str = "cpu") -> _SafeOpen: ...
