#!/usr/bin/env python3
"""Exports the models of the XNNPACK packed-weight cache tests and benchmark
with the reference exporter (executorch 1.5.1, XnnpackPartitioner).

    python scripts/make_cache_models.py tests/fixtures/xnnpack-cache   # the committed test models
    python scripts/make_cache_models.py OUT_DIR --bench    # also the benchmark models

Each model is written as NAME.pte with NAME.io.npz (inputs in0.., eager
outputs out0..). The models are chosen to catch a cache that keys by bytes
alone:
  mlp_fp32        fp32 MLP
  dyn_int8        dynamic int8, per-channel weights
  static_int8     static int8, per-tensor (conv + linear)
  w2w_int8        two dynamic-int8 layers holding W and 2W: identical int8
                  bytes, scales differing by 2
  same_bytes_fp32 fp32 layers 128->512 and 512->128 holding the same bytes
  two_methods     methods forward and forward_twice sharing one weight
  bias1_int8, bias2_int8
                  a dynamic-int8 linear layer, and the same layer with its
                  bias + 1: identical int8 weights and scales (XNNPACK packs
                  the bias without naming it in its cache look-up)
Bench (--bench): mlp_fp32_big (16 x 2048 fp32, 256 MiB), dyn_int8_big (the
same, dynamic int8), transformer_fp32_big (12 blocks of width 512, fp32;
the partitioner splits it into many XNNPACK subgraphs).
"""
import argparse
import os
import sys

import numpy as np
import torch

from make_fixtures import Mlp, _MethodWrapper


def export(model, inputs, *, quant=None, methods=None):
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import EdgeCompileConfig, to_edge_transform_and_lower

    model.eval()
    progs = {}
    for name, (fn, args) in (methods or {"forward": (None, inputs)}).items():
        m = model if fn is None else _MethodWrapper(model, fn)
        ep = torch.export.export(m, args, strict=False)
        if quant is not None:
            ep = _quantize(ep, args, quant)
        progs[name] = ep
    edge = to_edge_transform_and_lower(
        progs,
        partitioner=[XnnpackPartitioner()],
        compile_config=EdgeCompileConfig(_check_ir_validity=False),
    )
    return edge.to_executorch()


def _quantize(ep, args, quant):
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    q = XNNPACKQuantizer().set_global(
        get_symmetric_quantization_config(
            is_per_channel=quant["per_channel"], is_dynamic=quant["dynamic"]
        )
    )
    m = prepare_pt2e(ep.module(), q)
    m(*args)
    m = convert_pt2e(m)
    return torch.export.export(m, args, strict=False)


def mlp(width, layers, inp):
    """make_fixtures' Mlp with `layers` Linear layers of `width` after an input of `inp`."""
    return Mlp([inp] + [width] * layers)


class ConvLinear(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 16, 3, padding=1)
        self.lin = torch.nn.Linear(16 * 8 * 8, 32)

    def forward(self, x):
        return self.lin(torch.relu(self.conv(x)).flatten(1))


class W2W(torch.nn.Module):
    """Two square layers whose weights are W and 2W (and biases b, 2b)."""

    def __init__(self, n):
        super().__init__()
        g = torch.Generator().manual_seed(7)
        w = torch.randn(n, n, generator=g) / n**0.5
        b = torch.randn(n, generator=g) * 0.1
        self.a = torch.nn.Linear(n, n)
        self.b = torch.nn.Linear(n, n)
        with torch.no_grad():
            self.a.weight.copy_(w)
            self.a.bias.copy_(b)
            self.b.weight.copy_(2 * w)
            self.b.bias.copy_(2 * b)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


class SameBytes(torch.nn.Module):
    """fp32 layers 128->512 and 512->128 holding the same weight bytes."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(11)
        w = torch.randn(512 * 128, generator=g) / 16
        self.up = torch.nn.Linear(128, 512, bias=False)
        self.down = torch.nn.Linear(512, 128, bias=False)
        with torch.no_grad():
            self.up.weight.copy_(w.reshape(512, 128))
            self.down.weight.copy_(w.reshape(128, 512))

    def forward(self, x):
        return self.down(torch.relu(self.up(x)))


class Transformer(torch.nn.Module):
    """Transformer blocks of scripts/make_fixtures.py on float inputs."""

    def __init__(self, d, layers, heads):
        super().__init__()
        from make_fixtures import Block

        self.blocks = torch.nn.ModuleList(Block(d, heads) for _ in range(layers))

    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        return x


class TwoMethods(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(64, 64)

    def forward(self, x):
        return self.lin(x)

    def forward_twice(self, x):
        return self.lin(torch.relu(self.lin(x)))


def write(out, name, manager, model, inputs, method="forward"):
    path = os.path.join(out, name + ".pte")
    with open(path, "wb") as f:
        manager.write_to_file(f)
    with torch.no_grad():
        fn = model if method == "forward" else getattr(model, method)
        o = fn(*inputs)
    arrays = {f"in{i}": t.detach().numpy() for i, t in enumerate(inputs)}
    arrays["out0"] = o.detach().numpy()
    np.savez(os.path.join(out, name + ".io.npz"), **arrays)
    print(f"{name}.pte: {os.path.getsize(path)} bytes", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--bench", action="store_true")
    ap.add_argument("--only", nargs="*")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    torch.manual_seed(0)
    want = lambda n: not a.only or n in a.only  # noqa: E731
    dyn = {"per_channel": True, "dynamic": True}
    if want("mlp_fp32"):
        m, x = mlp(128, 3, 128), (torch.randn(4, 128),)
        write(a.out, "mlp_fp32", export(m, x), m, x)
    if want("dyn_int8"):
        m, x = mlp(256, 3, 128), (torch.randn(4, 128),)
        write(a.out, "dyn_int8", export(m, x, quant=dyn), m, x)
    if want("static_int8"):
        m, x = ConvLinear(), (torch.randn(1, 3, 8, 8),)
        write(a.out, "static_int8", export(m, x, quant={"per_channel": False, "dynamic": False}), m, x)
    if want("w2w_int8"):
        m, x = W2W(128), (torch.randn(4, 128),)
        write(a.out, "w2w_int8", export(m, x, quant=dyn), m, x)
    if want("same_bytes_fp32"):
        m, x = SameBytes(), (torch.randn(4, 128),)
        write(a.out, "same_bytes_fp32", export(m, x), m, x)
    if want("two_methods"):
        m, x = TwoMethods(), (torch.randn(2, 64),)
        mgr = export(m, x, methods={"forward": (None, x), "forward_twice": ("forward_twice", x)})
        write(a.out, "two_methods", mgr, m, x)
    if want("bias1_int8") or want("bias2_int8"):
        # Its own seed: the same layer whatever else is exported.
        torch.manual_seed(10)
        m, x = torch.nn.Linear(128, 128), (torch.randn(4, 128),)
        write(a.out, "bias1_int8", export(m, x, quant=dyn), m, x)
        with torch.no_grad():
            m.bias.add_(1.0)
        write(a.out, "bias2_int8", export(m, x, quant=dyn), m, x)
    if a.bench:
        if want("mlp_fp32_big"):
            m, x = mlp(2048, 16, 2048), (torch.randn(1, 2048),)
            write(a.out, "mlp_fp32_big", export(m, x), m, x)
        if want("dyn_int8_big"):
            m, x = mlp(2048, 16, 2048), (torch.randn(1, 2048),)
            write(a.out, "dyn_int8_big", export(m, x, quant=dyn), m, x)
        if want("transformer_fp32_big"):
            m, x = Transformer(512, 12, 8), (torch.randn(1, 16, 512),)
            write(a.out, "transformer_fp32_big", export(m, x), m, x)
    return 0


if __name__ == "__main__":
    sys.exit(main())
