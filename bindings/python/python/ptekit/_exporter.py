"""What ``ptekit.install()`` puts into the reference exporter (see ``ptekit._install``).

Imported only when a patched executorch module is first imported (or at ``install()`` if
one already is), so it may import executorch's own modules at the top.

- ``serialize_pte_binary`` / ``deserialize_pte_binary``: ptekit's, with the reference's
  signatures;
- ``tensor_spec_to_evalue``: the emitter's ``_Emitter._tensor_spec_to_evalue``, except that
  a constant's data is a :class:`TensorBytes` view of the tensor's storage rather than a
  ``bytes`` copy, so the weights of an export exist once (in the model) until written;
- the bundled-program functions and ``FlatTensorSerializer``;
- ``xnnpack_serialized_buffer_index`` / ``xnnpack_copy_for_preprocess``: XNNPACK lowering
  adds views of the weights to the named data (not ``bytes`` copies) and preprocesses a
  copy of the program that shares its tensors (not a deep copy of every weight).
"""

from __future__ import annotations

import ctypes
import hashlib
import sys

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
    "xnnpack_copy_for_preprocess",
    "xnnpack_serialized_buffer_index",
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


# ---------------------------------------------------------------------------------------
# XNNPACK lowering (executorch.backends.xnnpack, executorch 1.5.1)

_NODE_VISITOR = "executorch.backends.xnnpack.operators.node_visitor"


def _xnnpack_constant(visitor, value, quant_params, force_fp32, swap_in_out, groups, nhwc):
    """The tensor whose storage XNNPACK lowering stores for the constant ``value``: the
    reference's conversions in its order (contiguous; quantized, or float32 unless half
    precision is kept; for depthwise/transposed convolutions the in/out channels swapped
    per group; channels-last; 4-bit packing). Each returns ``value`` itself when there is
    nothing to change, so a float32 weight stays the model's own tensor."""
    import torch

    value = value.contiguous()
    if quant_params is not None and not quant_params.is_dynamic:
        value = quant_params.quantize_tensor(value).contiguous()
    elif force_fp32 or value.dtype not in (torch.float16, torch.bfloat16):
        value = value.to(dtype=torch.float32).contiguous()
    if swap_in_out:
        shape = tuple(value.shape)
        per_group = shape[0] // groups
        grouped = value.reshape((groups, per_group) + shape[1:])
        grouped = grouped.permute((0, 2, 1) + tuple(range(3, grouped.dim())))
        value = grouped.reshape((shape[1] * groups, per_group) + shape[2:]).contiguous()
    if nhwc:
        value = value.to(memory_format=torch.channels_last)
    if quant_params is not None and quant_params.is_qc4w:
        value = visitor.convert_to_qc4w(value)
    return value


def xnnpack_serialized_buffer_index(
    self,
    tensor,
    xnn_graph,
    vals_to_ids,
    convert_to_nhwc,
    swap_in_out_for_weights,
    quant_params,
    force_fp32=False,
    groups=1,
):
    """``NodeVisitor.get_serialized_buffer_index`` with the named data a view.

    The same decisions and results as the reference (executorch 1.5.1): a node that is
    not a parameter gets index 0; a parameter's bytes (the whole storage of the converted
    tensor) are added to the named data store under the hex SHA-256 of those bytes, with
    the delegate's alignment and the node's ``delegate_constant_tag``, and its
    ``ConstantDataOffset`` is appended. The bytes added are a :class:`TensorBytes` view of
    the storage instead of a ``bytes`` copy, hashed in place.
    """
    import logging

    import torch

    nv = sys.modules[_NODE_VISITOR]
    assert swap_in_out_for_weights or groups == 1, "groups is option for swap_in_out_for_weights"
    source = tensor if quant_params is None else quant_params.q_input
    if not nv.is_param_node(self.exported_program, source):
        nv.check_or_raise(
            not swap_in_out_for_weights,
            "Swapping N and C dimensions is only valid for constant data tensors",
        )
        return 0
    index = len(xnn_graph.constant_data)
    value = nv.get_param_tensor(self.exported_program, source)
    assert value is not None and isinstance(value, torch.Tensor)
    value = _xnnpack_constant(
        self, value, quant_params, force_fp32, swap_in_out_for_weights, groups, convert_to_nhwc
    )
    storage = value.untyped_storage()
    nv.check_or_raise(
        storage.nbytes() > 0,
        f"Serializing constant data node {tensor} but tensor value has no bytes",
    )
    data = TensorBytes(storage)
    key = data.sha256().hex()
    xnn_graph.constant_data.append(
        nv.ConstantDataOffset(offset=nv.UINT64_MAX, size=len(data), named_key=key)
    )
    custom = tensor.meta.get("custom", None)
    tag = custom.get("delegate_constant_tag", None) if custom else None
    if tag is not None:
        logging.info(
            f"Adding constant data with name {tensor.name}, key {key} and external_tag "
            f"{tag} to named_data_store"
        )
    self._named_data_store.add_named_data(
        key, data, alignment=nv.CONSTANT_TENSOR_ALIGNMENT, external_tag=tag
    )
    return index


xnnpack_serialized_buffer_index.__name__ = "get_serialized_buffer_index"
xnnpack_serialized_buffer_index.__qualname__ = "NodeVisitor.get_serialized_buffer_index"


def _copy_sharing_tensors(cls, edge_program, compile_specs):
    """``XnnpackBackend.copy_exported_program_for_preprocess``: a deep copy of the program
    that shares its tensors (parameters, buffers, constants) instead of copying them.

    XNNPACK's preprocessing changes the copy's graph, signature and state-dict entries
    (all still copied) but never a tensor in place; the reference's deep copy duplicates
    every weight of the partition only for the lowering to read it.
    """
    import copy

    import torch

    memo = {}
    for table in (edge_program.state_dict, edge_program.constants):
        for value in table.values():
            if isinstance(value, torch.Tensor):
                memo[id(value)] = value
    return copy.deepcopy(edge_program, memo)


_copy_sharing_tensors.__name__ = "copy_exported_program_for_preprocess"
_copy_sharing_tensors.__qualname__ = "XnnpackBackend.copy_exported_program_for_preprocess"
xnnpack_copy_for_preprocess = classmethod(_copy_sharing_tensors)
