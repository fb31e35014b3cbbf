#!/usr/bin/env python3
"""Export ptekit's own test fixtures (and benchmark inputs) with the reference exporter.

Every file written here comes from executorch 1.5.1's own exporter and serializer
(`to_executorch()`), so it is ground truth for byte identity. For each NAME it writes:

- NAME.pte          the program, as the reference serializes it
- NAME.io.npz       example inputs in0.. and eager PyTorch outputs out0.. (forward)
- NAME.summary.json an independent reading of NAME.pte by the reference
                    deserializer (scripts/ref_summary.py)

Usage:
  make_fixtures.py OUT_DIR                 # the small fixtures committed in tests/fixtures
  make_fixtures.py OUT_DIR --bench         # benchmark inputs: transformer24, weights384m,
                                          # weights64m_xnnpack, weights64m_external (+ .ptd)
  make_fixtures.py OUT_DIR --only mlp,kv   # a subset
"""

import argparse
import copy
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ref_summary  # noqa: E402


class Mlp(torch.nn.Module):
    def __init__(self, dims=(8, 32, 32, 4)):
        super().__init__()
        self.layers = torch.nn.ModuleList(
            torch.nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:])
        )

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i + 1 < len(self.layers):
                x = torch.relu(x)
        return x


class Block(torch.nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.norm1 = torch.nn.LayerNorm(dim)
        self.qkv = torch.nn.Linear(dim, 3 * dim)
        self.proj = torch.nn.Linear(dim, dim)
        self.norm2 = torch.nn.LayerNorm(dim)
        self.fc1 = torch.nn.Linear(dim, 4 * dim)
        self.fc2 = torch.nn.Linear(4 * dim, dim)

    def forward(self, x):
        b, t, d = x.shape
        h = self.norm1(x)
        q, k, v = self.qkv(h).chunk(3, dim=-1)
        q = q.reshape(b, t, self.heads, d // self.heads).transpose(1, 2)
        k = k.reshape(b, t, self.heads, d // self.heads).transpose(1, 2)
        v = v.reshape(b, t, self.heads, d // self.heads).transpose(1, 2)
        att = torch.softmax(q @ k.transpose(-2, -1) / (d // self.heads) ** 0.5, dim=-1)
        y = (att @ v).transpose(1, 2).reshape(b, t, d)
        x = x + self.proj(y)
        return x + self.fc2(torch.nn.functional.gelu(self.fc1(self.norm2(x))))


class LiteBlock(Block):
    """Single-head attention with an additive bias: about 123 values per layer."""

    def __init__(self, dim, heads):
        super().__init__(dim, heads)
        self.register_buffer("bias", torch.zeros(8, 8))

    def forward(self, x):
        d = x.shape[-1]
        q, k, v = self.qkv(self.norm1(x)).chunk(3, dim=-1)
        att = torch.softmax((q @ k.transpose(-2, -1)) * (d**-0.5) + self.bias, dim=-1)
        x = x + self.proj(att @ v)
        return x + self.fc2(torch.nn.functional.gelu(self.fc1(self.norm2(x))))


class Transformer(torch.nn.Module):
    def __init__(self, layers=2, dim=32, heads=4, vocab=64, block=Block):
        super().__init__()
        self.emb = torch.nn.Embedding(vocab, dim)
        self.blocks = torch.nn.ModuleList(block(dim, heads) for _ in range(layers))
        self.head = torch.nn.Linear(dim, vocab)

    def forward(self, tokens):
        x = self.emb(tokens)
        for blk in self.blocks:
            x = blk(x)
        return self.head(x)


class KvState(torch.nn.Module):
    """A mutable buffer with an initial state (mutable_data_segments)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("cache", torch.arange(24, dtype=torch.float32).reshape(4, 6))
        self.lin = torch.nn.Linear(6, 6)

    def forward(self, x):
        self.cache.add_(x)
        return self.lin(self.cache)


class TwoMethods(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)

    def forward(self, x):
        return self.lin(x)

    def decode(self, x):
        return torch.tanh(self.lin(x)) * 2


def _export(model, inputs, *, xnnpack=False, method_inputs=None, constant_methods=None,
            share_mutable=False):
    from executorch.exir import EdgeCompileConfig, ExecutorchBackendConfig, to_edge_transform_and_lower

    model.eval()
    programs = {"forward": torch.export.export(model, inputs, strict=False)}
    for name, (fn, args) in (method_inputs or {}).items():
        wrapper = _MethodWrapper(model, fn)
        programs[name] = torch.export.export(wrapper, args, strict=False)
    partitioner = []
    if xnnpack:
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

        partitioner = [XnnpackPartitioner()]
    edge = to_edge_transform_and_lower(
        programs,
        partitioner=partitioner,
        compile_config=EdgeCompileConfig(_check_ir_validity=False),
        constant_methods=constant_methods,
    )
    config = ExecutorchBackendConfig()
    if share_mutable:
        from executorch.exir.passes.init_mutable_pass import InitializedMutableBufferPass

        config = ExecutorchBackendConfig(passes=[InitializedMutableBufferPass(["cache"])])
    return edge.to_executorch(config)


class _MethodWrapper(torch.nn.Module):
    def __init__(self, model, fn):
        super().__init__()
        self.model = model
        self.fn = fn

    def forward(self, *args):
        return getattr(self.model, self.fn)(*args)


def _write(out_dir, name, manager, model, inputs):
    path = os.path.join(out_dir, name + ".pte")
    with open(path, "wb") as f:
        manager.write_to_file(f)
    with torch.no_grad():
        out = model(*inputs)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    arrays = {f"in{i}": t.detach().numpy() for i, t in enumerate(inputs)}
    arrays.update({f"out{i}": t.detach().numpy() for i, t in enumerate(outs)})
    np.savez(os.path.join(out_dir, name + ".io.npz"), **arrays)
    summary = ref_summary.summarize(path)
    with open(os.path.join(out_dir, name + ".summary.json"), "w") as f:
        json.dump(summary, f, indent=1, sort_keys=True)
    print(f"{name}.pte: {os.path.getsize(path)} bytes", flush=True)


def small(out_dir, only):
    jobs = {}

    def job(fn):
        jobs[fn.__name__] = fn
        return fn

    @job
    def mlp():
        m, x = Mlp(), (torch.randn(2, 8),)
        _write(out_dir, "mlp", _export(m, x), m, x)

    @job
    def mlp_xnnpack():
        m, x = Mlp(), (torch.randn(2, 8),)
        _write(out_dir, "mlp_xnnpack", _export(m, x, xnnpack=True), m, x)

    @job
    def transformer():
        m, x = Transformer(), (torch.randint(0, 64, (1, 8)),)
        _write(out_dir, "transformer", _export(m, x), m, x)

    @job
    def transformer_xnnpack():
        m, x = Transformer(), (torch.randint(0, 64, (1, 8)),)
        _write(out_dir, "transformer_xnnpack", _export(m, x, xnnpack=True), m, x)

    @job
    def two_methods():
        m, x = TwoMethods(), (torch.randn(3, 4),)
        mgr = _export(
            m, x, method_inputs={"decode": ("decode", x)},
            constant_methods={"max_len": 128, "scale": 0.5, "enabled": True, "tag": "ptekit"},
        )
        _write(out_dir, "two_methods", mgr, m, x)

    @job
    def kv_state():
        m, x = KvState(), (torch.randn(4, 6),)
        eager = copy.deepcopy(m)  # the eager reference starts from the initial state too
        mgr = _export(m, x, share_mutable=True)
        _write(out_dir, "kv_state", mgr, eager, x)

    for i, (name, fn) in enumerate(jobs.items()):
        if only and name not in only:
            continue
        torch.manual_seed(20261121 + i)  # per fixture, so --only reproduces the same file
        fn()


def bench(out_dir, only):
    torch.manual_seed(7)
    if not only or "transformer24" in only:
        # 24 layers: about 2,950 values in one execution plan, tiny weights.
        m = Transformer(layers=24, dim=32, heads=4, block=LiteBlock)
        x = (torch.randint(0, 64, (1, 8)),)
        _write(out_dir, "transformer24", _export(m, x), m, x)
    if not only or "weights384m" in only:
        # Six 4096x4096 float layers: 384 MiB of weights in the constant segment.
        m = Mlp(dims=(4096,) * 7)
        x = (torch.randn(1, 4096),)
        _write(out_dir, "weights384m", _export(m, x), m, x)
    if not only or "weights64m_xnnpack" in only:
        # 64 MiB of weights in the XNNPACK delegate's named data.
        m = Mlp(dims=(2048,) * 5)
        x = (torch.randn(1, 2048),)
        _write(out_dir, "weights64m_xnnpack", _export(m, x, xnnpack=True), m, x)
    if not only or "weights64m_external" in only:
        # 64 MiB of weights in a .ptd next to the .pte (external constants).
        from executorch.exir import EdgeCompileConfig, ExecutorchBackendConfig, to_edge_transform_and_lower

        m = Mlp(dims=(2048,) * 5).eval()
        x = (torch.randn(1, 2048),)
        edge = to_edge_transform_and_lower(
            torch.export.export(m, x, strict=False),
            compile_config=EdgeCompileConfig(_check_ir_validity=False),
        )
        manager = edge.to_executorch(ExecutorchBackendConfig(external_constants=True))
        with open(os.path.join(out_dir, "weights64m_external.pte"), "wb") as f:
            manager.write_to_file(f)
        for tag, cord in manager._tensor_data.items():
            path = os.path.join(out_dir, f"weights64m_external.{tag}.ptd")
            with open(path, "wb") as f:
                cord.write_to_file(f)
            print(f"{os.path.basename(path)}: {os.path.getsize(path)} bytes", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir")
    ap.add_argument("--bench", action="store_true", help="write the benchmark inputs instead")
    ap.add_argument("--only", default="", help="comma-separated fixture names")
    args = ap.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    only = {s for s in args.only.split(",") if s}
    (bench if args.bench else small)(args.out_dir, only)


if __name__ == "__main__":
    main()
