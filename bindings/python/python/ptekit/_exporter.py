"""What ``ptekit.install()`` puts into the reference exporter (see ``ptekit._install``).

Imported only when a patched executorch module is first imported (or at ``install()`` if
one already is), so it may import executorch's own modules at the top.

- ``serialize_pte_binary`` / ``deserialize_pte_binary``: ptekit's, with the reference's
  signatures;
- ``tensor_spec_to_evalue``: the emitter's ``_Emitter._tensor_spec_to_evalue``, except that
  a constant's data is a :class:`TensorBytes` view of the tensor's storage rather than a
  ``bytes`` copy, so the weights of an export exist once (in the model) until written;
- the bundled-program functions and ``FlatTensorSerializer``.
"""

from __future__ import annotations

import ctypes
import hashlib

from executorch.exir._serialize._cord import FileBackedData

import ptekit
from ptekit import _native

__all__ = [
    "FlatTensorSerializer",
    "TensorBytes",
    "deserialize_from_flatbuffer_to_bundled_program",
    "deserialize_pte_binary",
    "serialize_from_bundled_program_to_flatbuffer",
    "serialize_pte_binary",
    "tensor_spec_to_evalue",
]


def serialize_pte_binary(
    pte_file,
    *,
    extract_delegate_segments=False,
    segment_alignment=128,
    constant_tensor_alignment=None,
    delegate_alignment=None,
):
    return _native.serialize_pte_binary(
        pte_file,
        extract_delegate_segments=extract_delegate_segments,
        segment_alignment=segment_alignment,
        constant_tensor_alignment=constant_tensor_alignment,
        delegate_alignment=delegate_alignment,
    )


def deserialize_pte_binary(program_data):
    return _native.deserialize_pte_binary(program_data, ptekit._reference_classes())


def serialize_from_bundled_program_to_flatbuffer(bundled_program):
    return ptekit.serialize_from_bundled_program_to_flatbuffer(bundled_program)


def deserialize_from_flatbuffer_to_bundled_program(flatbuffer):
    return ptekit.deserialize_from_flatbuffer_to_bundled_program(flatbuffer)


class FlatTensorSerializer(ptekit.FlatTensorSerializer):
    # A class of its own, so that uninstall() restores exactly what install() put in
    # place and never a user's own reference to ptekit.FlatTensorSerializer.
    pass


for _fn, _like in (
    (serialize_pte_binary, ptekit.serialize_pte_binary),
    (deserialize_pte_binary, ptekit.deserialize_pte_binary),
    (serialize_from_bundled_program_to_flatbuffer, ptekit.serialize_from_bundled_program_to_flatbuffer),
    (deserialize_from_flatbuffer_to_bundled_program, ptekit.deserialize_from_flatbuffer_to_bundled_program),
    (FlatTensorSerializer, ptekit.FlatTensorSerializer),
):
    _fn.__doc__ = _like.__doc__
    _fn.__qualname__ = _like.__qualname__
del _fn, _like

try:
    from executorch.exir._serialize.data_serializer import DataSerializer

    DataSerializer.register(ptekit.FlatTensorSerializer)
except ImportError:  # a trimmed executorch build
    pass


class TensorBytes(FileBackedData):
    """The bytes of a tensor's storage, read in place (no copy).

    A ``FileBackedData`` to the reference's code (``Cord``, ``NamedDataStore`` and its
    serializers accept those and use only the methods below), and a buffer to ptekit's
    (``__ptekit_buffer__``). Holds the storage, so the memory stays valid while this
    object lives; the bytes are those the reference copies (``bytes`` of the storage).
    """

    def __init__(self, storage) -> None:
        # Not FileBackedData.__init__: there is no file.
        self._path = None
        self._finalizer = None
        self._storage = storage
        size = storage.nbytes()
        self._size = size
        array = (ctypes.c_char * size).from_address(storage.data_ptr())
        self._view = memoryview(array).cast("B") if size else memoryview(b"")
        self._sha256 = None

    def __ptekit_buffer__(self):
        return self._view

    def __len__(self) -> int:
        return self._size

    def __getitem__(self, key):
        return self._view[key].tobytes()

    def __eq__(self, other):
        try:
            return self._view == memoryview(other)
        except TypeError:
            if isinstance(other, FileBackedData):
                return self.to_bytes() == other.to_bytes()
            return NotImplemented

    __hash__ = None

    # Immutable like `bytes`: copies are the object itself (the reference deep-copies
    # programs before serializing them); pickling gives the bytes.
    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self

    def __reduce__(self):
        return (bytes, (self.to_bytes(),))

    def prefix(self, size: int) -> bytes:
        return self._view[:size].tobytes()

    def sha256(self) -> bytes:
        if self._sha256 is None:
            self._sha256 = hashlib.sha256(self._view).digest()
        return self._sha256

    def to_bytes(self) -> bytes:
        return self._view.tobytes()

    def write_to_file(self, outfile) -> None:
        outfile.write(self._view)

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"<ptekit TensorBytes of {self._size} bytes>"


def tensor_spec_to_evalue(self, spec, constant_tag=None):
    """``_Emitter._tensor_spec_to_evalue`` with constants viewed, not copied.

    Same decisions as the reference (executorch 1.5.1): a planned tensor gets its
    allocation; a constant's bytes are deduplicated by SHA-256 among the constants of the
    same kind (mutable with initial state, external, in the program) and saved with the
    emitter's own ``_save_new_const_tensor``; a size that does not match the spec is an
    ``InternalError``.
    """
    from executorch.exir.emit import _emitter as em

    allocation_info = None
    if spec.mem_id is not None and spec.mem_offset is not None:
        allocation_info = self._get_allocation_info(spec)
    buffer_idx = 0
    if spec.const:
        storage = spec.storage
        if spec.allocated_memory != 0:
            data = TensorBytes(storage)
        else:
            data = b""
        digest = hashlib.sha256(data._view if isinstance(data, TensorBytes) else data)
        if isinstance(data, TensorBytes):
            data._sha256 = digest.digest()
        hashed = digest.hexdigest()
        state = self.program_state
        external = (
            spec.extra_tensor_info is not None
            and spec.extra_tensor_info.location == em.TensorDataLocation.EXTERNAL
        )
        if allocation_info and spec.extra_tensor_info is None:
            buffer_idx = state.cached_spec_mutable_hash_values.get(hashed, -1)
        elif external:
            buffer_idx = state.external_constant_hash.get(hashed, -1)
            if buffer_idx != -1:
                # Same bytes as an earlier external constant: one buffer, one more name.
                assert spec.extra_tensor_info.fully_qualified_name is not None
                assert constant_tag is not None
                self._save_to_external_constant_map(
                    spec.extra_tensor_info.fully_qualified_name, buffer_idx, constant_tag
                )
        else:
            buffer_idx = state.cached_spec_hash_values.get(hashed, -1)
        if buffer_idx == -1:
            buffer_idx = self._save_new_const_tensor(
                spec, data, hashed, allocation_info, constant_tag
            )
        if spec.nbytes() != len(data):
            raise em.InternalError(
                self._emit_node_specific_error(
                    self.node,
                    f"Tensor spec has buffer of size {len(data)}, but expected nbytes of "
                    f"{spec.nbytes()}",
                )
            )
    return em.EValue(em.make_tensor_value(buffer_idx, allocation_info, spec))


tensor_spec_to_evalue.__name__ = "_tensor_spec_to_evalue"
tensor_spec_to_evalue.__qualname__ = "_Emitter._tensor_spec_to_evalue"
