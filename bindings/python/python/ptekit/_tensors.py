"""``ptekit.safe_open``: the tensors of a ``.ptd`` file and the constants and named data
of a ``.pte`` program as NumPy arrays, read in place from a memory map.

Needs NumPy (imported when a file is opened), never torch or executorch unless
``framework="pt"`` asks for torch tensors.
"""

from __future__ import annotations

import mmap
import os
import stat

from . import _native
from ._native import PteError

# ScalarType name -> (NumPy dtype name, ml_dtypes name or None, torch dtype name or None).
# A type NumPy lacks is given as the dtype of its raw bits, used unless ml_dtypes (optional)
# provides the type itself.
_DTYPES = {
    "BYTE": ("uint8", None, "uint8"),
    "CHAR": ("int8", None, "int8"),
    "SHORT": ("int16", None, "int16"),
    "INT": ("int32", None, "int32"),
    "LONG": ("int64", None, "int64"),
    "HALF": ("float16", None, "float16"),
    "FLOAT": ("float32", None, "float32"),
    "DOUBLE": ("float64", None, "float64"),
    "BOOL": ("bool", None, "bool"),
    "QINT8": ("int8", None, None),
    "QUINT8": ("uint8", None, None),
    "QINT32": ("int32", None, None),
    "QUINT4X2": ("uint8", None, None),
    "QUINT2X4": ("uint8", None, None),
    "BITS16": ("uint16", None, None),
    "UINT16": ("uint16", None, "uint16"),
    "UINT32": ("uint32", None, "uint32"),
    "UINT64": ("uint64", None, "uint64"),
    "BFLOAT16": ("uint16", "bfloat16", "bfloat16"),
    "FLOAT8E5M2": ("uint8", "float8_e5m2", "float8_e5m2"),
    "FLOAT8E4M3FN": ("uint8", "float8_e4m3fn", "float8_e4m3fn"),
    "FLOAT8E5M2FNUZ": ("uint8", "float8_e5m2fnuz", "float8_e5m2fnuz"),
    "FLOAT8E4M3FNUZ": ("uint8", "float8_e4m3fnuz", "float8_e4m3fnuz"),
}


def _dtype_entry(scalar_type):
    entry = _DTYPES.get(scalar_type or "BYTE")
    if entry is None:
        raise PteError(f"scalar type {scalar_type} has no array equivalent")
    return entry


def _numpy_dtype(np, scalar_type):
    bits, special, _ = _dtype_entry(scalar_type)
    if special is not None:
        try:
            import ml_dtypes  # optional

            return np.dtype(getattr(ml_dtypes, special))
        except (ImportError, AttributeError):
            pass
    return np.dtype(bits)


def _map_file(path):
    """A read-only ``mmap`` of the regular file at ``path`` (a FIFO or device is refused
    without blocking; an empty file maps to ``b""``)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise PteError(f"{path}: not a regular file")
        if st.st_size == 0:
            return b""
        return mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
    finally:
        os.close(fd)


def _logical(flat, scalar_type, sizes, dim_order, permute):
    """``flat`` (the stored elements) shaped as the tensor: the stored (physical) order is
    ``sizes`` permuted by ``dim_order``; the view permuted back has the logical shape."""
    if scalar_type is None:
        return flat
    if not dim_order:
        return flat.reshape(list(sizes))
    shaped = flat.reshape([sizes[d] for d in dim_order])
    if list(dim_order) == sorted(dim_order):
        return shaped
    inverse = [0] * len(dim_order)
    for position, dim in enumerate(dim_order):
        inverse[dim] = position
    return getattr(shaped, permute)(inverse)


class safe_open:
    """Open a ``.ptd`` tensor-data file or a ``.pte`` program for reading tensors, in the
    manner of ``safetensors.safe_open``.

    Keys: for a ``.ptd`` file, its named tensors; for a ``.pte`` program, every constant
    tensor under its fully qualified name when the program records one, else
    ``"<method>/<value index>"`` (e.g. ``"forward/3"``; stable for a given file), plus the
    program's named data under their keys (raw bytes: ``uint8`` arrays). Memory-planned
    tensors (mutable buffers, also those with an initial state) are not included.

    Arrays are views of a read-only memory map of the file (no copy; the map stays open
    while any array uses it, also after the ``with`` block). A tensor whose ``dim_order``
    is not the identity is returned as a transposed view, so its shape is the logical
    ``sizes``. ``BFLOAT16`` and the ``FLOAT8`` types come back as ``ml_dtypes`` arrays when
    that package is installed, else as their raw bits (``uint16`` / ``uint8``).

    Args:
        path: the file (``str`` or ``os.PathLike``).
        framework: ``"np"`` (NumPy arrays, the default) or ``"pt"`` (torch tensors,
            copied: torch tensors must be writable and the map is not).
        device: only ``"cpu"``.

    Raises:
        PteError: the file is not a valid ``.pte`` / ``.ptd`` (the message names offset
            and field), or is not a regular file.
        OSError: the file cannot be opened.
    """

    def __init__(self, path, framework="np", device="cpu"):
        if framework not in ("np", "numpy", "pt", "torch"):
            raise ValueError(f"framework must be 'np' or 'pt', not {framework!r}")
        if device != "cpu":
            raise ValueError(f"only device='cpu' is supported, not {device!r}")
        self._path = os.fspath(path)
        self._framework = "pt" if framework in ("pt", "torch") else "np"
        self._map = _map_file(self._path)
        entries = _native.tensor_entries(self._map)
        self._entries = {e[0]: e for e in entries}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        """Forget the index. The map closes when no array uses it any more."""
        self._entries = {}
        self._map = None

    def keys(self):
        """The tensor names, in file order."""
        return list(self._entries)

    def __contains__(self, name):
        return name in self._entries

    def __iter__(self):
        return iter(self._entries)

    def __len__(self):
        return len(self._entries)

    def info(self, name):
        """``{"dtype": ScalarType name or None (raw bytes), "sizes": [...],
        "dim_order": [...], "offset": file offset, "nbytes": ...}`` of ``name``."""
        _, dtype, sizes, dim_order, offset, nbytes = self._entry(name)
        return {"dtype": dtype, "sizes": list(sizes), "dim_order": list(dim_order), "offset": offset, "nbytes": nbytes}

    def _entry(self, name):
        if self._map is None:
            raise ValueError("the file is closed")
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(f"{name!r} is not a tensor of {self._path}") from None

    def get_tensor(self, name):
        """The tensor ``name`` as a NumPy array view (``framework="np"``) or a torch
        tensor (``framework="pt"``)."""
        _, scalar_type, sizes, dim_order, offset, nbytes = self._entry(name)
        if self._framework == "pt":
            import torch

            torch_name = _dtype_entry(scalar_type)[2]
            if torch_name is None:
                raise PteError(f"scalar type {scalar_type} has no torch equivalent")
            data = bytearray(memoryview(self._map)[offset : offset + nbytes])
            flat = torch.frombuffer(data, dtype=getattr(torch, torch_name)) if nbytes else torch.empty(0, dtype=getattr(torch, torch_name))
            return _logical(flat, scalar_type, sizes, dim_order, "permute")
        import numpy as np

        dtype = _numpy_dtype(np, scalar_type)
        flat = np.frombuffer(self._map, dtype=dtype, count=nbytes // dtype.itemsize, offset=offset)
        return _logical(flat, scalar_type, sizes, dim_order, "transpose")

    def __repr__(self):
        return f"ptekit.safe_open({self._path!r}, {len(self._entries)} tensors)"
