"""Running a program's `forward` in the reference runtime (executorch 1.5.1) on the
inputs recorded beside it (`NAME.io.npz`: `in0`, `in1`, ... and the eager outputs
`out0`, ...), for the tests that compare a rewritten file's outputs with the original's."""


def recorded_io(path):
    """`(inputs as tensors, eager outputs as arrays)` from `NAME.io.npz` beside `path`,
    or None if there is none."""
    import numpy as np
    import torch

    npz = path.with_suffix("").with_suffix(".io.npz")
    if not npz.exists():
        return None
    data = np.load(npz)
    ins = [torch.from_numpy(data[k]) for k in sorted(k for k in data.files if k.startswith("in"))]
    outs = [data[k] for k in sorted(k for k in data.files if k.startswith("out"))]
    return ins, outs


def run_forward(path, inputs):
    """The outputs of `forward` of the program at `path`, loaded afresh (mutable state
    is per loaded program, so every run starts from the file's state), as arrays."""
    from executorch.runtime import Runtime

    program = Runtime.get().load_program(str(path))
    inputs = [t.clone() for t in inputs]
    return [o.numpy().copy() for o in program.load_method("forward").execute(inputs)]
