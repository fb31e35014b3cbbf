"""ptekit's XNNPACK packed-weight cache inside the ExecuTorch runtime.

Call :func:`enable_xnnpack_cache` before ``executorch.runtime`` (or anything
else that loads ExecuTorch's XNNPACK backend) is imported::

    import ptekit.runtime
    ptekit.runtime.enable_xnnpack_cache("~/.cache/models.pwc")
    from executorch.runtime import Runtime   # XNNPACK runtimes now use the cache
    ...
    print(ptekit.runtime.xnnpack_cache_stats())

It puts the XNNPACK entry points of ptekit's extension module in the
process's global symbol scope, where they come before those of the backend
loaded later; every XNNPACK runtime that ExecuTorch creates without a weights
cache of its own then gets one over the given file. This is the same code as
``LD_PRELOAD=libptekit_xnnpack.so PTEKIT_XNNPACK_CACHE=FILE``, with one
difference: libc comes before the extension in that scope, so ExecuTorch's
``mlock`` calls are not interposed. When the backend is loaded (and before
each subgraph) ptekit rewrites the GOT word of the ``mlock`` import of the
loaded objects (``libexecutorch.so``, whose mmap loader locks every weight) to
its deferring ``mlock``, so a warm load does not lock (fault in) the weights
the cache answers. ``xnnpack_cache_stats()["mlock_route"]`` lists what was
redirected; where nothing can be, ``["mlock"]["off_reason"]`` says why and
loads work as before, only without that saving.
"""

from __future__ import annotations

import ctypes
import json
import os

__all__ = [
    "enable_xnnpack_cache",
    "disable_xnnpack_cache",
    "xnnpack_cache_flush",
    "xnnpack_cache_stats",
    "XnnpackCacheError",
]

_BACKEND = "libexecutorch_backend_xnnpack"
_promoted = False


class XnnpackCacheError(RuntimeError):
    """The cache cannot take effect in this process."""


def _backend_loaded() -> bool:
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            return any(_BACKEND in line for line in f)
    except OSError:
        return False


def _global() -> ctypes.CDLL:
    # The definitions the interposed calls reach: the first in global scope
    # (an LD_PRELOADed libptekit_xnnpack.so, else the promoted extension).
    lib = ctypes.CDLL(None)
    lib.ptekit_xnnpack_enable.argtypes = [ctypes.c_char_p, ctypes.c_uint32]
    lib.ptekit_xnnpack_enable.restype = ctypes.c_int
    lib.ptekit_xnnpack_stats_json.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    lib.ptekit_xnnpack_stats_json.restype = ctypes.c_size_t
    try:
        lib.ptekit_xnnpack_flush.argtypes = [ctypes.c_uint64]
        lib.ptekit_xnnpack_flush.restype = ctypes.c_int
    except AttributeError:  # a preloaded library from before background commits
        pass
    return lib


def _preloaded() -> bool:
    try:
        ctypes.CDLL(None).ptekit_xnnpack_enable  # noqa: B018 - lookup only
        return True
    except AttributeError:
        return False


def _promote() -> None:
    global _promoted
    if _promoted or _preloaded():
        _promoted = True
        return
    if _backend_loaded():
        raise XnnpackCacheError(
            "ExecuTorch's XNNPACK backend is already loaded in this process, so its calls "
            "cannot be redirected any more: call ptekit.runtime.enable_xnnpack_cache() before "
            "importing executorch.runtime (or executorch.extension.pybindings), or start the "
            "program with LD_PRELOAD=libptekit_xnnpack.so PTEKIT_XNNPACK_CACHE=FILE"
        )
    from . import _native

    ctypes.CDLL(_native.__file__, mode=os.RTLD_GLOBAL | os.RTLD_NOW)
    _promoted = True


def enable_xnnpack_cache(path: str | os.PathLike[str], *, verify: bool = False) -> None:
    """Turns the packed-weight cache on for XNNPACK runtimes created from now on.

    ``path`` is the cache file (created if missing). With ``verify=True`` the
    packed bytes of every hit are checked against their digest first.
    Raises :class:`XnnpackCacheError` when the XNNPACK backend was loaded
    before this call (the cache could not take effect).
    """
    _promote()
    p = os.fsencode(os.path.abspath(os.path.expanduser(os.fspath(path))))
    if _global().ptekit_xnnpack_enable(p, 1 if verify else 0) != 0:
        raise XnnpackCacheError(f"cannot use cache path {os.fsdecode(p)!r}")


def disable_xnnpack_cache() -> None:
    """Runtimes created from now on do not use the cache."""
    if _promoted or _preloaded():
        _global().ptekit_xnnpack_enable(None, 0)


def xnnpack_cache_flush(timeout: float = 30.0) -> bool:
    """Waits (at most ``timeout`` seconds) until the packed weights of the
    runtimes created so far are committed to the cache file.

    A cold load returns as soon as XNNPACK has packed; a background thread
    then writes the packs to the file, flushes them, and maps the file pages
    over the packing memory. Process exit waits for it too (at most
    ``PTEKIT_XNNPACK_CACHE_EXIT_WAIT_MS``, default 30 s), so calling this is
    only needed to read final counters or to hand the file to another
    process right away. Returns whether nothing is pending.
    """
    if not (_promoted or _preloaded()):
        return True
    lib = _global()
    if not hasattr(lib, "ptekit_xnnpack_flush"):
        return True  # that library commits before the runtime is returned
    return bool(lib.ptekit_xnnpack_flush(max(0, int(timeout * 1000))))


def xnnpack_cache_stats() -> dict:
    """Counters of this process: hits, misses, bytes mapped and packed,
    fallbacks and their reasons, runtimes with and without the cache.

    Empty when the cache was never turned on in this process.
    """
    if not (_promoted or _preloaded()):
        return {}
    lib = _global()
    need = lib.ptekit_xnnpack_stats_json(None, 0)
    buf = ctypes.create_string_buffer(need + 1)
    lib.ptekit_xnnpack_stats_json(buf, need + 1)
    return json.loads(buf.value.decode("utf-8"))
