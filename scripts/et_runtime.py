"""The reference's Python runtime (`executorch.runtime`) without its exporter.

`executorch.extension.pybindings.portable_lib` imports `executorch.exir._warnings` (a
deprecation decorator), and importing that module first runs `executorch/exir/__init__.py`,
which loads the whole exporter: about 10 s of a fresh process on the shared CI machine,
against about 3 s for the runtime itself. Scripts that start one process per model load
(the cache tests, the benchmark, the runtime-acceptance checks) import the runtime through
`import_runtime()`: while `executorch.runtime` is imported, `executorch.exir` is an empty
package shell, so only `executorch.exir._warnings` is loaded from it. The runtime that
loads and runs the files (the `_C` extension and its kernels and backends) is the same.
The shell is removed afterwards, so a later `import executorch.exir` loads the exporter
as usual.
"""

import os
import sys
import types


def import_runtime():
    """Imports `executorch.runtime` (skipping the exporter) and returns the module."""
    if "executorch.runtime" in sys.modules or "executorch.exir" in sys.modules:
        import executorch.runtime

        return executorch.runtime
    import executorch

    # `executorch` is a namespace package: its __path__ may list several folders.
    shell = types.ModuleType("executorch.exir")
    shell.__path__ = [
        os.path.join(d, "exir") for d in executorch.__path__ if os.path.isdir(os.path.join(d, "exir"))
    ]
    sys.modules["executorch.exir"] = shell
    try:
        import executorch.runtime
    finally:
        if sys.modules.get("executorch.exir") is shell:
            del sys.modules["executorch.exir"]
    return executorch.runtime
