"""XNNPACK delegate payloads without JSON or flatc.

Drop-ins for ``executorch.backends.xnnpack.serialization.xnnpack_graph_serialize``
(executorch 1.5.1), taking and returning the reference's dataclasses
(``xnnpack_graph_schema.XNNGraph`` and friends):

- :func:`convert_to_flatbuffer` — the bare flatbuffer (identifier ``XN01``), byte for
  byte what the reference's ``json.dumps`` + ``flatc --binary`` (24.3.25) writes;
- :func:`serialize_xnnpack_binary` — the ``XH00`` header, the flatbuffer padded to 16
  bytes and the constant data;
- :func:`deserialize_xnnpack_binary` — the reverse (the reference has no reader).

Values the reference would route through flatc with a result ptekit does not reproduce
(an integer out of range for its field, a ``bool`` or ``float`` for an integer, a numpy
scalar, a numeric string, a class that is not a schema member...) raise
:class:`XnnpackUnsupported`. ``ptekit.install()`` (lazily, see ``ptekit/_install.py``) or :func:`install` patches
the reference's ``convert_to_flatbuffer`` so that lowering never spawns flatc; on
:class:`XnnpackUnsupported` the patch calls the reference's own function for that graph,
so the observable behaviour (``CalledProcessError`` from flatc, ``TypeError`` from
``json.dumps``, or success) stays the reference's.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any, Optional, Union

from . import _native
from ._native import XnnpackUnsupported

__all__ = [
    "XnnpackUnsupported",
    "convert_to_flatbuffer",
    "serialize_xnnpack_binary",
    "deserialize_xnnpack_binary",
    "install",
    "uninstall",
    "installed",
]

_SERIALIZE_MODULE = "executorch.backends.xnnpack.serialization.xnnpack_graph_serialize"
_SCHEMA_MODULE = "executorch.backends.xnnpack.serialization.xnnpack_graph_schema"


def convert_to_flatbuffer(xnnpack_graph: Any) -> bytes:
    """The flatbuffer of ``xnnpack_graph`` (an ``XNNGraph`` dataclass), identical to the
    reference's ``convert_to_flatbuffer``; no JSON, no subprocess.

    Raises:
        XnnpackUnsupported: a value the reference would hand to flatc with a result
            ptekit does not reproduce (the message names the field path).
    """
    return _native.xnnpack_convert_to_flatbuffer(xnnpack_graph)


def serialize_xnnpack_binary(xnnpack_graph: Any, constant_data_bytes: Union[bytes, bytearray, memoryview]) -> bytes:
    """The delegate payload the reference's ``serialize_xnnpack_binary`` returns."""
    return _native.xnnpack_serialize_binary(xnnpack_graph, bytes(constant_data_bytes))


def deserialize_xnnpack_binary(blob: Union[bytes, bytearray, memoryview], *, with_constant_data: bool = False) -> Any:
    """Reads a payload (with the ``XH00`` header, or a legacy bare flatbuffer) back into
    the reference's dataclasses, after verifying it (offsets, unions, value ids,
    constant indices and inline ranges). Absent vectors are ``None``, empty ones ``[]``;
    floats are the stored ``float32`` values. Fields the dataclasses do not declare
    (the runtime schema's ``dq_datatype``, legacy ``constant_buffer`` /
    ``mem_buffer_sizes``) are set as extra attributes when present.

    Returns the ``XNNGraph``, or ``(XNNGraph, constant_data: bytes)`` with
    ``with_constant_data=True``.

    Raises:
        ptekit.PteError: a malformed payload (the message names the field and offset).
    """
    import importlib

    schema = importlib.import_module(_SCHEMA_MODULE)
    graph, constant_data = _native.xnnpack_deserialize_binary(bytes(blob), schema)
    return (graph, constant_data) if with_constant_data else graph


_lock = threading.Lock()
_original: Optional[Any] = None


def _convert_for_exporter(xnnpack_graph: Any) -> bytes:
    # The reference's steps, in its order: sanity check, JSON (here: conversion),
    # debug dump, instance counter, flatc (here: the Rust packer).
    module = sys.modules[_SERIALIZE_MODULE]
    original = _original
    if original is None:
        # Patched by ptekit.install()'s import hook (see ptekit/_install.py).
        from . import _install

        original = _install.original(_SERIALIZE_MODULE, "convert_to_flatbuffer")
    if original is None or module.logger.getEffectiveLevel() == logging.DEBUG:
        # The DEBUG path writes the JSON file: the reference does that itself.
        return (original or _reference_function(module))(xnnpack_graph)
    module.sanity_check_xnngraph_dataclass(xnnpack_graph)
    try:
        out = _native.xnnpack_convert_to_flatbuffer(xnnpack_graph)
    except XnnpackUnsupported:
        return original(xnnpack_graph)
    module._delegate_instance_id += 1
    return out


def _reference_function(module: Any) -> Any:
    f = getattr(module, "convert_to_flatbuffer")
    if f is _convert_for_exporter:
        raise RuntimeError("ptekit.xnnpack: the reference convert_to_flatbuffer was lost")
    return f


_convert_for_exporter.__name__ = "convert_to_flatbuffer"
_convert_for_exporter.__qualname__ = "convert_to_flatbuffer"


def install() -> None:
    """Replace the reference's ``convert_to_flatbuffer`` (the one flatc spawner of XNNPACK
    lowering) by ptekit's. ``serialize_xnnpack_binary`` looks the name up in its module
    at call time, so this one attribute covers lowering. Idempotent.

    Raises:
        ImportError: executorch (with the XNNPACK backend) is not installed.
    """
    import importlib

    global _original
    module = importlib.import_module(_SERIALIZE_MODULE)
    with _lock:
        current = module.convert_to_flatbuffer
        if current is not _convert_for_exporter:
            _original = current
            module.convert_to_flatbuffer = _convert_for_exporter


def uninstall() -> None:
    """Undo :func:`install`."""
    global _original
    module = sys.modules.get(_SERIALIZE_MODULE)
    with _lock:
        if module is not None and _original is not None and module.convert_to_flatbuffer is _convert_for_exporter:
            module.convert_to_flatbuffer = _original
        _original = None


def installed() -> bool:
    """Whether :func:`install` is in effect."""
    module = sys.modules.get(_SERIALIZE_MODULE)
    return module is not None and getattr(module, "convert_to_flatbuffer", None) is _convert_for_exporter

