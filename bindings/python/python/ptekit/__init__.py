"""ptekit: a fast drop-in for the ExecuTorch exporter's ``.pte`` serialization.

The functions mirror ``executorch.exir._serialize._program`` (executorch 1.5.1) and
produce the same bytes, implemented in Rust:

- :func:`serialize_pte_binary` takes the reference's ``PTEFile`` and returns a
  :class:`PteBinary` usable wherever the reference's ``Cord`` is (``bytes(x)``,
  ``len(x)``, ``x.write_to_file(f)``);
- :func:`write_pte` serializes straight to a file, atomically;
- :func:`deserialize_pte_binary` returns the reference's ``PTEFile`` dataclasses;
- :func:`serialize_from_bundled_program_to_flatbuffer` and
  :func:`deserialize_from_flatbuffer_to_bundled_program` mirror
  ``executorch.devtools.bundled_program.serialize`` (``.bpte``);
- :class:`FlatTensorSerializer` mirrors
  ``executorch.extension.flat_tensor.serialize.serialize.FlatTensorSerializer``
  (``.ptd`` tensor-data files);
- :func:`install` / :func:`uninstall` route the exporter's own calls through ptekit.

Without torch or executorch (only NumPy, for arrays):

- :func:`inspect` returns what ``ptekit inspect --json`` prints, as dicts and lists;
- :func:`verify` checks a file as ``ptekit verify`` does;
- :class:`safe_open` reads the tensors of a ``.ptd`` file and the constants and named
  data of a ``.pte`` program as NumPy arrays, in place (safetensors-style).

Importing ptekit imports neither torch nor executorch (nor NumPy).

Errors in the input raise :class:`PteError` (a ``ValueError``) naming the field path.
"""

from __future__ import annotations

import os
import sys

if False:  # for type checkers only (typing costs milliseconds to import)
    from typing import Any, Dict, Optional, Tuple, Union

from . import _native
from ._native import FlatTensorBinary, PteBinary, PteError

__version__: str = _native.__version__

__all__ = [
    "__version__",
    "inspect",
    "safe_open",
    "verify",
    "FlatTensorBinary",
    "FlatTensorSerializer",
    "PteBinary",
    "PteError",
    "deserialize_from_flatbuffer_to_bundled_program",
    "deserialize_pte_binary",
    "install",
    "installed",
    "serialize_from_bundled_program_to_flatbuffer",
    "serialize_pte_binary",
    "uninstall",
    "write_bundled_program",
    "write_pte",
]

def inspect(data: Union[bytes, bytearray, memoryview, str, "os.PathLike[str]"], top: int = 0) -> Dict[str, Any]:
    """What ``ptekit inspect --json [--top N]`` prints for a ``.pte``, ``.bpte`` or
    ``.ptd`` file, as Python objects (dicts, lists, strings, numbers): per method the
    inputs and outputs (dtype, sizes, dim order, like the runtime's ``MethodMeta``),
    operators and their call counts, delegates, constant values; segments, named data and
    where the bytes of the file go.

    Args:
        data: the file's bytes (any C-contiguous buffer, read in place) or a path
            (``str`` / ``os.PathLike``; memory-mapped).
        top: also list the ``top`` largest constant tensors, delegate payloads and named
            data entries (``"top"`` key), like ``--top N``.

    Raises:
        PteError: the data is not a valid file (the message names offset and field).
        OSError: the path cannot be read.
    """
    import json

    return json.loads(_native.inspect_json(data, top))


def verify(
    data: Union[bytes, bytearray, memoryview, str, "os.PathLike[str]"],
    ptd: Union[None, bytes, bytearray, memoryview, str, "os.PathLike[str]"] = None,
) -> Dict[str, Any]:
    """Check a ``.pte``, ``.bpte`` or ``.ptd`` file as ``ptekit verify [--data PTD]`` does.

    Args:
        data: the file's bytes or a path.
        ptd: the program's tensor-data file (bytes or path), where named data its XNNPACK
            payloads use may live; it is verified too.

    Returns:
        What was checked: ``{"kind": "program", "identifier": "ET12", "methods": 1,
        "segments": 2, "xnnpack_payloads": 0, "backends": []}`` (``"test_suites"`` and
        ``"backends"`` for a bundled program, ``"named_tensors"`` and ``"segments"`` for a
        ``.ptd``). ``"backends"`` are the delegate backends a runtime must have to load
        the file.

    Raises:
        PteError: the file is invalid; the message names the offset or field path.
        OSError: a path cannot be read.
    """
    import json

    return json.loads(_native.verify_json(data, ptd))


def safe_open(path: Union[str, "os.PathLike[str]"], framework: str = "np", device: str = "cpu") -> Any:
    """Open a ``.ptd``, ``.pte`` or ``.bpte`` file for reading tensors, like
    ``safetensors.safe_open``: ``with ptekit.safe_open(path) as f: f.keys();
    f.get_tensor(name)``. See :class:`ptekit._tensors.safe_open` for the names and the
    zero-copy rules. Needs NumPy; torch only with ``framework="pt"``."""
    from ._tensors import safe_open as _safe_open

    return _safe_open(path, framework=framework, device=device)


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
# Bundled programs (.bpte)

_bundled_classes_cache: Optional[Dict[str, Any]] = None


def _bundled_classes() -> Dict[str, Any]:
    """The reference's bundled-program schema dataclasses by name (imported on first use)."""
    global _bundled_classes_cache
    if _bundled_classes_cache is not None:
        return _bundled_classes_cache
    try:
        from executorch.devtools.bundled_program.schema import bundled_program_schema as bp
        from executorch.exir.scalar_type import ScalarType
    except ImportError as e:
        raise ImportError(
            "ptekit.deserialize_from_flatbuffer_to_bundled_program returns executorch's "
            "dataclasses, so it needs the executorch package: pip install executorch==1.5.1"
        ) from e
    names = [
        "BundledProgram", "BundledMethodTestSuite", "BundledMethodTestCase", "Value",
        "Tensor", "Int", "Bool", "Double",
    ]
    classes = {name: getattr(bp, name) for name in names}
    classes["ScalarType"] = ScalarType
    _bundled_classes_cache = classes
    return classes


def _bundled_members() -> Optional[Tuple[Any, Any, Any, Any]]:
    """The schema's ``(Tensor, Int, Bool, Double)`` for ``isinstance`` like the reference,
    or ``None`` (members recognized by class name) without executorch."""
    try:
        c = _bundled_classes()
    except ImportError:
        return None
    return (c["Tensor"], c["Int"], c["Bool"], c["Double"])


def serialize_from_bundled_program_to_flatbuffer(bundled_program: Any) -> bytes:
    """Serialize a ``BundledProgram`` to the ``.bpte`` flatbuffer, byte-identical to executorch.

    Same signature and result as
    ``executorch.devtools.bundled_program.serialize.serialize_from_bundled_program_to_flatbuffer``:
    the reference's ``BundledProgram`` (``executorch.devtools.bundled_program.core``) is
    turned into its schema form with its own ``serialize_to_schema()``, which ptekit then
    packs in Rust. A schema ``BundledProgram`` (``...bundled_program.schema``) is also
    accepted as is.

    The schema values are read like the reference's converters read them: union members
    by ``isinstance`` (anything that is not a ``Tensor``, ``Int``, ``Bool`` or ``Double``
    is packed as an empty union, as the reference does), ``int(scalar_type)``, byte fields
    (``data``, ``dim_order``, ``program``) as ``bytes``, any buffer (borrowed, not
    copied) or ``bytes(x)``.

    Args:
        bundled_program: the reference's ``BundledProgram`` (or its schema form).

    Returns:
        The ``.bpte`` file as ``bytes``.

    Raises:
        PteError: a value does not fit the schema (the message names its field path,
            e.g. ``bundled_program.method_test_suites[0].test_cases[1].inputs[0].val.sizes[1]``)
            or the result would exceed 2 GiB.
    """
    return _native.serialize_bundled_program(_bundled_schema(bundled_program), _bundled_members())


def write_bundled_program(
    out: Union[str, "os.PathLike[str]", Any],
    bundled_program: Any,
) -> int:
    """Write a ``BundledProgram`` as a ``.bpte`` file, streamed: the file is never
    assembled in memory.

    The bytes are those of :func:`serialize_from_bundled_program_to_flatbuffer`. When the
    bundled program's ``executorch_program`` was exported with :func:`install` in effect,
    its ``.pte`` is streamed from the exporter's plan too (weights read from the model's
    tensors), so the export's weights are never copied.

    Args:
        out: a path (written atomically: temporary file, fsync, rename) or a binary file
            object (anything with ``write``).
        bundled_program: the reference's ``BundledProgram`` (or its schema form).

    Returns:
        The number of bytes written.

    Raises:
        PteError: as :func:`serialize_from_bundled_program_to_flatbuffer`.
        OSError: the file cannot be written.
    """
    target = os.fspath(out) if isinstance(out, (str, os.PathLike)) else out
    return _native.write_bundled_program(_bundled_schema(bundled_program), _bundled_members(), target)


def _bundled_schema(bundled_program: Any) -> Any:
    """The schema form of ``bundled_program``, whose ``program`` is the exporter's planned
    file (a :class:`PteBinary`, streamed by the native packer) rather than the bytes of
    ``executorch_program.buffer`` where that can be done without side effects: a
    ``BundledProgram`` (executorch 1.5.1) of an ``ExecutorchProgramManager`` serialized
    by ptekit, whose ``buffer`` was not materialized yet and whose schema is not cached.
    """
    to_schema = getattr(bundled_program, "serialize_to_schema", None)
    if not callable(to_schema):
        return bundled_program
    manager = getattr(bundled_program, "executorch_program", None)
    planned = getattr(manager, "_pte_data", None)
    if (
        isinstance(planned, PteBinary)
        and getattr(manager, "_buffer", 0) is None
        and getattr(bundled_program, "_bundled_program_in_schema", 0) is None
    ):
        # serialize_to_schema() reads `manager.buffer`, which returns `_buffer` when set.
        manager._buffer = planned
        try:
            return to_schema()
        finally:
            manager._buffer = None
            # Not cached: the reference's own serializer expects bytes there.
            bundled_program._bundled_program_in_schema = None
    return to_schema()


def deserialize_from_flatbuffer_to_bundled_program(
    flatbuffer: Union[bytes, bytearray, memoryview],
) -> Any:
    """Parse a ``.bpte`` file into the reference's schema ``BundledProgram``.

    Equal (``==``) to what
    ``executorch.devtools.bundled_program.serialize.deserialize_from_flatbuffer_to_bundled_program``
    returns, including its quirks: the reference reads the file through ``flatc --json``,
    which prints doubles in fixed notation with 12 decimals, so ``Double.double_val`` is
    rounded that way here too (``1/3`` reads back as ``0.333333333333``, ``1e-13`` as
    ``0.0``); ``Tensor.dim_order`` is a list of ints. Where the reference fails only
    because of its JSON path, ptekit returns the value: infinite or NaN doubles, and
    scalar types 8-10, 16 and 17 (whose flatc names the Python enum lacks).

    Args:
        flatbuffer: the file's bytes (``bytes``, ``bytearray``, ``memoryview`` or any
            C-contiguous buffer; read in place, not copied).

    Raises:
        PteError: the data is not a valid bundled program (the message names the byte
            offset and field path), or lacks a field the reference's reader requires
            (a vector, the method name, a value's union type).
        ImportError: executorch is not installed (its dataclasses are the result).
    """
    return _native.deserialize_bundled_program(flatbuffer, _bundled_classes())


# ---------------------------------------------------------------------------------------
# Tensor-data files (.ptd)

_payload_classes_cache: Optional[Dict[str, Any]] = None


def _payload_classes() -> Dict[str, Any]:
    """The reference's ``DataPayload``, ``DataEntry``, ``TensorLayout``, ``ScalarType``."""
    global _payload_classes_cache
    if _payload_classes_cache is not None:
        return _payload_classes_cache
    try:
        from executorch.exir._serialize.data_serializer import DataEntry, DataPayload
        from executorch.exir.scalar_type import ScalarType
        from executorch.exir.tensor_layout import TensorLayout
    except ImportError as e:
        raise ImportError(
            "ptekit.FlatTensorSerializer.deserialize returns executorch's dataclasses, so "
            "it needs the executorch package: pip install executorch==1.5.1"
        ) from e
    _payload_classes_cache = {
        "DataPayload": DataPayload,
        "DataEntry": DataEntry,
        "TensorLayout": TensorLayout,
        "ScalarType": ScalarType,
    }
    return _payload_classes_cache


class _LocalFlatTensorConfig:
    """Stands in for the reference's ``FlatTensorConfig`` when executorch is absent."""

    def __init__(self, segment_alignment: int = 128) -> None:
        self.segment_alignment = segment_alignment

    def __repr__(self) -> str:
        return f"FlatTensorConfig(segment_alignment={self.segment_alignment})"


def _default_flat_tensor_config() -> Any:
    try:
        from executorch.extension.flat_tensor.serialize.serialize import FlatTensorConfig
    except ImportError:
        return _LocalFlatTensorConfig()
    return FlatTensorConfig()


class FlatTensorSerializer:
    """Serializes named tensor data to the ``.ptd`` (FlatTensor) format, like executorch.

    A drop-in for
    ``executorch.extension.flat_tensor.serialize.serialize.FlatTensorSerializer``
    (executorch 1.5.1): same constructor, same bytes, same ``DataPayload`` back.

    Args:
        config: the reference's ``FlatTensorConfig`` (or anything with an integer
            ``segment_alignment``); ``None`` for the default (alignment 128). Read at
            each :meth:`serialize` call, like the reference.
    """

    def __init__(self, config: Any = None) -> None:
        self.config = _default_flat_tensor_config() if config is None else config

    def serialize(self, data: Any) -> FlatTensorBinary:
        """Serialize a ``DataPayload`` into a ``.ptd`` file, byte-identical to executorch.

        One segment per buffer that an entry of ``data.named_data`` points at (in
        first-use order), aligned to ``lcm(segment_alignment, entry alignment)``; the
        ``FH01`` header; the flatbuffer in the bytes ``flatc`` writes. Buffers are read
        in place (``bytes``, any C-contiguous buffer, ``FileBackedData`` memory-mapped,
        else ``bytes(x)``) and not copied: the result references them (keeping them
        alive) and produces the file's bytes on demand. The GIL is released while the
        file is planned.

        Args:
            data: the reference's ``DataPayload`` (``buffers``, ``named_data``).

        Returns:
            A :class:`FlatTensorBinary`, usable like the reference's ``Cord``:
            ``bytes(x)``, ``len(x)``, ``x.write_to_file(f)``.

        Raises:
            PteError: a value does not fit (the message names its field path, e.g.
                ``data.named_data["w"].buffer_index``) or the alignment is not positive.
        """
        return _native.serialize_flat_tensor(data, self.config.segment_alignment)

    def deserialize(self, blob: Any) -> Any:
        """Parse a ``.ptd`` file into the reference's ``DataPayload``.

        Equal (``==``) to what the reference's ``deserialize`` returns: one ``bytes``
        buffer per segment, ``named_data`` in file order with ``alignment=1`` (the file
        does not record alignments) and the tensor layouts. The file is verified fully
        (the reference slices without bounds checks).

        Args:
            blob: the file: ``bytes``, any C-contiguous buffer, a
                :class:`FlatTensorBinary` (all read in place), or anything ``bytes(blob)``
                accepts, e.g. the reference's ``Cord``.

        Raises:
            PteError: the data is not a valid ``.ptd`` file (the message names the
                offset and field), its version is newer than 0 (the reference raises
                ``NotImplementedError``), or it lacks a field the reference requires.
            ImportError: executorch is not installed (its dataclasses are the result).
        """
        return _native.deserialize_flat_tensor(blob, _payload_classes())

    def deserialize_to_named_data_store_output(self, blob: Any, name: str) -> Any:
        """:meth:`deserialize` as a ``NamedDataStoreOutput`` whose ``external_data`` holds
        the entries under ``name``, like the reference's method of the same name."""
        from executorch.exir._serialize._named_data_store import NamedDataStoreOutput

        payload = self.deserialize(blob)
        return NamedDataStoreOutput(
            buffers=payload.buffers,
            pte_data={},
            external_data={name: payload.named_data},
        )

    def __repr__(self) -> str:
        return f"ptekit.FlatTensorSerializer({self.config!r})"


# ---------------------------------------------------------------------------------------
# install() / uninstall(): the machinery and the table of patch targets are in
# ptekit/_install.py; the replacements in ptekit/_exporter.py (imported only when a
# target module is imported).


def install() -> None:
    """Route the exporter's serialization through ptekit, lazily and at no import cost.

    Replaces, in the module that defines it and in every loaded module that imported it
    (under any name, e.g. ``_serialize_pte_binary``):

    - ``serialize_pte_binary`` / ``deserialize_pte_binary``
      (``executorch.exir._serialize._program``), so that ``to_executorch()``,
      ``.buffer`` and ``write_to_file`` use ptekit;
    - the emitter's constant handling (``executorch.exir.emit._emitter``): constant
      tensors are kept as views of the model's tensor storage instead of ``bytes``
      copies, so an export's weights exist once until they are written;
    - ``serialize_from_bundled_program_to_flatbuffer`` /
      ``deserialize_from_flatbuffer_to_bundled_program``
      (``executorch.devtools.bundled_program.serialize``);
    - ``FlatTensorSerializer`` (``executorch.extension.flat_tensor.serialize.serialize``),
      which ``to_executorch()`` constructs for external weights (``.ptd`` files);
    - ``convert_to_flatbuffer`` of the XNNPACK backend's serializer, so that XNNPACK
      lowering spawns no flatc (see :mod:`ptekit.xnnpack`);
    - XNNPACK lowering's weight handling (``NodeVisitor.get_serialized_buffer_index``,
      ``XnnpackBackend.copy_exported_program_for_preprocess``): the weights it adds to
      the named data are views of the tensors' storage, keyed by the same SHA-256, and
      the program it preprocesses shares the model's tensors instead of deep-copying
      them, so an XNNPACK export's weights exist once too.

    Nothing is imported: a module already imported is patched now, any other right after
    it is first imported (an import hook in ``sys.meta_path``). The files written are the
    same bytes. Idempotent; undone by :func:`uninstall`.

    One difference in behaviour: the reference copies the weights at ``to_executorch()``
    (XNNPACK: at lowering); with ptekit they are read from the model's tensors when the
    file is produced (``write_to_file``, ``save``, ``.buffer``), so changing parameters in
    place between exporting and writing changes the file.

    Raises:
        ImportError: executorch is not installed.
    """
    if "executorch" not in sys.modules and not any(
        getattr(finder, "find_spec", None) and finder.find_spec("executorch", None)
        for finder in sys.meta_path
    ):
        # Asks the import system's finders directly: importlib.util would import a
        # dozen modules.
        raise ImportError("ptekit.install() patches executorch: pip install executorch==1.5.1")
    from . import _install

    _install.install()


def uninstall() -> None:
    """Undo :func:`install`: every replaced function is the reference's again, the import
    hook is removed.

    Also restores modules imported after :func:`install` that picked up a replacement.
    Does nothing when ptekit is not installed.
    """
    from . import _install

    _install.uninstall()
    xnnpack = sys.modules.get(__name__ + ".xnnpack")
    if xnnpack is not None:
        xnnpack.uninstall()  # also undoes an explicit ptekit.xnnpack.install()


def installed() -> bool:
    """Whether :func:`install` is in effect."""
    install_module = sys.modules.get(__name__ + "._install")
    return install_module is not None and install_module.installed()
