"""``ptekit.install()`` / ``uninstall()``: route the reference exporter through ptekit, lazily.

``install()`` imports nothing: it records what to replace and adds an import hook (a
finder at the front of ``sys.meta_path``). Each target module is patched

- at ``install()`` if it is already imported (its attribute, and every loaded module that
  imported the original under any name, e.g. ``from ... import serialize_pte_binary as
  _serialize_pte_binary``);
- otherwise right after it is first imported, before the module that imported it reads
  the attribute (so later ``from target import name`` statements get the replacement).

The replacements themselves are imported only when their target is patched: a process
that never imports ``executorch`` never imports ptekit's exporter code either.

Adding a patch target is one entry in :data:`PATCHES`::

    Patch("executorch.some.module", "function_name", "ptekit.some_module:replacement"),

``attribute`` may name a class attribute (``"Class.method"``); such entries replace the
attribute on the class only (there is nothing to sweep). An attribute the class inherits
is set on the class and deleted again by ``uninstall()`` (its bases are left alone). ``replacement`` is
``"module:attribute"`` of the replacing object, imported when the target is patched.
``sweep=False`` replaces the attribute in its module only (for a function its callers
look up in its module at call time). A replacement that needs the function it replaces
gets it from :func:`original`.
"""

from __future__ import annotations

import _thread
import sys

__all__ = ["Patch", "PATCHES", "install", "installed", "original", "uninstall"]


class Patch:
    """One replaced attribute: ``module``'s ``attribute`` becomes ``replacement``."""

    __slots__ = ("module", "attribute", "replacement", "sweep")

    def __init__(self, module: str, attribute: str, replacement: str, sweep: bool = True) -> None:
        self.module = module
        self.attribute = attribute
        self.replacement = replacement
        self.sweep = sweep

    def __repr__(self) -> str:
        return f"Patch({self.module!r}, {self.attribute!r}, {self.replacement!r}, sweep={self.sweep})"


#: What install() replaces. Order matters only within one module.
PATCHES = (
    # .pte (executorch.exir._serialize._program): to_executorch(), .buffer, write_to_file.
    Patch("executorch.exir._serialize._program", "serialize_pte_binary",
          "ptekit._exporter:serialize_pte_binary"),
    Patch("executorch.exir._serialize._program", "deserialize_pte_binary",
          "ptekit._exporter:deserialize_pte_binary"),
    # The emitter's constants: views of the tensors' storage instead of bytes copies.
    Patch("executorch.exir.emit._emitter", "_Emitter._tensor_spec_to_evalue",
          "ptekit._exporter:tensor_spec_to_evalue"),
    # .bpte (executorch.devtools.bundled_program.serialize).
    Patch("executorch.devtools.bundled_program.serialize",
          "serialize_from_bundled_program_to_flatbuffer",
          "ptekit._exporter:serialize_from_bundled_program_to_flatbuffer"),
    Patch("executorch.devtools.bundled_program.serialize",
          "deserialize_from_flatbuffer_to_bundled_program",
          "ptekit._exporter:deserialize_from_flatbuffer_to_bundled_program"),
    # .ptd: to_executorch() constructs FlatTensorSerializer for external weights.
    Patch("executorch.extension.flat_tensor.serialize.serialize", "FlatTensorSerializer",
          "ptekit._exporter:FlatTensorSerializer"),
    # XNNPACK lowering: the weights it adds to the named data are views of the tensors'
    # storage, and the program it preprocesses shares the tensors (not deep copies).
    Patch("executorch.backends.xnnpack.operators.node_visitor",
          "NodeVisitor.get_serialized_buffer_index",
          "ptekit._exporter:xnnpack_serialized_buffer_index"),
    Patch("executorch.backends.xnnpack.xnnpack_preprocess",
          "XnnpackBackend.copy_exported_program_for_preprocess",
          "ptekit._exporter:xnnpack_copy_for_preprocess"),
    # XNNPACK lowering's flatc spawner; serialize_xnnpack_binary looks it up in its module.
    Patch("executorch.backends.xnnpack.serialization.xnnpack_graph_serialize",
          "convert_to_flatbuffer", "ptekit.xnnpack:_convert_for_exporter", sweep=False),
)

_lock = _thread.RLock()
# Stands for "the class had no attribute of its own" in `_patched` (undone by deleting).
_INHERITED = object()
_state = {"installed": False}
# (owner, attribute name, original) for every attribute replaced, in order.
_patched: list = []
# Target module name -> its pending patches (not yet applied).
_pending: dict = {}
_busy = _thread._local()


def _resolve(spec: str):
    module_name, _, attr = spec.partition(":")
    __import__(module_name)
    return getattr(sys.modules[module_name], attr)


def _owner_and_name(module, attribute: str):
    owner = module
    *path, name = attribute.split(".")
    for part in path:
        owner = getattr(owner, part)
    return owner, name


def _apply(module) -> None:
    """Applies the pending patches of ``module`` (just imported, or already loaded)."""
    with _lock:
        patches = _pending.pop(module.__name__, ())
        sweep = {}
        for patch in patches:
            try:
                owner, name = _owner_and_name(module, patch.attribute)
            except AttributeError:
                continue  # a trimmed or different executorch build
            original = _own(owner, name)
            if original is None:
                if not isinstance(owner, type) or getattr(owner, name, None) is None:
                    continue
                original = _INHERITED
            replacement = _resolve(patch.replacement)
            if original is replacement:
                continue
            setattr(owner, name, replacement)
            _patched.append((owner, name, original))
            if owner is module and patch.sweep:
                sweep[id(original)] = (original, replacement)
        if sweep:
            _sweep(sweep)


def _own(owner, name: str):
    """``owner``'s own attribute ``name`` (for a class: not one it inherits), or ``None``."""
    if isinstance(owner, type):
        return owner.__dict__.get(name)
    return getattr(owner, name, None)


def _others():
    """Every loaded module but ptekit's own (whose names are ptekit's functions)."""
    return [
        m
        for name, m in list(sys.modules.items())
        if m is not None and name != "ptekit" and not name.startswith("ptekit.")
    ]


def _sweep(replace: dict) -> None:
    """Replaces, in every loaded module, the values keyed by ``id`` in ``replace``."""
    for other in _others():
        try:
            items = list(vars(other).items())
        except TypeError:
            continue
        for attr, value in items:
            hit = replace.get(id(value))
            if hit is not None and hit[0] is value:
                setattr(other, attr, hit[1])
                _patched.append((other, attr, value))


class _Finder:
    """``sys.meta_path`` hook: patches a target module right after it is executed."""

    @staticmethod
    def find_spec(fullname, path=None, target=None):
        if fullname not in _pending or getattr(_busy, "on", False):
            return None
        _busy.on = True
        try:
            spec = None
            for finder in sys.meta_path:
                if isinstance(finder, _Finder):
                    continue
                find = getattr(finder, "find_spec", None)
                if find is None:
                    continue
                spec = find(fullname, path, target)
                if spec is not None:
                    break
        finally:
            _busy.on = False
        loader = getattr(spec, "loader", None)
        run = getattr(loader, "exec_module", None)
        if run is None:
            return spec

        def exec_module(module):
            try:
                run(module)
            finally:
                loader.__dict__.pop("exec_module", None)
            _apply(module)

        # An attribute of this module's own loader instance (file loaders are created per
        # module), so the loader keeps its type and everything else it offers, e.g. the
        # resource readers importlib.resources looks for.
        try:
            loader.exec_module = exec_module
        except (AttributeError, TypeError):
            return spec  # a loader that cannot be hooked: patched at install() only
        return spec

    @staticmethod
    def invalidate_caches():
        pass


_finder = _Finder()


def install() -> None:
    """Route the exporter's serialization through ptekit (see ``ptekit.install``)."""
    with _lock:
        if _state["installed"]:
            return
        _state["installed"] = True
        _pending.clear()
        for patch in PATCHES:
            _pending.setdefault(patch.module, []).append(patch)
        if not any(isinstance(f, _Finder) for f in sys.meta_path):
            sys.meta_path.insert(0, _finder)
        for name in list(_pending):
            module = sys.modules.get(name)
            if module is not None:
                _apply(module)


def uninstall() -> None:
    """Undo :func:`install` (see ``ptekit.uninstall``)."""
    with _lock:
        sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _Finder)]
        _pending.clear()
        replacements = {}
        for owner, name, original in reversed(_patched):
            if original is _INHERITED:
                if name in owner.__dict__:
                    delattr(owner, name)
                continue
            current = _own(owner, name)
            replacements[id(current)] = (current, original)
            setattr(owner, name, original)
        _patched.clear()
        # Modules imported after install() that picked a replacement up.
        replacements = {k: v for k, v in replacements.items() if v[0] is not v[1]}
        if replacements:
            for other in _others():
                try:
                    items = list(vars(other).items())
                except TypeError:
                    continue
                for attr, value in items:
                    hit = replacements.get(id(value))
                    if hit is not None and hit[0] is value:
                        setattr(other, attr, hit[1])
        _state["installed"] = False


def original(module: str, attribute: str):
    """The object :func:`install` replaced at ``module``'s ``attribute``, or ``None``."""
    with _lock:
        owner = sys.modules.get(module)
        for patched_owner, name, value in _patched:
            if patched_owner is owner and name == attribute:
                return None if value is _INHERITED else value
    return None


def installed() -> bool:
    """Whether :func:`install` is in effect."""
    return _state["installed"]
