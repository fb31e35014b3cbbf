"""ptekit: a fast drop-in for the ExecuTorch exporter's ``.pte`` serialization.

The functions mirror ``executorch.exir._serialize._program`` (executorch 1.5.1) and
produce the same bytes, implemented in Rust:

- :func:`serialize_pte_binary` takes the reference's ``PTEFile`` and returns a
  :class:`PteBinary` usable wherever the reference's ``Cord`` is (``bytes(x)``,
  ``len(x)``, ``x.write_to_file(f)``);
- :func:`write_pte` serializes straight to a file, atomically;
- :func:`deserialize_pte_binary` returns the reference's ``PTEFile`` dataclasses;
- :func:`install` / :func:`uninstall` route the exporter's own calls through ptekit.

Errors in the input raise :class:`PteError` (a ``ValueError``) naming the field path.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any, Dict, List, Optional, Tuple, Union

from . import _native
from ._native import PteBinary, PteError

__all__ = [
    "PteBinary",
    "PteError",
    "deserialize_pte_binary",
    "install",
    "installed",
    "serialize_pte_binary",
    "uninstall",
    "write_pte",
]

_REFERENCE_HINT = (
    "ptekit.deserialize_pte_binary returns executorch's dataclasses, so it needs the "
    "executorch package: pip install executorch==1.5.1"
)


def serialize_pte_binary(
    pte_file: Any,
    *,
    extract_delegate_segments: bool = False,
    segment_alignment: int = 128,
    constant_tensor_alignment: Optional[int] = None,
    delegate_alignment: Optional[int] = None,
) -> PteBinary:
    """Serialize a ``PTEFile`` to the ``.pte`` format, byte-identical to executorch.

    Same signature and semantics as
    ``executorch.exir._serialize._program.serialize_pte_binary``.

    Args:
        pte_file: the reference's ``PTEFile`` (``program``, ``mutable_data``,
            ``named_data``). Read directly, never modified; weight bytes are borrowed
            (``bytes``, or any C-contiguous buffer), not copied.
        extract_delegate_segments: move delegate blobs out of the flatbuffer into
            segments (identical blobs share one).
        segment_alignment: alignment of every segment (and of the segment base).
        constant_tensor_alignment: alignment of constant tensors (power of 2; default 16).
        delegate_alignment: alignment of inline delegate data (power of 2; default 16).

    Returns:
        A :class:`PteBinary`: ``bytes(x)``, ``len(x)``, ``x.write_to_file(f)``.

    Raises:
        PteError: a value does not fit the schema (the message names its field path),
            or the options are invalid.
    """
    return _native.serialize_pte_binary(
        pte_file,
        extract_delegate_segments=extract_delegate_segments,
        segment_alignment=segment_alignment,
        constant_tensor_alignment=constant_tensor_alignment,
        delegate_alignment=delegate_alignment,
    )


def write_pte(
    path: Union[str, "os.PathLike[str]"],
    pte_file: Any,
    *,
    extract_delegate_segments: bool = False,
    segment_alignment: int = 128,
    constant_tensor_alignment: Optional[int] = None,
    delegate_alignment: Optional[int] = None,
) -> int:
    """Serialize ``pte_file`` like :func:`serialize_pte_binary` and write it to ``path``.

    The file is streamed (never assembled in memory) into a temporary file next to
    ``path``, synced and renamed over ``path``: readers see the old file or the whole
    new one. Returns the number of bytes written.

    Raises:
        PteError: as :func:`serialize_pte_binary`.
        OSError: the file cannot be written.
    """
    return _native.write_pte(
        os.fspath(path),
        pte_file,
        extract_delegate_segments=extract_delegate_segments,
        segment_alignment=segment_alignment,
        constant_tensor_alignment=constant_tensor_alignment,
        delegate_alignment=delegate_alignment,
    )


_classes_cache: Optional[Dict[str, Any]] = None


def _reference_classes() -> Dict[str, Any]:
    """The reference's dataclasses and enums by name (imported on first use)."""
    global _classes_cache
    if _classes_cache is not None:
        return _classes_cache
    try:
        from executorch.exir import schema
        from executorch.exir._serialize._named_data_store import NamedDataStoreOutput
        from executorch.exir._serialize._program import PTEFile
        from executorch.exir._serialize.data_serializer import DataEntry
        from executorch.exir.backend.compile_spec_schema import CompileSpec
        from executorch.exir.scalar_type import ScalarType
    except ImportError as e:
        raise ImportError(_REFERENCE_HINT) from e
    names = [
        "Program", "ExecutionPlan", "ContainerMetadata", "EValue", "Tensor", "Null", "Int",
        "Bool", "Double", "String", "IntList", "DoubleList", "BoolList", "TensorList",
        "OptionalTensorList", "AllocationDetails", "ExtraTensorInfo", "Chain", "Instruction",
        "KernelCall", "DelegateCall", "MoveCall", "JumpFalseCall", "FreeCall", "FrameList",
        "Frame", "Operator", "BackendDelegate", "BackendDelegateDataReference",
        "NonConstBufferDevice", "Buffer", "BackendDelegateInlineData", "DataSegment",
        "SubsegmentOffsets", "NamedData", "TensorShapeDynamism", "TensorDataLocation",
        "DeviceType", "DataLocation",
    ]
    classes = {name: getattr(schema, name) for name in names}
    classes.update(
        CompileSpec=CompileSpec,
        ScalarType=ScalarType,
        PTEFile=PTEFile,
        NamedDataStoreOutput=NamedDataStoreOutput,
        DataEntry=DataEntry,
    )
    _classes_cache = classes
    return classes


def deserialize_pte_binary(data: Union[bytes, bytearray, memoryview, str, "os.PathLike[str]"]) -> Any:
    """Parse a ``.pte`` file into the reference's ``PTEFile``.

    Equal (``==``) to what ``executorch.exir._serialize._program.deserialize_pte_binary``
    returns: constants back in ``program.constant_buffer``, delegate blobs back in
    ``program.backend_delegate_data``, mutable data and named data restored.

    Args:
        data: the file's bytes (``bytes``, ``bytearray``, ``memoryview`` or any
            C-contiguous buffer) or a path (``str`` / ``os.PathLike``; memory-mapped).

    Raises:
        PteError: the data is not a valid ``.pte`` file (the message says where).
        ImportError: executorch is not installed (its dataclasses are the result).
    """
    return _native.deserialize_pte_binary(data, _reference_classes())


# ---------------------------------------------------------------------------------------
# install() / uninstall()

_lock = threading.Lock()
# (module, attribute, original) for every attribute install() replaced.
_patched: List[Tuple[Any, str, Any]] = []
_originals: Dict[str, Any] = {}


def _serialize_for_exporter(
    pte_file: Any,
    *,
    extract_delegate_segments: bool = False,
    segment_alignment: int = 128,
    constant_tensor_alignment: Optional[int] = None,
    delegate_alignment: Optional[int] = None,
) -> PteBinary:
    return _native.serialize_pte_binary(
        pte_file,
        extract_delegate_segments=extract_delegate_segments,
        segment_alignment=segment_alignment,
        constant_tensor_alignment=constant_tensor_alignment,
        delegate_alignment=delegate_alignment,
    )


def _deserialize_for_exporter(program_data: Any) -> Any:
    return _native.deserialize_pte_binary(program_data, _reference_classes())


_serialize_for_exporter.__doc__ = serialize_pte_binary.__doc__
_serialize_for_exporter.__name__ = "serialize_pte_binary"
_serialize_for_exporter.__qualname__ = "serialize_pte_binary"
_deserialize_for_exporter.__doc__ = deserialize_pte_binary.__doc__
_deserialize_for_exporter.__name__ = "deserialize_pte_binary"
_deserialize_for_exporter.__qualname__ = "deserialize_pte_binary"

_REPLACEMENTS = {
    "serialize_pte_binary": _serialize_for_exporter,
    "deserialize_pte_binary": _deserialize_for_exporter,
}


def _modules() -> List[Any]:
    return [m for m in list(sys.modules.values()) if m is not None]


def install() -> None:
    """Route the exporter's serialization through ptekit.

    Replaces ``serialize_pte_binary`` and ``deserialize_pte_binary`` in
    ``executorch.exir._serialize._program`` and in every loaded module that imported
    them (under any name, e.g. ``_serialize_pte_binary``), so that ``to_executorch()``,
    ``.buffer`` and ``write_to_file`` use ptekit and give the same bytes. Modules
    imported later pick the replacements up from ``_program``. Idempotent; undone by
    :func:`uninstall`.

    Raises:
        ImportError: executorch is not installed.
    """
    try:
        from executorch.exir._serialize import _program
    except ImportError as e:
        raise ImportError("ptekit.install() patches executorch: pip install executorch==1.5.1") from e
    with _lock:
        for name, replacement in _REPLACEMENTS.items():
            current = getattr(_program, name)
            if current is not replacement:
                _originals[name] = current
        by_id = {id(orig): (name, orig) for name, orig in _originals.items()}
        for module in _modules():
            try:
                items = list(vars(module).items())
            except TypeError:
                continue
            for attr, value in items:
                hit = by_id.get(id(value))
                if hit is None or hit[1] is not value:
                    continue
                name, orig = hit
                setattr(module, attr, _REPLACEMENTS[name])
                _patched.append((module, attr, orig))


def uninstall() -> None:
    """Undo :func:`install`: every replaced function is the reference's again.

    Also restores modules imported after :func:`install` that picked up a replacement.
    Does nothing when ptekit is not installed.
    """
    with _lock:
        for module, attr, orig in reversed(_patched):
            if getattr(module, attr, None) in _REPLACEMENTS.values():
                setattr(module, attr, orig)
        _patched.clear()
        by_id = {id(r): name for name, r in _REPLACEMENTS.items()}
        for module in _modules():
            try:
                items = list(vars(module).items())
            except TypeError:
                continue
            for attr, value in items:
                name = by_id.get(id(value))
                if name is None or module is sys.modules.get(__name__):
                    continue
                if name in _originals and value is _REPLACEMENTS[name]:
                    setattr(module, attr, _originals[name])


def installed() -> bool:
    """Whether :func:`install` is in effect for ``executorch.exir._serialize._program``."""
    mod = sys.modules.get("executorch.exir._serialize._program")
    return mod is not None and getattr(mod, "serialize_pte_binary", None) is _serialize_for_exporter
